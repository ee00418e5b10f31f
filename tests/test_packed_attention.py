"""`GlobalSelfAttention` and `LayerNorm` keep a symmetric block-packed kernel
(`x2 = None`) packed instead of unpacking it.

Their packed rules must give the kernels of the unpacked computation
(`config.pack_symmetric = False`), with padded batches (sizes without a
small divisor), and the same gradients with respect to the inputs and to a
hyperparameter; the packed path must really be taken, and `LayerNorm` must
fall back to unpacking where its factors cannot be applied block by block
(normalising over the batch axis, full covariances of images).
"""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import stax
from nt_gp.ops import packing
from nt_gp.stax import attention
from tests import finite_differences
from tests.test_packing_padding import _kernels_and_gradient as _run


def _block(w=1.2, ln_axis=-1):
  return stax.serial(
      stax.Dense(8, W_std=w, b_std=0.1), stax.FanOut(2),
      stax.parallel(stax.Identity(), stax.GlobalSelfAttention(
          8, 4, 4, 2, W_key_std=1.1, W_value_std=1.2, W_query_std=0.9,
          W_out_std=1.0, b_std=0.1)),
      stax.FanInSum(), stax.LayerNorm(axis=ln_axis),
      stax.Dense(8, W_std=1.3, b_std=0.1), stax.Relu(),
      stax.GlobalAvgPool(), stax.Dense(1, W_std=1.0, b_std=0.1))[2]


def _spy_unpacks(monkeypatch):
  """Counts `packing.unpack` calls on covariances of more than 2 axes (the
  final one, of the readout's `(N, N)` kernel, has 2 or 3)."""
  calls = []
  unpack = packing.unpack

  def spy(t, *args, **kwargs):
    if t is not None and t.shape.rank > 3:
      calls.append(t.shape.rank)
    return unpack(t, *args, **kwargs)
  monkeypatch.setattr(packing, 'unpack', spy)
  return calls


@pytest.mark.parametrize('dtype,tol', [(np.float64, 1e-12), (np.float32, 2e-5)])
@pytest.mark.parametrize('n', [12, 19])      # 19: padded to 20 = 5 x 4
def test_packed_block_equals_unpacked(dtype, tol, n, monkeypatch):
  x = np.random.default_rng(n).normal(size=(n, 6, 3)).astype(dtype)
  kernel_fn = _block()
  unpacked = _run(kernel_fn, x, False)
  weights = []
  block_pair_weights = attention._block_pair_weights  # pylint: disable=protected-access
  monkeypatch.setattr(attention, '_block_pair_weights',
                      lambda g, b: weights.append(b) or block_pair_weights(g, b))
  unpacks = _spy_unpacks(monkeypatch)
  packed = _run(kernel_fn, x, True)
  assert weights and packing.block_count(n) > 1, weights
  assert not unpacks, unpacks      # neither attention nor LayerNorm unpacked
  for name, a, b in zip(('nngp', 'ntk', 'd/dx'), packed, unpacked):
    scale = np.max(np.abs(b))
    assert np.max(np.abs(a - b)) <= tol * scale, name
  # nngp and ntk differ and the kernel is not constant: a mix-up would show.
  assert not np.allclose(packed[0], packed[1], rtol=1e-2)
  assert np.std(packed[0]) > 1e-3 * np.max(np.abs(packed[0]))


def test_packed_hyperparameter_gradient_matches_finite_differences():
  x = np.random.default_rng(3).normal(size=(10, 5, 3))

  def total(w):
    k = _block(w=w)(x, None, ('nngp', 'ntk'))
    return tf.reduce_sum(k.nngp) + 0.5 * tf.reduce_sum(k.ntk ** 2)
  g, fd = finite_differences.scalar_gradient_and_difference(total, 1.2)
  assert g == pytest.approx(fd, rel=1e-7)


def test_layernorm_over_the_batch_unpacks_and_agrees(monkeypatch):
  x = np.random.default_rng(4).normal(size=(12, 6, 3))
  kernel_fn = _block(ln_axis=(0, 2))
  unpacked = _run(kernel_fn, x, False)
  unpacks = _spy_unpacks(monkeypatch)
  packed = _run(kernel_fn, x, True)
  assert unpacks     # each input's factor is the batch mean: no block form
  for a, b in zip(packed, unpacked):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.max(np.abs(b)))


def test_layernorm_on_image_covariances_unpacks_and_agrees(monkeypatch):
  x = np.random.default_rng(5).normal(size=(8, 4, 4, 2))
  kernel_fn = stax.serial(
      stax.Conv(4, (2, 2), padding='SAME', W_std=1.3, b_std=0.1),
      stax.LayerNorm(axis=(1, 2, 3)), stax.Relu(), stax.GlobalAvgPool(),
      stax.Dense(1))[2]
  unpacked = _run(kernel_fn, x, False)
  unpacks = _spy_unpacks(monkeypatch)
  packed = _run(kernel_fn, x, True)
  assert unpacks     # (X, X', Y, Y', K, b, b): too many axes to broadcast
  for a, b in zip(packed, unpacked):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.max(np.abs(b)))
