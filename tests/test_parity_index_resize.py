"""`Index` and `ImageResize` kernels equal neural-tangents 0.6.5 (float64, at
the suite's tolerance in tests/parity/tolerances.py)."""
import numpy as np
import pytest

from tests.parity import harness
from tests.parity.suite_tests import ParitySuite

SUITE = ParitySuite('index_resize')
GOLDEN = SUITE.golden
_CASES = SUITE.by_name

test_golden, test_live = SUITE.kernel_tests()


def test_masked_cases_have_masked_positions():
  """The masked cases would not test masking if no position were masked."""
  n_masked_cases = 0
  for case in SUITE.cases:
    if 'mask_constant' in case.get('kernel_kwargs', {}):
      n_masked_cases += 1
      for x in SUITE.inputs(case)[:2]:
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
  ours = harness.compute_ours(case, inputs=SUITE.inputs(case))
  harness.assert_matches(case, ours, GOLDEN, rtol=SUITE.rtol(case))


@pytest.mark.parametrize('name', ['resize_linear_down_antialias_flatten',
                                  'index_int_row_to_1d_gap'])
def test_float32_follows_input_dtype(name):
  SUITE.check_float32(name)
