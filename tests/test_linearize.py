"""`linearize` and `taylor_expand` against values at the expansion point,
central finite differences and hand-computed Taylor polynomials."""
import keras
import numpy as np
import pytest
import tensorflow as tf

import nt_gp
from nt_gp import stax


@pytest.fixture(scope='module')
def mlp():
  init_fn, apply_fn, _ = stax.serial(stax.Dense(8, 1.3, 0.2), stax.Erf(),
                                     stax.Dense(2, 1.1, 0.1))
  _, params = init_fn(0, (-1, 3))
  params = tf.nest.map_structure(lambda p: tf.cast(p, tf.float64), params)
  x = np.random.RandomState(0).randn(4, 3)
  return apply_fn, params, x


def _axpy(a, d, p):
  return tf.nest.map_structure(lambda u, v: v + a * u, d, p)


def _direction(params, seed):
  rng = np.random.RandomState(seed)
  return tf.nest.map_structure(
      lambda p: tf.constant(rng.randn(*p.shape), tf.float64), params)


def test_linearize_equals_f_at_expansion_point(mlp):
  f, params, x = mlp
  f_lin = nt_gp.linearize(f, params)
  np.testing.assert_allclose(f_lin(params, x), f(params, x), rtol=1e-14)


def test_linearize_has_the_same_first_derivative(mlp):
  f, params, x = mlp
  f_lin = nt_gp.linearize(f, params)
  d = _direction(params, 1)
  eps = 1e-5
  fd_f = (f(_axpy(eps, d, params), x) - f(_axpy(-eps, d, params), x)) / (
      2 * eps)
  fd_lin = (f_lin(_axpy(eps, d, params), x) -
            f_lin(_axpy(-eps, d, params), x)) / (2 * eps)
  np.testing.assert_allclose(fd_lin, fd_f, rtol=1e-6, atol=1e-9)
  # and it is affine: the directional derivative is the same far away.
  far = (f_lin(_axpy(3., d, params), x) - f_lin(params, x)) / 3.
  np.testing.assert_allclose(far, fd_f, rtol=1e-6, atol=1e-9)
  # while the network itself is not.
  assert np.max(np.abs((f(_axpy(3., d, params), x) - f(params, x)) / 3. -
                       fd_f)) > 1e-2


def test_linearize_gradient_in_new_params_is_the_jacobian(mlp):
  f, params, x = mlp
  f_lin = nt_gp.linearize(f, params)
  moved = _axpy(0.5, _direction(params, 2), params)

  @tf.function
  def grads(p):
    with tf.GradientTape() as tape:
      tape.watch(p)
      out = tf.reduce_sum(f_lin(p, x))
    return tape.gradient(out, p)

  def jac(p):
    with tf.GradientTape() as tape:
      tape.watch(p)
      out = tf.reduce_sum(f(p, x))
    return tape.gradient(out, p)
  for g, j in zip(tf.nest.flatten(grads(moved)), tf.nest.flatten(jac(params))):
    np.testing.assert_allclose(g, j, rtol=1e-12)


def _cubic(p, x):
  a, b = p['a'], p['b']
  return a ** 3 * x + a * b + tf.sin(b) * x ** 2


def test_taylor_expand_degree_2_by_hand():
  a0, b0, da, db, x = 0.7, -0.4, 0.3, 0.2, 1.5
  p0 = {'a': np.float64(a0), 'b': np.float64(b0)}
  p1 = {'a': np.float64(a0 + da), 'b': np.float64(b0 + db)}
  f0 = a0 ** 3 * x + a0 * b0 + np.sin(b0) * x ** 2
  d1 = (3 * a0 ** 2 * x + b0) * da + (a0 + np.cos(b0) * x ** 2) * db
  d2 = 6 * a0 * x * da ** 2 + 2 * da * db - np.sin(b0) * x ** 2 * db ** 2
  tay = nt_gp.taylor_expand(_cubic, p0, 2)
  np.testing.assert_allclose(float(tay(p1, np.float64(x))), f0 + d1 + d2 / 2,
                             rtol=1e-14)
  np.testing.assert_allclose(
      float(nt_gp.taylor_expand(_cubic, p0, 1)(p1, np.float64(x))), f0 + d1,
      rtol=1e-14)
  np.testing.assert_allclose(
      float(nt_gp.taylor_expand(_cubic, p0, 0)(p1, np.float64(x))), f0,
      rtol=1e-14)


def test_taylor_expand_is_exact_for_polynomials_of_its_degree():
  f = lambda p, x: p[0] ** 2 * x - 2. * p[0] * p[1] + tf.exp(x)
  p0 = [np.float64(0.3), np.float64(-1.1)]
  p1 = [np.float64(1.7), np.float64(0.4)]
  exact = float(f(p1, np.float64(2.)))
  approx = float(nt_gp.taylor_expand(f, p0, 2)(p1, np.float64(2.)))
  np.testing.assert_allclose(approx, exact, rtol=1e-13)
  assert abs(float(nt_gp.linearize(f, p0)(p1, np.float64(2.))) -
             exact) > 1e-2


def test_linearize_keras_model():
  keras.utils.set_random_seed(0)
  model = keras.Sequential([keras.Input((3,)),
                            keras.layers.Dense(5, activation='tanh'),
                            keras.layers.Dense(2)])
  x = np.random.RandomState(0).randn(4, 3).astype(np.float32)
  f_lin = nt_gp.linearize(model, None)
  np.testing.assert_allclose(f_lin(None, x), model(x), rtol=1e-6)


def test_bad_arguments(mlp):
  f, params, x = mlp
  with pytest.raises(ValueError, match='degree'):
    nt_gp.taylor_expand(f, params, -1)
  with pytest.raises(TypeError, match='`degree` must be an int, got 1.5'):
    nt_gp.taylor_expand(f, params, 1.5)
  with pytest.raises(ValueError, match='shape'):
    nt_gp.linearize(f, params)(
        tf.nest.map_structure(lambda p: tf.concat([p, p], 0), params), x)
