"""TFP and GPflow adapter contracts: pickling, `make_trainable`, hyperparameter
domains, input dtypes and tracing.

References: the stax `kernel_fn` at the same hyperparameter values (computed
without the adapters), TFP's/GPflow's documented conventions, and
TensorFlow's own retracing warning captured from its logger.
"""
import io
import logging
import pickle

import gpflow
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from nt_gp import stax
import nt_gp.gpflow
import nt_gp.tfp

tfb = tfp.bijectors


# Module-level architectures: pickling stores functions by reference.
def mlp(W_std, b_std):
  return stax.serial(stax.Dense(1, W_std, b_std), stax.Relu(),
                     stax.Dense(1, W_std, b_std))


def abrelu_net(W_std, a):
  return stax.serial(stax.Dense(1, W_std), stax.ABRelu(a, 1.),
                     stax.Dense(1, W_std))


@pytest.fixture(scope='module')
def x():
  return np.random.RandomState(0).randn(5, 3)


def stax_kernel(arch, x1, x2, get='nngp', **hps):
  return arch(**hps)[2](x1, x2, get).numpy()


# ----------------------------------------------------------------------------
# Pickling.
# ----------------------------------------------------------------------------
def test_tfp_kernel_pickles(x):
  W = tf.Variable(1.3, dtype=tf.float64)
  k = nt_gp.tfp.NeuralKernel(mlp, get='ntk', W_std=W, b_std=0.2)
  k2 = pickle.loads(pickle.dumps(k))
  assert type(k2) is type(k) and isinstance(k2, nt_gp.tfp.NeuralKernel)
  assert k2.domains == {'W_std': 'positive', 'b_std': 'non-negative'}
  np.testing.assert_array_equal(k2.matrix(x, x).numpy(),
                                k.matrix(x, x).numpy())
  assert isinstance(k2.W_std, tf.Variable) and float(k2.W_std) == 1.3
  # The per-hyperparameter class pickles on its own too.
  assert pickle.loads(pickle.dumps(type(k))) is type(k)
  assert pickle.loads(pickle.dumps(nt_gp.tfp.NeuralKernel)) is (
      nt_gp.tfp.NeuralKernel)
  # A TransformedVariable survives, transform included.
  Wt = tfp.util.TransformedVariable(1.4, tfb.Softplus(), dtype=tf.float64)
  kt = pickle.loads(pickle.dumps(
      nt_gp.tfp.NeuralKernel(mlp, W_std=Wt, b_std=0.1)))
  np.testing.assert_allclose(kt.matrix(x, x).numpy(),
                             stax_kernel(mlp, x, None, W_std=1.4, b_std=0.1),
                             rtol=1e-12)
  assert len(kt.trainable_variables) == 1


def test_gpflow_kernel_pickles(x):
  k = nt_gp.gpflow.NeuralKernel(mlp, get='ntk', W_std=1.3, b_std=0.2)
  k.W_std.assign(1.6)
  k2 = pickle.loads(pickle.dumps(k))
  np.testing.assert_array_equal(k2.K(x).numpy(), k.K(x).numpy())
  np.testing.assert_allclose(
      k2.K(x).numpy(), stax_kernel(mlp, x, None, 'ntk', W_std=1.6, b_std=0.2),
      rtol=1e-12)
  assert k2.domains == k.domains


# ----------------------------------------------------------------------------
# make_trainable.
# ----------------------------------------------------------------------------
def test_make_trainable(x):
  cls = nt_gp.tfp.NeuralKernel.for_architecture(mlp)
  props = cls.parameter_properties(tf.float64)
  assert sorted(props) == ['W_std', 'b_std']
  assert isinstance(props['W_std'].default_constraining_bijector_fn(),
                    tfb.Softplus)
  k = tfp.experimental.util.make_trainable(
      cls, initial_parameters={'W_std': 1.5, 'b_std': 0.25},
      parameter_dtype=tf.float64, architecture=mlp, get='ntk')
  # (Initial values exactly representable in float32: make_trainable casts
  # Python numbers through float32.)
  # (make_trainable returns TFP's deferred wrapper of the kernel.)
  assert len(k.trainable_variables) == 2
  np.testing.assert_allclose(k.matrix(x, x).numpy(),
                             stax_kernel(mlp, x, None, 'ntk', W_std=1.5,
                                         b_std=0.25), rtol=1e-12)
  # Random initialisation lands in each domain.
  k_rand = tfp.experimental.util.make_trainable(
      cls, parameter_dtype=tf.float64, architecture=mlp, seed=(1, 2))
  assert float(k_rand.W_std) > 0 and float(k_rand.b_std) > 0
  # The base class knows no hyperparameters: the error says what to pass.
  with pytest.raises(TypeError, match='for_architecture'):
    tfp.experimental.util.make_trainable(nt_gp.tfp.NeuralKernel,
                                         architecture=mlp)


