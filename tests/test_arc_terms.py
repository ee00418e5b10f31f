"""`arccos.arc_terms`: its closed-form gradient against finite differences.

The (AB)ReLU maps differentiate `sqrt(q11 q22) J(c)` and `θ = arccos(c)`
through a hand-written gradient; these tests check it (and the derivative of
that gradient) entry by entry against central finite differences of the
forward values, with the variance arguments broadcast as the maps pass them.
"""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp.ops import arccos


def _reference(q12, q11, q22):
  """Closed forms in numpy: j = sqrt(q11 q22) (sqrt(1 - c²) - θ c), θ."""
  norm = np.sqrt(q11 * q22)
  c = np.clip(q12 / norm, -1, 1)
  theta = np.arccos(c)
  return norm * (np.sqrt(1 - c * c) - theta * c), theta


def _inputs(rng):
  x = rng.normal(size=(3, 5))
  y = rng.normal(size=(4, 5))
  q11 = np.sum(x * x, 1)[:, None] + 0.3        # (3, 1), broadcast on columns
  q22 = np.sum(y * y, 1)[None, :] + 0.3        # (1, 4), broadcast on rows
  q12 = x @ y.T + 0.3                           # (3, 4)
  return q12, q11, q22


def _weighted(q12, q11, q22, w_j, w_t):
  j, theta = arccos.arc_terms(q12, q11, q22)
  return tf.reduce_sum(w_j * j) + tf.reduce_sum(w_t * theta)


