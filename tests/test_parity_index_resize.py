"""`Index` and `ImageResize` kernels equal neural-tangents 0.6.5 (float64,
≤ 1e-6 relative error)."""
import functools
import pathlib

import numpy as np
import pytest

from tests.parity import harness
from tests.parity import live

SUITE_FILE = pathlib.Path(__file__).parent / 'parity' / 'suite_index_resize.py'
SUITE = harness.load_suite(SUITE_FILE)
GOLDEN = harness.load_golden('index_resize')
_CASES = {c['name']: c for c in SUITE}


@functools.lru_cache(maxsize=None)
def _ours(name):
  """nt_gp kernels of a case, shared by the golden and the live check."""
  return harness.compute_ours(_CASES[name])


@pytest.mark.parametrize('case', SUITE, ids=[c['name'] for c in SUITE])
def test_golden(case):
  x1, x2 = harness.make_inputs(case)
  np.testing.assert_array_equal(GOLDEN[f'{case["name"]}/x1'], x1)
  np.testing.assert_array_equal(GOLDEN[f'{case["name"]}/x2'], x2)
  harness.assert_matches(case, _ours(case['name']), GOLDEN)


@pytest.mark.parametrize('case', SUITE, ids=[c['name'] for c in SUITE])
def test_live(case):
  reference = live.reference_results(SUITE_FILE)
  harness.assert_matches(case, _ours(case['name']), reference)


def test_masked_cases_have_masked_positions():
  """The masked cases would not test masking if no position were masked."""
  n_masked_cases = 0
  for case in SUITE:
    if 'mask_constant' in case.get('kernel_kwargs', {}):
      n_masked_cases += 1
      for x in harness.make_inputs(case):
        masked = np.all(x == 10., axis=-1)
        assert 0 < masked.mean() < 1, case['name']
  assert n_masked_cases == 2


def test_resize_after_odd_number_of_convolutions():
  """A 1x1 convolution (W_std=1, no bias) leaves the NNGP unchanged, so the
  NNGP without it must equal neural-tangents' NNGP with it. (neural-tangents
  itself swaps the resized axes of a non-square resize when the kernel's
  spatial axes are stored reversed, after an odd number of convolutions.)"""
  case = dict(_CASES['resize_linear_mixed_same_size_gap'])
  one_by_one = 'stax.Conv(3, (1, 1)), '
  assert one_by_one in case['net']
  case['net'] = case['net'].replace(one_by_one, '')
  case['get'] = ('nngp',)
  ours = harness.compute_ours(case)
  harness.assert_matches(case, ours, GOLDEN)


@pytest.mark.parametrize('name', ['resize_linear_down_antialias_flatten',
                                  'index_int_row_to_1d_gap'])
def test_float32_follows_input_dtype(name):
  case = _CASES[name]
  ours = harness.compute_ours(case, dtype=np.float32)
  for key, val in ours.items():
    assert val.dtype == np.float32, key
  harness.assert_matches(case, ours, GOLDEN, rtol=2e-4)
