"""The parity tolerances are tight, name real cases, and reject a float32
step inside a float64 computation."""
import numpy as np
import pytest

from tests.parity import tolerances
from tests.parity.suite_tests import ParitySuite

SUITES = ('fc', 'fc_spatial', 'conv', 'index_resize', 'attention', 'graph',
          'masking')


def test_exceptions_name_existing_cases():
  names = {s: {c['name'] for c in ParitySuite(s).cases} for s in SUITES}
  for suite, case in tolerances.KERNEL_CASES:
    assert case in names[suite], (suite, case)


def test_tolerances_are_tight():
  assert tolerances.DEFAULT <= 1e-10
  assert max(tolerances.KERNEL_CASES.values()) <= 1e-7
  assert sum(t > 5e-8 for t in tolerances.KERNEL_CASES.values()) == 1
  assert max(tolerances.APPLY, tolerances.PREDICT,
             tolerances.EMPIRICAL) <= 1e-10


@pytest.mark.parametrize('name', ['relu_mlp', 'erf'])
def test_a_float32_step_is_caught(name):
  """Our float64 kernel passes; the same kernel rounded to float32 (what a
  float32 step inside the float64 path would leave at best) fails."""
  suite = ParitySuite('fc')
  case = suite.by_name[name]
  rel, _ = suite.worst_error(case, suite.golden)
  assert rel <= suite.rtol(case)
  rounded = {k: v.astype(np.float32).astype(np.float64)
             for k, v in suite.ours(name).items()}
  worst = max(
      np.max(np.abs(rounded[k] - suite.golden[f'{name}/{k}']) /
             np.abs(suite.golden[f'{name}/{k}'])) for k in rounded)
  assert worst > 10 * suite.rtol(case)
  with pytest.raises(AssertionError, match='max relative error'):
    from tests.parity import harness  # pylint: disable=g-import-not-at-top
    harness.assert_matches(case, rounded, suite.golden, rtol=suite.rtol(case))
