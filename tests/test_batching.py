"""`nt_gp.batching.batch` equals the unbatched kernel for every `get`."""
import functools

import numpy as np
import pytest
import tensorflow as tf

from nt_gp import stax
from nt_gp.batching import batch
from nt_gp.kernel import Kernel

TOL = {np.float32: dict(rtol=2e-5, atol=1e-6),
       np.float64: dict(rtol=1e-11, atol=1e-13)}
# ReLU's arc-cosine kernel has an infinite derivative at correlation 1: on the
# diagonal, last-bit differences of a block's matmul become sqrt(eps)-sized
# differences, batched or not. Its tolerance scales with sqrt(eps).
RELU_TOL = {np.float32: dict(rtol=2e-3, atol=1e-4),
            np.float64: dict(rtol=1e-6, atol=1e-9)}


def fcn():
  return stax.serial(stax.Dense(8, 1.5, 0.1), stax.Erf(),
                     stax.Dense(8, 1.5, 0.1), stax.Erf(), stax.Dense(1))[2]


def relu_fcn():
  return stax.serial(stax.Dense(8, 1.5, 0.1), stax.Relu(),
                     stax.Dense(8, 1.5, 0.1), stax.Relu(), stax.Dense(1))[2]


def cnn_flatten():
  return stax.serial(stax.Conv(4, (2, 2), padding='SAME', W_std=1.4),
                     stax.Relu(), stax.AvgPool((2, 2), (2, 2)),
                     stax.Conv(4, (2, 2), padding='SAME'), stax.Relu(),
                     stax.Flatten(), stax.Dense(1))[2]


def cnn_gap():
  return stax.serial(stax.Conv(4, (3, 3), padding='SAME', W_std=1.4),
                     stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1))[2]


def cnn_spatial():
  """No readout: outputs keep (X, X', Y, Y') spatial pairs to mirror."""
  return stax.serial(stax.Conv(4, (3, 3), padding='SAME', W_std=1.4),
                     stax.Relu(), stax.Conv(2, (2, 2), padding='SAME'))[2]


def inputs(shape, n1, n2, dtype, seed=0):
  rng = np.random.RandomState(seed)
  return (rng.randn(n1, *shape).astype(dtype),
          rng.randn(n2, *shape).astype(dtype))


def assert_same(got, want, dtype, name='out', tol=None):
  """Structural and numerical equality of kernel_fn results."""
  tol = tol or TOL
  if isinstance(want, Kernel):
    assert isinstance(got, Kernel), name
    for f in ('nngp', 'ntk', 'cov1', 'cov2', 'x1_is_x2', 'mask1', 'mask2',
              'shape1', 'shape2', 'diagonal_batch', 'diagonal_spatial',
              'is_gaussian', 'batch_axis', 'channel_axis'):
      assert_same(getattr(got, f), getattr(want, f), dtype, f'{name}.{f}', tol)
  elif isinstance(want, tuple) and hasattr(want, '_fields'):
    assert type(got) is type(want), (name, type(got), type(want))
    for f in want._fields:
      assert_same(getattr(got, f), getattr(want, f), dtype, f'{name}.{f}', tol)
  elif want is None or isinstance(want, (bool, int, tuple, str)):
    assert got == want, (name, got, want)
  else:
    g, w = np.asarray(got), np.asarray(want)
    assert g.shape == w.shape, (name, g.shape, w.shape)
    assert g.dtype == w.dtype, (name, g.dtype, w.dtype)
    if w.dtype == bool:
      np.testing.assert_array_equal(g, w, err_msg=name)
    else:
      np.testing.assert_allclose(g, w, err_msg=name, **tol[dtype])


