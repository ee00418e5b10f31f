"""Nonlinearities, LayerNorm and Dropout on inputs with 1 and 2 spatial axes
equal neural-tangents 0.6.5 in float64 (at the suite's tolerance in
tests/parity/tolerances.py), in the full- and diagonal-spatial layouts, for
`x2=None` and `x2` given."""
from tests.parity.suite_tests import ParitySuite

SUITE = ParitySuite('fc_spatial')
GOLDEN = SUITE.golden

test_golden, test_live = SUITE.kernel_tests()


def test_suite_covers_layouts():
  """The suite has full-spatial cases in 1 and 2 dims and diagonal ones."""
  ranks = {GOLDEN[f'{c["name"]}/sym/nngp'].ndim for c in SUITE.cases}
  assert {4, 6} <= ranks, ranks   # (N1, N2, X, X') and (N1, N2, X, X', Y, Y')
  diagonal = [c for c in SUITE.cases
              if c.get('kernel_kwargs', {}).get('diagonal_spatial')]
  assert diagonal and all(
      GOLDEN[f'{c["name"]}/sym/nngp'].ndim == 4 for c in diagonal)