# ----------------------------------------------------------------------------
# Domains: b_std = 0 and negative ABRelu slopes.
# ----------------------------------------------------------------------------
def test_zero_b_std(x):
  want = stax_kernel(mlp, x, x[:2], 'ntk', W_std=1.3, b_std=0.)
  kt = nt_gp.tfp.NeuralKernel(mlp, get='ntk', W_std=1.3, b_std=0.)
  kg = nt_gp.gpflow.NeuralKernel(mlp, get='ntk', W_std=1.3, b_std=0.)
  np.testing.assert_allclose(kt.matrix(x, x[:2]).numpy(), want, rtol=1e-12)
  np.testing.assert_allclose(kg.K(x, x[:2]).numpy(), want, rtol=1e-12)
  assert kt.domains['b_std'] == kg.domains['b_std'] == 'non-negative'
  bij = type(kt).parameter_properties(tf.float64)[
      'b_std'].default_constraining_bijector_fn()
  assert isinstance(bij, tfb.Softplus)
  assert float(bij.forward(np.float64(-40.))) < 1e-15   # reaches down to 0
  # GPflow: Softplus cannot represent 0, so the zero is a constant.
  assert not kg.b_std.trainable
  kg1 = nt_gp.gpflow.NeuralKernel(mlp, W_std=1.3, b_std=0.5)
  assert isinstance(kg1.b_std.transform, tfb.Softplus)
  # A variable at 0 in TFP: finite gradients, and they match the closed form
  # dK/db = 0 at b = 0 (the kernel depends on b²).
  b = tf.Variable(0., dtype=tf.float64)
  kv = nt_gp.tfp.NeuralKernel(mlp, get='ntk', W_std=1.3, b_std=b)
  with tf.GradientTape() as tape:
    total = tf.reduce_sum(kv.matrix(x, x[:2])) + tf.reduce_sum(
        kv.apply(x, x))
  assert float(tape.gradient(total, b)) == 0.
  for bad in (-0.1, np.nan):
    with pytest.raises(ValueError, match='non-negative'):
      nt_gp.tfp.NeuralKernel(mlp, W_std=1.3, b_std=bad)
    with pytest.raises(ValueError, match='non-negative'):
      nt_gp.gpflow.NeuralKernel(mlp, W_std=1.3, b_std=bad)
  with pytest.raises(ValueError, match='positive'):
    nt_gp.tfp.NeuralKernel(mlp, W_std=0., b_std=0.1)


def test_negative_abrelu_slope(x):
  want = stax_kernel(abrelu_net, x, x[:2], W_std=1.2, a=-0.5)
  kt = nt_gp.tfp.NeuralKernel(abrelu_net, W_std=1.2, a=-0.5)
  kg = nt_gp.gpflow.NeuralKernel(abrelu_net, W_std=1.2, a=-0.5)
  assert kt.domains == kg.domains == {'W_std': 'positive', 'a': 'real'}
  np.testing.assert_allclose(kt.matrix(x, x[:2]).numpy(), want, rtol=1e-12)
  np.testing.assert_allclose(kg.K(x, x[:2]).numpy(), want, rtol=1e-12)
  assert isinstance(type(kt).parameter_properties()[
      'a'].default_constraining_bijector_fn(), tfb.Identity)
  assert isinstance(kg.a.transform, tfb.Identity) and kg.a.trainable
  # The slope trains across zero: the gradient of a loss moves it, and the
  # kernel at a = 0.3 (a sign change) is the stax kernel there.
  kg.a.assign(0.3)
  np.testing.assert_allclose(kg.K(x).numpy(),
                             stax_kernel(abrelu_net, x, None, W_std=1.2,
                                         a=0.3), rtol=1e-12)
  with tf.GradientTape() as tape:
    total = tf.reduce_sum(kg.K(x))
  assert float(tape.gradient(total, kg.a.unconstrained_variable)) != 0.


