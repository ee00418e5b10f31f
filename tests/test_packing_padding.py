"""Batches whose size has no small divisor (primes) are packed after padding
with copies of the first input: the kernels and their gradients equal the
unpacked computation's (`config.pack_symmetric = False`)."""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import config, stax
from nt_gp.ops import packing

NETS = {
    'mlp_erf': (lambda: stax.serial(
        stax.Dense(64, 1.5, .05), stax.Relu(), stax.Dense(64, 1.5, .05),
        stax.Erf(), stax.Dense(1)), (37, 5)),
    'cnn_full_spatial': (lambda: stax.serial(
        stax.Conv(8, (3, 3), padding='SAME'), stax.Relu(),
        stax.AvgPool((2, 2)), stax.Conv(8, (3, 3)), stax.Gelu(),
        stax.GlobalAvgPool(), stax.Dense(1)), (19, 6, 6, 2)),
    'cnn_flatten': (lambda: stax.serial(
        stax.Conv(8, (3, 3), padding='SAME'), stax.Relu(), stax.Flatten(),
        stax.Dense(1)), (23, 5, 5, 2)),
}


def _kernels_and_gradient(kernel_fn, x, pack):
  old = config.pack_symmetric
  config.pack_symmetric = pack
  try:
    @tf.function(autograph=False)     # traced anew: no cached compilation
    def f(x):
      with tf.GradientTape() as tape:
        tape.watch(x)
        k = kernel_fn(x, None, ('nngp', 'ntk'))
        loss = tf.reduce_sum(k.ntk ** 2) + tf.reduce_sum(k.nngp)
      return k.nngp, k.ntk, tape.gradient(loss, x)
    return [t.numpy() for t in f(tf.constant(x))]
  finally:
    config.pack_symmetric = old


@pytest.mark.parametrize('name', sorted(NETS))
def test_padded_packing_equals_unpacked(name):
  make, shape = NETS[name]
  n = shape[0]
  blocks = packing.block_count(n)
  assert blocks > 1 and packing.padded_size(n, blocks) > n   # padded
  _, _, kernel_fn = make()
  x = np.random.RandomState(0).randn(*shape)
  packed = _kernels_and_gradient(kernel_fn, x, True)
  full = _kernels_and_gradient(kernel_fn, x, False)
  for got, want in zip(packed, full):
    assert got.shape == want.shape
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-12,
                               atol=1e-12 * np.abs(want).max())


def _entries(m, b):
  return m * m * (b + 1) / (2 * b) if b > 1 else m * m


def _plain_blocks(n):
  return max([b for b in range(1, min(packing.MAX_BLOCKS, n // 2) + 1)
              if n % b == 0] or [1])


def test_block_count_pads_only_for_at_least_a_tenth_fewer_entries():
  for n in list(range(1, 80)) + [257, 500, 1000, 1009, 4001]:
    blocks = packing.block_count(n)
    size = packing.padded_size(n, blocks)
    plain = _entries(n, _plain_blocks(n))
    assert size - n <= n // 16
    if size == n:
      assert blocks == _plain_blocks(n)
    else:
      assert _entries(size, blocks) < 0.9 * plain, n
    # no size within the allowed padding, packed by any B <= 8 that divides
    # it with blocks of >= 2 inputs, gains 10% and propagates fewer entries
    for m in range(n + 1, n + n // 16 + 1):
      for b in range(2, min(packing.MAX_BLOCKS, m // 2) + 1):
        if m % b == 0 and _entries(m, b) < 0.9 * plain:
          assert _entries(m, b) >= _entries(size, blocks) - 1e-9, (n, m, b)
  assert packing.padded_size(500, packing.block_count(500)) == 500
  assert packing.padded_size(257, packing.block_count(257)) == 259
