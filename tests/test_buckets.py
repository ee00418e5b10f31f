"""Size buckets: a small call pads its batches to a bucket size and slices the
kernel back. The kernels, their Kernel fields and their gradients equal
those of the exact size (and a closed form), and sizes of one bucket share
one trace."""
import numpy as np
import pytest
import tensorflow as tf

import nt_gp
from nt_gp import stax
from nt_gp.stax import buckets


@pytest.fixture
def bucket_limit():
  """Sets `config.bucket_max_entries` for one test."""
  old = nt_gp.config.bucket_max_entries
  yield lambda v: setattr(nt_gp.config, 'bucket_max_entries', v)
  nt_gp.config.bucket_max_entries = old


def _relu_nngp(x1, x2, w_std, b_std):
  """NNGP of Dense -> Relu -> Dense in closed form (arc-cosine kernel)."""
  def q(a, b):
    return w_std ** 2 * a @ b.T / a.shape[1] + b_std ** 2
  v1 = np.sqrt(np.diag(q(x1, x1)))
  v2 = np.sqrt(np.diag(q(x2, x2)))
  norm = np.outer(v1, v2)
  c = np.clip(q(x1, x2) / norm, -1., 1.)
  theta = np.arccos(c)
  return (w_std ** 2 * norm * (np.sin(theta) + (np.pi - theta) * c)
          / (2 * np.pi) + b_std ** 2)


def test_bucket_sizes_grow_a_batch_by_less_than_a_sixteenth():
  for n in list(range(1, 300)) + [1000, 4097, 65537]:
    m = buckets.bucket_size(n)
    assert n <= m < n + max(n / 16, 1) and buckets.bucket_size(m) == m
  assert buckets.bucket_size(1001) == buckets.bucket_size(1024) == 1024


@pytest.mark.parametrize('n1, n2', [(37, None), (37, 50), (45, 45)])
def test_padded_kernels_equal_exact_ones_and_the_closed_form(bucket_limit,
                                                             n1, n2):
  w_std, b_std = 1.3, 0.2
  _, _, kernel_fn = stax.serial(stax.Dense(64, w_std, b_std), stax.Relu(),
                                stax.Dense(1, w_std, b_std))
  rng = np.random.RandomState(0)
  x1 = rng.randn(n1, 6)
  x2 = None if n2 is None else rng.randn(n2, 6)
  assert buckets.bucket_size(n1) != n1
  bucket_limit(2 ** 22)
  padded = kernel_fn(x1, x2, get=None)
  bucket_limit(0)
  exact = kernel_fn(x1, x2, get=None)
  want = _relu_nngp(x1, x1 if x2 is None else x2, w_std, b_std)
  np.testing.assert_allclose(padded.nngp, want, rtol=1e-12)
  for field in ('nngp', 'ntk', 'cov1', 'cov2'):
    a, b = getattr(padded, field), getattr(exact, field)
    assert (a is None) == (b is None), field
    if a is not None:
      assert a.shape == b.shape, field
      np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
  assert padded.shape1 == exact.shape1 and padded.shape2 == exact.shape2
  assert bool(padded.x1_is_x2) == bool(exact.x1_is_x2)


def test_sizes_of_one_bucket_share_one_trace(bucket_limit):
  bucket_limit(2 ** 22)
  traces = []

  def nngp_fn(cov12, var1, var2):
    traces.append(cov12.shape)
    return cov12 * 0.5
  _, _, kernel_fn = stax.serial(
      stax.Dense(8), stax.Elementwise(lambda x: x, nngp_fn=nngp_fn))
  rng = np.random.RandomState(1)
  kernel_fn(rng.randn(33, 4), None, 'nngp')
  first = len(traces)
  assert first > 0
  out = kernel_fn(rng.randn(34, 4), None, 'nngp')       # same bucket: 34
  assert len(traces) == first and out.shape == (34, 34)
  kernel_fn(rng.randn(35, 4), None, 'nngp')             # the next one: 36
  assert len(traces) > first


def test_gradients_through_the_padding_equal_exact_ones(bucket_limit):
  """Gradients with respect to the inputs (the padded copies of the first
  input get none) and to a hyperparameter."""
  x = tf.constant(np.random.RandomState(2).randn(37, 5))
  w = tf.Variable(1.4, dtype=tf.float64)

  def grads():
    _, _, kernel_fn = stax.serial(stax.Dense(16, w, 0.1), stax.Erf(),
                                  stax.Dense(1, w, 0.1))
    with tf.GradientTape() as tape:
      tape.watch(x)
      value = tf.reduce_sum(kernel_fn(x, None, 'ntk') ** 2)
    return [g.numpy() for g in tape.gradient(value, [x, w])]
  bucket_limit(2 ** 22)
  padded = grads()
  bucket_limit(0)
  exact = grads()
  for a, b in zip(padded, exact):
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)


def test_large_calls_and_traced_calls_run_the_exact_size(bucket_limit):
  bucket_limit(100)       # entries: 37 x 37 > 100
  _, _, kernel_fn = stax.serial(stax.Dense(4), stax.Relu())
  x = np.random.RandomState(3).randn(37, 3)
  assert buckets.bucketed_sizes(x, None, {}, 37 * 37) is None
  bucket_limit(2 ** 22)
  inside = tf.function(lambda t: kernel_fn(t, None, 'nngp'))(x)
  np.testing.assert_allclose(inside, kernel_fn(x, None, 'nngp'), rtol=1e-12)
