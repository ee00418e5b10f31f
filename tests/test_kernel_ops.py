"""Operations on `Kernel` records and trees of them (nt_gp.kernel).

Expected values are computed with numpy from the inputs: the input kernel of
`Dense(1, W_std=w, b_std=b)` is `w² x1 x2ᵀ / d + b²`.
"""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import stax
from nt_gp.kernel import Kernel, flatten_kernels, is_kernel_tree, map_kernels
from nt_gp.stax.inputs import inputs_to_kernel

RNG = np.random.RandomState(0)
X1 = RNG.randn(5, 3)
X2 = RNG.randn(4, 3)


def dense_kernel(x1, x2=None, **kwargs):
  return stax.Dense(1, W_std=1.5, b_std=0.5)[2](x1, x2, get=None, **kwargs)


def expected_nngp(a, b):
  return 2.25 * a @ b.T / a.shape[1] + 0.25


def test_scale_multiplies_everything_and_adds_to_covariances_only():
  k = dense_kernel(X1, X2).scale(tf.constant(3., tf.float64), 2.)
  np.testing.assert_allclose(k.nngp, 3 * expected_nngp(X1, X2) + 2, rtol=1e-12)
  np.testing.assert_allclose(k.cov1, 3 * np.diag(expected_nngp(X1, X1)) + 2,
                             rtol=1e-12)
  np.testing.assert_allclose(k.cov2, 3 * np.diag(expected_nngp(X2, X2)) + 2,
                             rtol=1e-12)
  # Dense's NTK of the inputs is its NNGP; scaling does not add to it.
  np.testing.assert_allclose(k.ntk, 3 * expected_nngp(X1, X2), rtol=1e-12)


def test_map_covs_sees_each_tensor_with_its_batch_axes():
  seen = {}
  k = dense_kernel(X1, X2, diagonal_batch=False).to_batch_last()

  def record(t, batch_ndim):
    seen[tuple(t.shape)] = batch_ndim
    return t
  k.map_covs(record)
  assert seen == {(5, 4): 2, (5, 5): 2, (4, 4): 2}

  seen.clear()
  k = dense_kernel(X1).to_batch_last()
  out = k.map_covs(record, ntk=False)
  assert seen == {(5, 5): 2, (5,): 1}
  assert out.cov2 is None and out.ntk is k.ntk


def test_map_covs_on_packed_kernels_passes_the_block_axes():
  x = tf.constant(RNG.randn(8, 3))
  k = inputs_to_kernel(x, None, diagonal_batch=True, diagonal_spatial=False,
                       compute_ntk=False, batch_axis=0, channel_axis=-1,
                       pack=True)
  assert k.packed
  seen = []
  k.map_covs(lambda t, batch_ndim: seen.append((t.shape.rank, batch_ndim)) or t)
  assert seen == [(3, 3), (1, 1)]


@pytest.mark.parametrize('x2', [None, X2])
def test_mask_zeroes_entries_of_masked_inputs(x2):
  mask1 = np.array([False, True, False, False, True])[:, None]
  k = dense_kernel(X1, x2).to_batch_last()
  k = k.replace(mask1=mask1, mask2=None if x2 is None else
                np.array([True, False, False, False])[:, None]).mask()
  b = X1 if x2 is None else X2
  keep1 = ~mask1[:, 0]
  keep2 = keep1 if x2 is None else np.array([False, True, True, True])
  np.testing.assert_allclose(
      k.nngp, expected_nngp(X1, b) * np.outer(keep1, keep2), rtol=1e-12)
  np.testing.assert_allclose(k.cov1, np.diag(expected_nngp(X1, X1)) * keep1,
                             rtol=1e-12)


def test_mask_of_spatial_kernels_matches_masked_inputs():
  """Zeroing the kernel at masked positions = the kernel of inputs whose
  masked positions are zero, for a linear layer without bias."""
  x = RNG.randn(3, 4, 2)
  mask = np.zeros((3, 4, 1), bool)
  mask[0, 1] = mask[2, 3] = True
  kernel_fn = stax.Dense(1, W_std=1.)[2]
  k = kernel_fn(x, get=None, diagonal_spatial=False).to_batch_last()
  k = k.replace(mask1=mask, mask2=None).mask().to_batch_first()
  zeroed = np.where(mask, 0., x)
  ref = kernel_fn(zeroed, get=None, diagonal_spatial=False)
  np.testing.assert_allclose(k.nngp, ref.nngp, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize('rows, cols', [
    (slice(0, 2), slice(2, 5)), (slice(1, 3), slice(1, 3)),
    (slice(0, 5), slice(0, 1))])
def test_slice_of_a_self_kernel_is_the_kernel_of_the_sliced_inputs(rows, cols):
  part = dense_kernel(X1).slice(rows, cols)
  direct = dense_kernel(X1[rows], None if rows == cols else X1[cols])
  np.testing.assert_allclose(part.nngp, expected_nngp(X1[rows], X1[cols]),
                             rtol=1e-12)
  np.testing.assert_allclose(part.cov1, direct.cov1, rtol=1e-12)
  if rows == cols:
    assert part.cov2 is None and bool(part.x1_is_x2)
  else:
    np.testing.assert_allclose(part.cov2, direct.cov2, rtol=1e-12)
    assert not bool(part.x1_is_x2)
  assert part.shape1 == direct.shape1 and part.shape2 == direct.shape2


def test_slice_of_a_cross_kernel():
  part = dense_kernel(X1, X2, diagonal_batch=False).slice(slice(1, 4),
                                                          slice(0, 2))
  np.testing.assert_allclose(part.nngp, expected_nngp(X1[1:4], X2[:2]),
                             rtol=1e-12)
  np.testing.assert_allclose(part.cov2, expected_nngp(X2[:2], X2[:2]),
                             rtol=1e-12)
  assert part.shape2 == (2, 1)


def test_trees():
  k = dense_kernel(X1)
  tree = [k, (k, [k])]
  assert is_kernel_tree(tree) and is_kernel_tree(k)
  assert not is_kernel_tree([]) and not is_kernel_tree([k, 1.])
  assert len(flatten_kernels(tree)) == 3
  scaled = map_kernels(lambda kk: kk.scale(2.), tree)
  assert isinstance(scaled[1], tuple) and isinstance(scaled[1][1], list)
  np.testing.assert_allclose(scaled[1][1][0].nngp, 2 * k.nngp)
  assert isinstance(scaled[0], Kernel)
