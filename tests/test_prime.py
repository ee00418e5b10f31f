"""`nt_gp.ops.prime`: XLA clusters compiled on a second thread during a
trace give the same kernels and start once per function and shape."""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import _config
from nt_gp import nonfinite
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


def test_not_primed_inside_an_xla_compiled_caller():
  """A cluster traced into a `jit_compile` function is compiled as part of
  it: nothing to start."""
  compiled = tf.function(lambda x: x * 4., jit_compile=True, autograph=False)
  starts = []

  @tf.function(jit_compile=True, autograph=False)
  def outer(x):
    starts.append(prime.maybe_prime(compiled, (x,)))
    return compiled(x)
  with prime.priming():
    out = outer(tf.ones((2, 11)))
  assert starts == [False]
  np.testing.assert_allclose(out.numpy(), 4.)


def _log_starts(monkeypatch):
  """Records `(name of the compiled Python function, started)` for each
  `maybe_prime` call: `_values_only` is a covariance map's forward pass,
  `_map_vjp` its compiled gradient (`nt_gp.stax.compiled_map`)."""
  log = []
  original = prime.maybe_prime

  def spy(compiled, args):
    started = original(compiled, args)
    fn = compiled.python_function
    log.append((getattr(fn, 'func', fn).__name__, started))
    return started
  monkeypatch.setattr(prime, 'maybe_prime', spy)
  return log


def _relu_net(w_std=1.4, b_std=0.2):
  return stax.serial(stax.Dense(48, W_std=w_std, b_std=b_std), stax.Relu(),
                     stax.Dense(1, W_std=w_std, b_std=b_std))


def _value_and_input_gradient(kernel_fn, x):
  with tf.GradientTape() as tape:
    tape.watch(x)
    value = tf.reduce_sum(kernel_fn(x, None, 'ntk'))
  return value, tape.gradient(value, x)


def test_kernel_traced_into_a_users_function_primes_maps_and_gradients(
    monkeypatch):
  """In a user's `tf.function` the maps start compiling while the network
  is traced, and their compiled gradients while `tape.gradient` traces the
  backward pass; the results are those of the eager calls."""
  log = _log_starts(monkeypatch)
  x = tf.constant(np.random.default_rng(1).normal(size=(23, 5)))
  kernel_fn = _relu_net()[2]
  got = tf.function(_value_and_input_gradient, autograph=False)(kernel_fn, x)
  assert ('_values_only', True) in log and ('_map_vjp', True) in log, log
  want = _value_and_input_gradient(_relu_net()[2], x)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12, atol=0)

  # In a user's XLA-compiled function the maps are part of its program.
  log.clear()
  x = tf.constant(np.random.default_rng(2).normal(size=(19, 5)))
  with pytest.warns(nonfinite.NonFiniteCheckWarning):
    got = tf.function(_value_and_input_gradient, jit_compile=True,
                      autograph=False)(kernel_fn, x)
  assert log and not any(started for _, started in log), log
  want = _value_and_input_gradient(_relu_net()[2], x)
  for a, b in zip(got, want):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=0)


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_adapter_first_call_primes_maps_and_gradients(monkeypatch, dtype):
  """`nt_gp.tfp.NeuralKernel`'s first call of an input size (the first step
  of hyperparameter training) starts its maps' and their gradients'
  compilations while it is traced, and computes what later calls do."""
  from nt_gp.tfp import NeuralKernel  # pylint: disable=g-import-not-at-top
  log = _log_starts(monkeypatch)
  w = tf.Variable(1.4, dtype=dtype)
  b = tf.Variable(0.2, dtype=dtype)
  kernel = NeuralKernel(_relu_net, feature_ndims=1, w_std=w, b_std=b)
  x = tf.constant(np.random.default_rng(3).normal(size=(27, 5)).astype(dtype))

  def step():
    with tf.GradientTape() as tape:
      value = tf.reduce_sum(kernel.matrix(x, x))
    return [value] + tape.gradient(value, [w, b])
  first = step()
  assert ('_values_only', True) in log and ('_map_vjp', True) in log, log
  for a, c in zip(first, step()):
    assert a.dtype == dtype
    np.testing.assert_array_equal(a.numpy(), c.numpy())


def test_priming_many_signatures_logs_no_retracing_warning():
  """Each priming run traces a small function of its own; TensorFlow counts
  them as retraces of one function (they share their code) and, after five
  in a row, would log its "triggered tf.function retracing" warning at the
  user, who retraced nothing."""
  import logging
  records = []

  class Keep(logging.Handler):

    def emit(self, record):
      records.append(record.getMessage())
  handler = Keep()
  tf.get_logger().addHandler(handler)
  try:
    compiled = tf.function(lambda x: x * 2., jit_compile=True,
                           autograph=False)

    @tf.function(autograph=False, reduce_retracing=False)
    def outer(x):
      assert prime.maybe_prime(compiled, (x,))
      return compiled(x)
    with prime.priming():
      for n in range(2, 10):
        outer(tf.ones((n, 3)))
    prime._pool().submit(lambda: None).result()   # every run is done
  finally:
    tf.get_logger().removeHandler(handler)
  assert not [r for r in records if 'retracing' in r and 'prime' in r], records
