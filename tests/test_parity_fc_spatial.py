"""Nonlinearities, LayerNorm and Dropout on inputs with 1 and 2 spatial axes
equal neural-tangents 0.6.5 in float64 (≤ 1e-6 relative), in the full- and
diagonal-spatial layouts, for `x2=None` and `x2` given."""
import functools
import pathlib

import numpy as np
import pytest

from tests.parity import harness
from tests.parity import live
from tests.parity.reference_nan import without_reference_nan_diagonal

SUITE_FILE = pathlib.Path(__file__).parent / 'parity' / 'suite_fc_spatial.py'
SUITE = harness.load_suite(SUITE_FILE)
GOLDEN = harness.load_golden('fc_spatial')


@functools.lru_cache(maxsize=None)
def _ours(name):
  """Our kernels of a case, computed once for the golden and live checks."""
  return harness.compute_ours(next(c for c in SUITE if c['name'] == name))


def _check(case, reference):
  ours, reference = without_reference_nan_diagonal(case, _ours(case['name']),
                                                   reference)
  harness.assert_matches(case, ours, reference)


def test_suite_covers_layouts():
  """The suite has full-spatial cases in 1 and 2 dims and diagonal ones."""
  ranks = {GOLDEN[f'{c["name"]}/sym/nngp'].ndim for c in SUITE}
  assert {4, 6} <= ranks, ranks   # (N1, N2, X, X') and (N1, N2, X, X', Y, Y')
  diagonal = [c for c in SUITE
              if c.get('kernel_kwargs', {}).get('diagonal_spatial')]
  assert diagonal and all(
      GOLDEN[f'{c["name"]}/sym/nngp'].ndim == 4 for c in diagonal)


@pytest.mark.parametrize('case', SUITE, ids=[c['name'] for c in SUITE])
def test_golden(case):
  x1, x2 = harness.make_inputs(case)
  np.testing.assert_array_equal(GOLDEN[f'{case["name"]}/x1'], x1)
  np.testing.assert_array_equal(GOLDEN[f'{case["name"]}/x2'], x2)
  _check(case, GOLDEN)


@pytest.mark.parametrize('case', SUITE, ids=[c['name'] for c in SUITE])
def test_live(case):
  _check(case, live.reference_results(SUITE_FILE))
