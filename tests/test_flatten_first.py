"""A network that starts with `Flatten` (no layer before it fixes a channel
axis) on image and sequence inputs: the kernel of the flattened inputs, in
closed form (neural-tangents gives the same; it used to raise a TypeError)."""
import numpy as np
import pytest

from nt_gp import stax


@pytest.mark.parametrize('shape', [(5, 3, 3, 2), (5, 4, 3)])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_flatten_then_dense_is_the_linear_kernel_of_flat_inputs(shape, dtype):
  w_std, b_std = 2 ** 0.5, 0.1
  _, _, kernel_fn = stax.serial(stax.Flatten(), stax.Dense(1, w_std, b_std))
  rs = np.random.RandomState(0)
  x1 = rs.randn(*shape).astype(dtype)
  x2 = rs.randn(3, *shape[1:]).astype(dtype)
  f1, f2 = x1.reshape(len(x1), -1), x2.reshape(len(x2), -1)
  d = f1.shape[1]
  tol = 1e-12 if dtype == np.float64 else 1e-5
  for a, b, fa, fb in ((x1, None, f1, f1), (x1, x2, f1, f2)):
    k = kernel_fn(a, b, ('nngp', 'ntk'))
    want = w_std ** 2 * (fa.astype(np.float64) @ fb.T) / d + b_std ** 2
    assert k.nngp.dtype == dtype
    np.testing.assert_allclose(k.nngp.numpy(), want, rtol=tol, atol=tol)
    np.testing.assert_allclose(k.ntk.numpy(), want, rtol=tol, atol=tol)
