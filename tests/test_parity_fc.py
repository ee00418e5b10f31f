"""Fully-connected kernels equal neural-tangents 0.6.5 in float64 (≤ 1e-6 rel.)."""
import pathlib

import numpy as np
import pytest

from tests.parity import harness
from tests.parity import live

SUITE_FILE = pathlib.Path(__file__).parent / 'parity' / 'suite_fc.py'
SUITE = harness.load_suite(SUITE_FILE)
GOLDEN = harness.load_golden('fc')


def _without_reference_nan_diagonal(case, ours, reference):
  """Handles cases marked `reference_nan_diagonal` (RectifiedMonomial).

  neural-tangents returns NaN on the diagonal of the `x2=None` kernels there
  (θ = 0 in (π - θ)/sin θ · sin θ); every other entry must be finite. The NNGP
  diagonal is then checked against the reference's own `cov1` (for `x2=None`,
  ``nngp[i, i] = cov1[i]``); the NTK diagonal is left out here and checked
  against closed forms in tests/test_nonlinearity_values.py.
  """
  if not case.get('reference_nan_diagonal'):
    return ours, reference
  name = case['name']
  ours, reference = dict(ours), dict(reference)
  for key in [k for k in reference if k.startswith(f'{name}/')]:
    value = reference[key]
    if value.dtype.kind != 'f':
      continue
    bad = ~np.isfinite(value)
    if key in (f'{name}/sym/nngp', f'{name}/sym/ntk'):
      off_diagonal = bad & ~np.eye(*value.shape, dtype=bool)
      assert not off_diagonal.any(), f'{key}: NaN off the diagonal'
      value = value.copy()
      if key.endswith('nngp'):
        np.fill_diagonal(value, reference[f'{name}/sym/cov1'])
      else:
        np.fill_diagonal(value, 0.)
        mine = ours['sym/ntk'].copy()
        np.fill_diagonal(mine, 0.)
        ours['sym/ntk'] = mine
      reference[key] = value
    else:
      assert not bad.any(), f'{key}: unexpected non-finite reference values'
  return ours, reference


def _check(case, reference):
  ours, reference = _without_reference_nan_diagonal(
      case, harness.compute_ours(case), reference)
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