GETS = [None, 'nngp', 'ntk', ('nngp', 'ntk'), ('ntk', 'cov1', 'cov2'),
        ('nngp', 'shape1', 'shape2', 'x1_is_x2')]


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('symmetric', [True, False])
def test_fcn_all_gets(dtype, symmetric):
  kernel_fn = fcn()
  x1, x2 = inputs((5,), 12, 8, dtype)
  x2 = None if symmetric else x2
  for get in GETS:
    want = kernel_fn(x1, x2, get)
    for batch_size, store_on_device in ((4, True), (2, False)):
      got = batch(kernel_fn, batch_size, store_on_device=store_on_device)(
          x1, x2, get)
      assert_same(got, want, dtype, f'get={get} b={batch_size}')


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_relu_fcn(dtype):
  kernel_fn = relu_fcn()
  x1, x2 = inputs((5,), 12, 8, dtype, seed=3)
  for xx2 in (None, x2):
    assert_same(batch(kernel_fn, 4)(x1, xx2), kernel_fn(x1, xx2), dtype,
                tol=RELU_TOL)


@pytest.mark.parametrize('make', [cnn_flatten, cnn_gap, cnn_spatial])
@pytest.mark.parametrize('symmetric', [True, False])
def test_cnn(make, symmetric):
  kernel_fn = make()
  dtype = np.float64
  x1, x2 = inputs((4, 4, 2), 6, 4, dtype)
  x2 = None if symmetric else x2
  want = kernel_fn(x1, x2, ('nngp', 'ntk'))
  got = batch(kernel_fn, 2)(x1, x2, ('nngp', 'ntk'))
  assert_same(got, want, dtype, tol=RELU_TOL)


def test_cnn_spatial_full_kernel_float32():
  kernel_fn = cnn_spatial()
  x1, _ = inputs((4, 3, 2), 6, 1, np.float32)
  want = kernel_fn(x1, None)
  assert want.nngp.shape == (6, 6, 4, 4, 3, 3)  # mirroring swaps X, X' too
  assert_same(batch(kernel_fn, 3)(x1, None), want, np.float32, tol=RELU_TOL)


def counting(kernel_fn):
  """`kernel_fn` recording the block shapes it is called with."""
  calls = []

  @functools.wraps(kernel_fn)
  def wrapped(x1, x2=None, *args, **kwargs):
    calls.append((x1.shape[0], None if x2 is None else x2.shape[0]))
    return kernel_fn(x1, x2, *args, **kwargs)
  return wrapped, calls


def test_symmetric_computes_each_block_once():
  kernel_fn, calls = counting(fcn())
  x1, x2 = inputs((3,), 8, 8, np.float64)
  batch(kernel_fn, 2)(x1, None, 'nngp')
  # 4 diagonal blocks with x2=None, 6 off-diagonal blocks, none twice.
  assert sorted(calls, key=str) == sorted([(2, None)] * 4 + [(2, 2)] * 6,
                                          key=str)
  calls.clear()
  batch(kernel_fn, 2)(x1, x2, 'nngp')
  assert calls == [(2, 2)] * 16


@pytest.mark.parametrize('n1, n2, batch_size', [(6, 4, 2), (7, 5, 3)])
def test_kernel_input(n1, n2, batch_size):
  first = stax.serial(stax.Dense(4, 1.3, 0.2), stax.Relu())[2]
  second = stax.serial(stax.Dense(4, 1.1), stax.Erf(), stax.Dense(1))[2]
  x1, x2 = inputs((3,), n1, n2, np.float64)
  for xx2 in (None, x2):
    k_in = first(x1, xx2)
    batched = batch(second, batch_size)
    assert_same(batched(k_in), second(k_in), np.float64, tol=RELU_TOL)
    assert_same(batched(k_in, get='ntk'), second(k_in, get='ntk'),
                np.float64, tol=RELU_TOL)


def test_multi_input_list():
  kernel_fn = stax.serial(stax.parallel(stax.Dense(2), stax.Dense(2)),
                          stax.FanInSum(), stax.Relu(), stax.Dense(1))[2]
  rng = np.random.RandomState(1)
  xa, xb = rng.randn(6, 3), rng.randn(6, 2)
  # A tuple: `kernel_fn` itself rejects a *list* `x2` (unhashable cache key).
  want = kernel_fn((xa, xb), None, ('nngp', 'ntk'))
  assert_same(batch(kernel_fn, 3)((xa, xb), None, ('nngp', 'ntk')), want,
              np.float64, tol=RELU_TOL)


