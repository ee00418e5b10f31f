"""`nt_gp.ops.prime`: XLA clusters compiled on a second thread during a
trace give the same kernels and start once per function and shape."""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import _config
from nt_gp import stax
from nt_gp.ops import prime


def _traced_starts(fn, x, on=True):
  """How many compilations `maybe_prime` starts while tracing `fn(x)`."""
  started = []
  compiled = tf.function(fn, jit_compile=True, autograph=False)

  def outer(x):
    started.append(prime.maybe_prime(compiled, (x,)))
    return compiled(x)
  g = tf.function(outer, autograph=False)
  if on:
    with prime.priming():
      out = g(x)
  else:
    out = g(x)
  return started, out


def test_starts_only_inside_priming_and_once_per_shape():
  fn = lambda x: tf.sqrt(x) * 3.
  started, out = _traced_starts(fn, tf.ones((3, 4)), on=False)
  assert started == [False]
  started, out = _traced_starts(fn, tf.ones((3, 5)))
  assert started == [True]
  np.testing.assert_allclose(out.numpy(), 3.)
  # Another function object: its own compilation.
  started, _ = _traced_starts(lambda x: x + 1., tf.ones((3, 5)))
  assert started == [True]


def test_a_function_gone_leaves_no_record():
  """The record of started signatures is kept per function object, and goes
  with it: a later function that reuses a gone one's address (`id`) is
  still primed, and the record keeps no function alive."""
  import gc
  import weakref
  compiled = tf.function(lambda x: x - 1., jit_compile=True, autograph=False)

  @tf.function(autograph=False)
  def outer(x):
    assert prime.maybe_prime(compiled, (x,))
    return compiled(x)
  with prime.priming():
    outer(tf.ones((2, 9)))
  assert compiled in prime._DONE
  prime._pool().submit(lambda: None).result()   # the background run is done
  gone = weakref.ref(compiled)
  del compiled, outer
  gc.collect()
  assert gone() is None


def test_same_function_and_shape_starts_once():
  compiled = tf.function(lambda x: 2. * x, jit_compile=True, autograph=False)
  starts = []

  @tf.function(autograph=False)
  def outer(x):
    starts.append(prime.maybe_prime(compiled, (x,)))
    starts.append(prime.maybe_prime(compiled, (x,)))
    return compiled(x)
  with prime.priming():
    outer(tf.ones((2, 7)))
  assert starts == [True, False]


def test_large_and_eager_inputs_are_not_primed(monkeypatch):
  monkeypatch.setattr(prime, 'MAX_ENTRIES', 10)
  started, _ = _traced_starts(lambda x: x * 2., tf.ones((4, 4)))
  assert started == [False]
  with prime.priming():   # eager: nothing is being traced
    assert not prime.maybe_prime(
        tf.function(lambda x: x, jit_compile=True), (tf.ones(2),))


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_primed_first_call_equals_later_calls(dtype):
  """The first call of a new signature (its maps primed) runs the same
  compiled program as the later calls (the same bits), and agrees with the
  kernel computed without XLA."""
  def net():
    return stax.serial(stax.Dense(32, W_std=1.3, b_std=0.2), stax.Relu(),
                       stax.Dense(32, W_std=1.1), stax.Erf(), stax.Dense(1))
  x = np.random.default_rng(0).normal(size=(37, 6)).astype(dtype)
  kernel_fn = net()[2]
  first = kernel_fn(x, None, ('nngp', 'ntk'))
  again = kernel_fn(x, None, ('nngp', 'ntk'))
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  with _config.compilation(jit_compile=False):
    plain = net()[2](x, None, ('nngp', 'ntk'))
  tol = 1e-5 if dtype == np.float32 else 1e-12
  for a, b in zip(first, plain):
    assert a.dtype == dtype
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=tol, atol=tol)


def test_priming_records_the_callers_device_scope():
  """The background compilation runs under the device the call runs on."""
  with tf.device('/CPU:0'):
    with prime.priming():
      assert prime._STATE.device.endswith('CPU:0')
      started, out = _traced_starts(lambda x: x * 5., tf.ones((2, 9)))
  assert started == [True]
  np.testing.assert_allclose(out.numpy(), 5.)
  assert not getattr(prime._STATE, 'on', False)
