"""Kernels of masked (variable-length) inputs equal neural-tangents 0.6.5
through every mask-aware layer (float64, at the suite's tolerance in
tests/parity/tolerances.py); `apply_fn` with `mask_constant=` returns
`MaskedArray`s as neural-tangents does."""
import numpy as np

from nt_gp import stax
from tests.parity import harness
from tests.parity.suite_tests import ParitySuite

SUITE = ParitySuite('masking')
_CASES = SUITE.by_name
GOLDEN = SUITE.golden

test_golden, test_live = SUITE.kernel_tests()
test_apply_golden, test_apply_live = SUITE.apply_tests()


def test_cases_are_masked():
  for case in SUITE.cases + SUITE.apply_cases:
    for x in harness.make_inputs(case):
      masked = np.all(x == -7., axis=-1)
      assert 0 < masked.mean() < 1, case['name']


def test_masks_change_the_kernel():
  """Without `mask_constant` the padded inputs give other kernels."""
  case = _CASES['conv_same_relu_gap']
  kernel_fn = eval(case['net'], {'stax': stax, 'np': np})[2]  # pylint: disable=eval-used
  x1, x2, _ = SUITE.inputs(case)
  unmasked = kernel_fn(x1, x2, 'nngp').numpy()
  ref = GOLDEN['conv_same_relu_gap/cross/nngp']
  assert np.max(np.abs(unmasked - ref)) > 1e-2 * np.max(np.abs(ref))


def test_float32_masked_kernel():
  SUITE.check_float32('conv_transpose_same_gap')


def test_apply_fn_masked_arrays_chain_and_unmask():
  init_fn, apply_fn, _ = stax.serial(
      stax.Conv(3, (2,), (2,), padding='SAME'), stax.Relu(), stax.Dense(2))
  x = np.random.RandomState(0).randn(2, 6, 2)
  x[0, 2:] = np.nan
  _, params = init_fn(0, x.shape)
  out = apply_fn(params, x, mask_constant=np.nan)
  assert isinstance(out, stax.MaskedArray)
  mask = np.broadcast_to(out.mask, out.masked_value.shape)[..., 0]
  # Strided SAME convolution: output i looks at inputs 2i, 2i+1 and is
  # masked if its window's centre input 2i is.
  np.testing.assert_array_equal(mask, [[False, True, True], [False] * 3])
  assert np.all(np.isfinite(out.masked_value.numpy()))
  # A MaskedArray input is taken as is; unmask_fn zeroes masked outputs.
  masked_in = stax.MaskedArray(np.where(np.isnan(x), 0., x), np.isnan(x))
  out2 = stax.unmask_fn(apply_fn)(params, masked_in)
  np.testing.assert_allclose(
      out2.numpy(), np.where(np.broadcast_to(out.mask, out2.shape), 0.,
                             out.masked_value.numpy()), rtol=1e-12)
  # Without masked entries and without mask_constant: a plain tensor.
  plain = apply_fn(params, np.ones((2, 6, 2)))
  assert not isinstance(plain, stax.MaskedArray)
