"""Compiled kernel calls stop the gradients of inputs no tape watches (see
`nt_gp.ops.watching`). Derivatives a user asks for are unchanged: with
respect to watched inputs (reverse and forward mode, the public `kernel_fn`
and the TFP adapter) they match central finite differences, and those with
respect to hyperparameters match the same step traced in one tf.function."""
import numpy as np
import tensorflow as tf

from nt_gp import stax
from nt_gp.tfp import NeuralKernel

H = 1e-6


def _net(w_std=1.3):
  return stax.serial(stax.Dense(16, w_std, 0.2), stax.Erf(),
                     stax.Dense(1, w_std, 0.2))


def _inputs():
  rng = np.random.RandomState(0)
  return rng.randn(5, 3), rng.randn(5, 3)


def _finite_difference(f, x, direction):
  return (f(x + H * direction) - f(x - H * direction)) / (2 * H)


def test_reverse_and_forward_mode_input_derivatives_of_kernel_fn():
  _, _, kernel_fn = _net()
  x, direction = _inputs()
  value = lambda a: float(tf.reduce_sum(kernel_fn(a, None, 'ntk') ** 2))
  want = _finite_difference(value, x, direction)
  xt = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(xt)
    out = tf.reduce_sum(kernel_fn(xt, None, 'ntk') ** 2)
  grad = tape.gradient(out, xt)
  assert grad is not None
  np.testing.assert_allclose(float(tf.reduce_sum(grad * direction)), want,
                             rtol=1e-6)
  with tf.autodiff.ForwardAccumulator(xt, tf.constant(direction)) as acc:
    out = tf.reduce_sum(kernel_fn(xt, None, 'ntk') ** 2)
  np.testing.assert_allclose(float(acc.jvp(out)), want, rtol=1e-6)


def test_input_gradient_through_the_tfp_kernel():
  kernel = NeuralKernel(lambda W: _net(W), W=1.3, get='nngp',
                        feature_ndims=1)
  x, direction = _inputs()
  y = np.random.RandomState(1).randn(4, 3)
  value = lambda a: float(tf.reduce_sum(kernel.matrix(a, y)))
  want = _finite_difference(value, x, direction)
  xt = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(xt)
    out = tf.reduce_sum(kernel.matrix(xt, y))
  np.testing.assert_allclose(
      float(tf.reduce_sum(tape.gradient(out, xt) * direction)), want,
      rtol=1e-6)


def test_hyperparameter_gradients_with_unwatched_inputs():
  x, _ = _inputs()
  w = tf.Variable(1.3, dtype=tf.float64)
  kernel = NeuralKernel(lambda W: _net(W), W=w, get='ntk', feature_ndims=1)

  def step():
    with tf.GradientTape() as tape:
      out = tf.reduce_sum(kernel.matrix(x, x))
    return tape.gradient(out, w)
  eager = float(step())
  traced = float(tf.function(step)())
  value = lambda v: float(tf.reduce_sum(NeuralKernel(
      lambda W: _net(W), W=v, get='ntk', feature_ndims=1).matrix(x, x)))
  np.testing.assert_allclose(eager, traced, rtol=1e-12)
  np.testing.assert_allclose(eager, (value(1.3 + H) - value(1.3 - H)) / (2 * H),
                             rtol=1e-6)