def test_store_on_device_false_gives_host_tensors():
  kernel_fn = fcn()
  x1, _ = inputs((3,), 8, 1, np.float32)
  out = batch(kernel_fn, 4, store_on_device=False)(x1, None, 'nngp')
  assert isinstance(out, tf.Tensor) and 'CPU' in out.device
  assert out.dtype == tf.float32


def test_batch_size_zero_single_device_is_unbatched():
  kernel_fn, calls = counting(fcn())
  x1, _ = inputs((3,), 5, 1, np.float64)
  batch(kernel_fn, 0, device_count=0)(x1, None, 'nngp')
  assert calls == [(5, None)]


@pytest.mark.parametrize('n1, n2, batch_size', [
    (8, 6, 3),       # both sides ragged (neural-tangents refuses these)
    (9, 6, 2),       # rows ragged
    (7, 7, 3),       # square, ragged
    (5, 3, 8),       # block larger than the kernel: one block
])
def test_any_batch_size_gives_the_unbatched_kernel(n1, n2, batch_size):
  kernel_fn, calls = counting(fcn())
  x1, x2 = inputs((3,), n1, n2, np.float64)
  for b in (x2, None):
    for get in (('nngp', 'ntk'), None, ('ntk', 'cov1', 'cov2')):
      calls.clear()
      got = batch(kernel_fn, batch_size)(x1, b, get)
      assert_same(got, fcn()(x1, b, get), np.float64, f'{get} x2={b is None}')
      # Every block is at most batch_size x batch_size, and the blocks cover
      # the kernel once (the upper triangle once for x2=None).
      rows = [r for r, _ in calls]
      assert max(rows) <= batch_size
      if b is not None:
        assert sum(r * c for r, c in calls) == n1 * n2


def test_ragged_spatial_blocks_are_mirrored():
  kernel_fn = cnn_spatial()
  x1, _ = inputs((4, 3, 2), 7, 1, np.float64)
  want = kernel_fn(x1, None)
  assert_same(batch(kernel_fn, 3)(x1, None), want, np.float64, tol=RELU_TOL)
  assert_same(batch(kernel_fn, 3, store_on_device=False)(x1, None), want,
              np.float64, tol=RELU_TOL)


def test_ragged_kernel_input():
  first = stax.serial(stax.Dense(4, 1.3, 0.2), stax.Relu())[2]
  second = stax.serial(stax.Dense(4, 1.1), stax.Erf(), stax.Dense(1))[2]
  x1, x2 = inputs((3,), 7, 5, np.float64)
  for xx2 in (None, x2):
    k_in = first(x1, xx2)
    assert_same(batch(second, 3)(k_in), second(k_in), np.float64,
                tol=RELU_TOL)


def test_bad_arguments():
  kernel_fn = fcn()
  with pytest.raises(ValueError, match='batch_size'):
    batch(kernel_fn, -1)
  with pytest.raises(TypeError, match='`batch_size` must be an int, got 2.5'):
    batch(kernel_fn, 2.5)
  with pytest.raises(ValueError, match='device_count'):
    batch(kernel_fn, 2, device_count=-2)
  with pytest.raises(ValueError, match='only 1 CPU device'):
    batch(kernel_fn, 2, device_count=8)(np.ones((4, 2)))
  with pytest.raises(TypeError, match='callable'):
    batch(None, 2)


def test_full_batch_covariance_is_refused():
  kernel_fn = fcn()
  x1, _ = inputs((3,), 4, 1, np.float64)
  batched = batch(kernel_fn, 2)
  with pytest.raises(NotImplementedError, match='diagonal_batch=False'):
    batched(x1, None, diagonal_batch=False)
  # The nngp alone does not need the full covariance of the blocks' union.
  np.testing.assert_allclose(
      batched(x1, None, 'nngp', diagonal_batch=False),
      kernel_fn(x1, None, 'nngp', diagonal_batch=False), rtol=1e-12)