# ----------------------------------------------------------------------------
# Input dtypes.
# ----------------------------------------------------------------------------
def test_integer_inputs_are_cast_to_the_kernel_dtype_in_both_adapters():
  xi = np.arange(15).reshape(5, 3) % 4 - 1
  xf = xi.astype(np.float64)
  want = stax_kernel(mlp, xf, None, 'ntk', W_std=1.2, b_std=0.1)
  kt = nt_gp.tfp.NeuralKernel(mlp, get='ntk', W_std=np.float64(1.2),
                              b_std=np.float64(0.1))
  kg = nt_gp.gpflow.NeuralKernel(mlp, get='ntk', W_std=1.2, b_std=0.1)
  assert kt.dtype == kg.dtype == tf.float64
  for out in (kt.matrix(xi, xi), kg.K(xi)):
    assert out.dtype == tf.float64
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12)
  np.testing.assert_allclose(kt.apply(xi, xi).numpy(), kg.K_diag(xi).numpy(),
                             rtol=1e-12)
  # A TFP kernel without a dtype (Python numbers) takes TFP's default.
  k_none = nt_gp.tfp.NeuralKernel(mlp, get='ntk', W_std=1.2, b_std=0.1)
  assert k_none.dtype is None
  assert k_none.matrix(xi, xi).dtype == tf.float32
  # (TFP itself converts numpy arrays to the kernel's dtype first.)
  for bad in (tf.constant(xf, tf.complex128), tf.constant(xf > 0)):
    with pytest.raises(TypeError, match='real-valued'):
      kt.matrix(bad, bad)
    with pytest.raises(TypeError, match='real-valued'):
      kg.K(bad)


def test_kernel_dtype_wins_over_input_dtype(x):
  """TFP's convention: a kernel with a dtype computes in it."""
  x32 = x.astype(np.float32)
  kt = nt_gp.tfp.NeuralKernel(mlp, W_std=tf.constant(1.2, tf.float64),
                              b_std=0.1)
  assert kt.matrix(x32, x32).dtype == tf.float64
  assert kt.apply(x32, x32).dtype == tf.float64
  kg = nt_gp.gpflow.NeuralKernel(mlp, W_std=1.2, b_std=0.1)
  assert kg.K(x32).dtype == tf.float64 and kg.K_diag(x32).dtype == tf.float64
  np.testing.assert_allclose(kg.K(x32).numpy(),
                             stax_kernel(mlp, x32.astype(np.float64), None,
                                         W_std=1.2, b_std=0.1), rtol=1e-12)
  # Without a dtype the inputs decide.
  k_none = nt_gp.tfp.NeuralKernel(mlp, W_std=1.2, b_std=0.1)
  assert k_none.matrix(x32, x32).dtype == tf.float32


# ----------------------------------------------------------------------------
# Tracing.
# ----------------------------------------------------------------------------
def test_no_retracing_warning_on_ten_input_sizes():
  stream = io.StringIO()
  handler = logging.StreamHandler(stream)
  logger = tf.get_logger()
  logger.addHandler(handler)
  try:
    kt = nt_gp.tfp.NeuralKernel(mlp, get='ntk', W_std=1.2, b_std=0.1)
    kg = nt_gp.gpflow.NeuralKernel(mlp, get='ntk', W_std=1.2, b_std=0.1)
    rng = np.random.RandomState(1)
    for n in range(2, 12):
      a = rng.randn(n, 3)
      kt.matrix(a, a[:2])
      kt.apply(a, a)
      kg.K(a)
      kg.K_diag(a)
  finally:
    logger.removeHandler(handler)
  assert 'retracing' not in stream.getvalue(), stream.getvalue()