def test_values_match_closed_form():
  q12, q11, q22 = _inputs(np.random.default_rng(0))
  j, theta = arccos.arc_terms(q12, q11, q22)
  ref_j, ref_theta = _reference(q12, q11, q22)
  np.testing.assert_allclose(j.numpy(), ref_j, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(theta.numpy(), ref_theta, rtol=1e-12, atol=1e-12)


def test_gradient_matches_finite_differences():
  rng = np.random.default_rng(1)
  q12, q11, q22 = _inputs(rng)
  w_j, w_t = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
  args = [tf.constant(a) for a in (q12, q11, q22)]
  with tf.GradientTape() as tape:
    tape.watch(args)
    value = _weighted(*args, w_j, w_t)
  grads = tape.gradient(value, args)
  f = lambda *a: float(np.sum(w_j * _reference(*a)[0]) +
                       np.sum(w_t * _reference(*a)[1]))
  h = 1e-6
  for i, (arg, grad) in enumerate(zip((q12, q11, q22), grads)):
    assert grad.shape == arg.shape
    fd = np.zeros_like(arg)
    for idx in np.ndindex(arg.shape):
      plus, minus = [list((q12, q11, q22)) for _ in range(2)]
      plus[i], minus[i] = arg.copy(), arg.copy()
      plus[i][idx] += h
      minus[i][idx] -= h
      fd[idx] = (f(*plus) - f(*minus)) / (2 * h)
    np.testing.assert_allclose(grad.numpy(), fd, rtol=1e-6, atol=1e-7)


def test_second_derivative_matches_finite_differences_of_gradient():
  rng = np.random.default_rng(2)
  q12, q11, q22 = _inputs(rng)
  w_j, w_t = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
  direction = [rng.normal(size=a.shape) for a in (q12, q11, q22)]

  def gradient(*a):
    a = [tf.constant(t) for t in a]
    with tf.GradientTape() as tape:
      tape.watch(a)
      value = _weighted(*a, w_j, w_t)
    return tape.gradient(value, a)

  args = [tf.constant(a) for a in (q12, q11, q22)]
  with tf.GradientTape() as outer:
    outer.watch(args)
    with tf.GradientTape() as inner:
      inner.watch(args)
      value = _weighted(*args, w_j, w_t)
    grads = inner.gradient(value, args)
    projected = sum(tf.reduce_sum(g * d) for g, d in zip(grads, direction))
  hvp = outer.gradient(projected, args)
  h = 1e-5
  plus = gradient(*[a + h * d for a, d in zip((q12, q11, q22), direction)])
  minus = gradient(*[a - h * d for a, d in zip((q12, q11, q22), direction)])
  # Hessian symmetry: the directional derivative of the gradient equals the
  # gradient of the directional derivative.
  for got, p, m in zip(hvp, plus, minus):
    np.testing.assert_allclose(got.numpy(), (p - m).numpy() / (2 * h),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('sign', [1., -1.])
def test_parallel_inputs_have_finite_gradients(sign):
  """At c = ±1 (an input with itself, or its negative) the derivatives of θ
  are infinite; the gradient of j stays the one-sided limit, finite."""
  q11 = tf.constant([[2.]], tf.float64)
  q22 = tf.constant([[8.]], tf.float64)
  q12 = tf.constant([[sign * 4.]], tf.float64)
  args = [q12, q11, q22]
  with tf.GradientTape() as tape:
    tape.watch(args)
    j, theta = arccos.arc_terms(*args)
    value = tf.reduce_sum(j) + tf.reduce_sum(theta)
  grads = [g.numpy().item() for g in tape.gradient(value, args)]
  assert np.all(np.isfinite(grads))
  # dj/dq12 = -θ: 0 at c = 1 and -π at c = -1; dj/dq11 = s (...) = 0.
  np.testing.assert_allclose(grads[0], 0. if sign > 0 else -np.pi, atol=1e-12)
  np.testing.assert_allclose(grads[1:], [0., 0.], atol=1e-12)


def test_float32_follows_input_dtype():
  q12, q11, q22 = (a.astype(np.float32) for a in _inputs(
      np.random.default_rng(3)))
  args = [tf.constant(a) for a in (q12, q11, q22)]
  with tf.GradientTape() as tape:
    tape.watch(args)
    j, theta = arccos.arc_terms(*args)
    value = tf.reduce_sum(j) + tf.reduce_sum(theta)
  assert j.dtype == theta.dtype == tf.float32
  assert all(g.dtype == tf.float32 for g in tape.gradient(value, args))


def test_given_roots_change_nothing():
  """Roots computed beforehand (as the ReLU maps pass them, from the same
  watched variances) give the same values and first and second derivatives
  as roots computed inside: no derivative flows through them twice."""
  rng = np.random.default_rng(4)
  q12, q11, q22 = (tf.constant(a) for a in _inputs(rng))
  w_j, w_t = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
  direction = [tf.constant(rng.normal(size=a.shape)) for a in (q12, q11, q22)]

  def derivatives(given):
    args = [q12, q11, q22]
    with tf.GradientTape() as outer:
      outer.watch(args)
      with tf.GradientTape() as inner:
        inner.watch(args)
        roots = None
        if given:
          roots = arccos.variance_roots(args[1]) + arccos.variance_roots(
              args[2])
        j, theta = arccos.arc_terms(*args, roots=roots)
        value = tf.reduce_sum(w_j * j) + tf.reduce_sum(w_t * theta)
      grads = inner.gradient(value, args)
      dot = tf.add_n([tf.reduce_sum(g * d) for g, d in zip(grads, direction)])
    return [value] + grads + outer.gradient(dot, args)

  for got, want in zip(derivatives(True), derivatives(False)):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-13,
                               atol=1e-13)


def test_variance_roots_of_zero_and_bad_roots():
  s, r = arccos.variance_roots(tf.constant([0., 4.], tf.float64))
  np.testing.assert_array_equal(s.numpy(), [0., 2.])
  np.testing.assert_array_equal(r.numpy(), [0., 0.5])
  with pytest.raises(ValueError, match='roots'):
    arccos.arc_terms(1., 1., 1., roots=(1., 1.))


def test_variance_roots_of_rank_nine():
  """Full spatial covariances of 3-D images have rank 9, beyond what
  TensorFlow's CPU `where` broadcasts; the roots are taken elementwise."""
  v = np.random.default_rng(5).uniform(0.5, 2., size=(1, 2, 1, 2, 1, 2, 3, 1, 2))
  v[0, 0, 0, 0, 0, 0, 0, 0, 0] = 0.
  s, r = arccos.variance_roots(tf.constant(v))
  assert s.shape == r.shape == v.shape
  np.testing.assert_allclose(s.numpy(), np.sqrt(v))
  np.testing.assert_allclose(r.numpy(), np.where(v > 0, 1 / np.sqrt(
      np.where(v > 0, v, 1.)), 0.))
