"""Fully-connected kernels equal neural-tangents 0.6.5 in float64 (≤ 1e-6 rel.)."""
import functools
import pathlib

import numpy as np
import pytest

from tests.parity import harness
from tests.parity import live
from tests.parity.reference_nan import without_reference_nan_diagonal

SUITE_FILE = pathlib.Path(__file__).parent / 'parity' / 'suite_fc.py'
SUITE = harness.load_suite(SUITE_FILE)
GOLDEN = harness.load_golden('fc')


@functools.lru_cache(maxsize=None)
def _ours(name):
  """Our kernels of a case, computed once for the golden and live checks."""
  return harness.compute_ours(next(c for c in SUITE if c['name'] == name))


def _check(case, reference):
  ours, reference = without_reference_nan_diagonal(
      case, _ours(case['name']), reference)
  harness.assert_matches(case, ours, reference)


@pytest.mark.parametrize('case', SUITE, ids=[c['name'] for c in SUITE])
def test_golden(case):
  x1, x2 = harness.make_inputs(case)
  np.testing.assert_array_equal(GOLDEN[f'{case["name"]}/x1'], x1)
  np.testing.assert_array_equal(GOLDEN[f'{case["name"]}/x2'], x2)
  _check(case, GOLDEN)


@pytest.mark.parametrize('case', SUITE, ids=[c['name'] for c in SUITE])
def test_live(case):
  _check(case, live.reference_results(SUITE_FILE))
