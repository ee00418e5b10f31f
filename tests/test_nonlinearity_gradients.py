"""Gradients of kernels through the nonlinearities, LayerNorm and Dropout.

For each layer, `tf.GradientTape` derivatives of every NNGP/NTK entry (the
diagonal included, `x2=None`) with respect to `W_std`, `b_std` and the
layer's own hyperparameters (as float64 `tf.Variable`s) are finite and equal
central finite differences.

The inputs have small integer entries and 4 channels, so the input
covariances are exact and the self-covariances in `nngp` equal the variances
in `cov1` bit for bit: every diagonal entry then sits exactly at correlation
1, where square roots such as sqrt(q11 q22 - q12²) have infinite derivatives
(the case that produces NaN gradients when handled naively), and finite
differences there are not swamped by rounding.
"""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import stax

_X_FC = np.array([[1., 2., 0., -1.], [0., 1., 1., 1.], [-2., 1., 0., 1.]])
_X_SPATIAL = np.array([[[1., 0., 2., -1.], [1., 1., 0., 1.], [0., -1., 1., 1.]],
                       [[2., 1., 0., 0.], [-1., 1., 1., 0.], [1., 1., 1., 1.]]])


def _elementwise(v):
  return stax.Elementwise(
      lambda x: v['a'] * tf.sin(v['b'] * x),
      nngp_fn=lambda c, q1, q2: tf.square(v['a']) * tf.exp(
          -tf.square(v['b']) * (q1 + q2) / 2) * tf.sinh(tf.square(v['b']) * c))


# name: (layer from a dict of variables, initial hyperparameters)
LAYERS = {
    'abrelu': (lambda v: stax.ABRelu(v['a'], v['b']), dict(a=-0.3, b=1.2)),
    'gelu': (lambda v: stax.Gelu(), {}),
    'sign': (lambda v: stax.Sign(), {}),
    'sin': (lambda v: stax.Sin(v['a'], v['b'], v['c']),
            dict(a=1.2, b=0.8, c=0.3)),
    'cos': (lambda v: stax.Cos(v['a'], v['b'], v['c']),
            dict(a=0.9, b=1.1, c=-0.2)),
    'gabor': (lambda v: stax.Gabor(), {}),
    'rbf': (lambda v: stax.Rbf(v['gamma']), dict(gamma=0.7)),
    'exp': (lambda v: stax.Exp(v['a'], v['b']), dict(a=0.8, b=0.5)),
    'exp_normalized': (lambda v: stax.ExpNormalized(v['gamma'], v['shift']),
                       dict(gamma=1.3, shift=-0.5)),
    'exp_normalized_clip': (
        lambda v: stax.ExpNormalized(v['gamma'], v['shift'], do_clip=True),
        dict(gamma=0.6, shift=0.2)),
    'gaussian': (lambda v: stax.Gaussian(v['a'], v['b']), dict(a=0.9, b=-0.6)),
    'monomial': (lambda v: stax.Monomial(3), {}),
    'rectified_monomial0': (lambda v: stax.RectifiedMonomial(0), {}),
    'rectified_monomial1': (lambda v: stax.RectifiedMonomial(1), {}),
    'rectified_monomial2': (lambda v: stax.RectifiedMonomial(2), {}),
    'polynomial': (lambda v: stax.Polynomial([v['c0'], v['c1'], v['c2']]),
                   dict(c0=0.3, c1=-0.5, c2=0.4)),
    'hermite': (lambda v: stax.Hermite(3), {}),
    'elementwise': (_elementwise, dict(a=1.1, b=0.9)),
    'elementwise_numerical': (
        lambda v: stax.ElementwiseNumerical(
            lambda x: v['a'] * tf.tanh(v['b'] * x), deg=8),
        dict(a=1.1, b=0.7)),
    'layernorm': (lambda v: stax.LayerNorm(eps=v['eps']), dict(eps=0.1)),
    'dropout': (lambda v: stax.Dropout(v['rate']), dict(rate=0.7)),
}


def _dense_layer_dense(name):
  """`(kernel_fn, variables, sorted names)` of Dense -> layer -> Dense with
  float64 variables for `W_std`, `b_std` and the layer's hyperparameters."""
  make, hps = LAYERS[name]
  variables = {k: tf.Variable(v, dtype=tf.float64, name=k)
               for k, v in dict(hps, W_std=1.3, b_std=0.4).items()}
  kernel_fn = stax.serial(
      stax.Dense(8, W_std=variables['W_std'], b_std=variables['b_std']),
      make(variables),
      stax.Dense(1, W_std=variables['W_std'], b_std=variables['b_std']))[2]
  return kernel_fn, variables, sorted(variables)


def _network(name, x):
  """`(run, variables, names)` for Dense -> layer -> Dense on inputs `x`.

  `run(us)` returns the NNGP and NTK entries (flattened, concatenated) and the
  gradients of `u · entries` for each row `u` of `us`, in one compiled graph
  that is reused for the finite differences.
  """
  kernel_fn, variables, names = _dense_layer_dense(name)

  @tf.function(autograph=False)
  def run(us):
    with tf.GradientTape(persistent=True) as tape:
      k = kernel_fn(x, None, ('nngp', 'ntk'))
      values = tf.concat([tf.reshape(k.nngp, [-1]), tf.reshape(k.ntk, [-1])],
                         0)
      totals = [tf.reduce_sum(us[i] * values) for i in range(us.shape[0])]
    grads = [tape.gradient(t, [variables[n] for n in names]) for t in totals]
    return values, grads

  return run, variables, names


def _self_entries(n_batch, n_positions, n_spatial):
  """Indicator of entries of an input with itself in `(N, N[, X, X'])`."""
  mask = np.eye(n_batch)
  if n_spatial:
    mask = mask[:, :, None, None] * np.eye(n_positions)
  return mask.ravel()


def _check_gradients(name, x):
  """Compares `u · dK/dθ` by autodiff and by central finite differences, for
  every variable θ and three vectors u: the indicator of the diagonal (self)
  entries of the NNGP and the NTK, and two random vectors (in which an error
  in any entry shows up with probability one)."""
  run, variables, names = _network(name, x)
  diag = _self_entries(x.shape[0], x.shape[1], x.ndim - 2)
  rng = np.random.RandomState(0)
  us = tf.constant(np.stack([np.concatenate([diag, diag]),
                             rng.randn(2 * diag.size),
                             rng.randn(2 * diag.size)]))
  values, grads = run(us)
  values, us = values.numpy(), us.numpy()
  scale = np.max(np.abs(values))
  for j, var_name in enumerate(names):
    v = variables[var_name]
    v0 = float(v.numpy())
    h = 1e-5 * max(1., abs(v0))
    v.assign(v0 + h)
    plus = run(us)[0].numpy()
    v.assign(v0 - h)
    minus = run(us)[0].numpy()
    v.assign(v0)
    fd = us @ ((plus - minus) / (2 * h))
    g = np.array([float(grads[i][j]) for i in range(len(us))])
    assert np.all(np.isfinite(g)), f'{name}: non-finite d/d{var_name}: {g}'
    tol = 1e-5 * np.abs(fd) + 1e-7 * scale * np.abs(us).sum(1)
    assert np.all(np.abs(g - fd) <= tol), (
        f'{name}: d kernel / d {var_name} = {g} by autodiff, {fd} by finite '
        f'differences (rows: diagonal, random, random)')
  return values


@pytest.mark.parametrize('name', sorted(LAYERS))
def test_gradients_match_finite_differences(name):
  values = _check_gradients(name, _X_FC)
  assert np.all(np.isfinite(values))


@pytest.mark.parametrize('name', ['sign', 'rectified_monomial0', 'gelu',
                                  'exp_normalized', 'polynomial', 'layernorm',
                                  'elementwise_numerical'])
def test_gradients_full_spatial_layout(name):
  """The same with one spatial axis: covariances `(X, X', N1, N2)`."""
  _check_gradients(name, _X_SPATIAL)


@pytest.mark.parametrize('name', ['sign', 'rectified_monomial0',
                                  'rectified_monomial2', 'exp_normalized',
                                  'elementwise_numerical', 'gaussian'])
def test_gradients_finite_at_zero_variance(name):
  """An all-zero input without bias has zero variance (q11 = 0)."""
  make, hps = LAYERS[name]
  variables = {k: tf.Variable(v, dtype=tf.float64) for k, v in hps.items()}
  w = tf.Variable(1.3, dtype=tf.float64)
  _, _, kernel_fn = stax.serial(stax.Dense(8, W_std=w), make(variables),
                                stax.Dense(1, W_std=w))
  x = np.concatenate([_X_FC, np.zeros((1, 4))])
  with tf.GradientTape() as tape:
    k = kernel_fn(x, None, ('nngp', 'ntk'))
    total = tf.reduce_sum(k.nngp) + tf.reduce_sum(k.ntk)
  grads = tape.gradient(total, [w] + list(variables.values()))
  assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))
  for g in grads:
    assert g is not None and np.isfinite(g.numpy()), (name, grads)


def _hessian_network(name, x, u):
  """`(hess, grad, variables, names)`: d²(u · K)/dθ² by nested tapes and
  d(u · K)/dθ, both compiled, for Dense -> layer -> Dense."""
  kernel_fn, variables, names = _dense_layer_dense(name)
  theta = [variables[n] for n in names]

  def total():
    k = kernel_fn(x, None, ('nngp', 'ntk'))
    values = tf.concat([tf.reshape(k.nngp, [-1]), tf.reshape(k.ntk, [-1])],
                       0)
    return tf.reduce_sum(u * values)

  @tf.function(autograph=False)
  def grad():
    with tf.GradientTape() as tape:
      value = total()
    return tf.stack(tape.gradient(value, theta))

  @tf.function(autograph=False)
  def hess():
    with tf.GradientTape(persistent=True) as outer:
      g = grad()
      rows = [g[i] for i in range(len(theta))]
    return tf.stack([tf.stack(outer.gradient(r, theta)) for r in rows])

  return hess, grad, theta, names


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(LAYERS))
def test_second_derivatives_match_finite_differences(name):
  """d²(u · K)/dθ² (all hyperparameters, u a random vector over the NNGP and
  NTK entries, the diagonal included) by nested tapes vs central
  differences of the autodiff gradient."""
  n = _X_FC.shape[0] ** 2
  u = tf.constant(np.random.RandomState(1).randn(2 * n))
  hess, grad, theta, names = _hessian_network(name, _X_FC, u)
  h_ad = hess().numpy()
  fd = np.zeros_like(h_ad)
  for j, v in enumerate(theta):
    v0 = float(v.numpy())
    h = 1e-5 * max(1., abs(v0))
    v.assign(v0 + h)
    up = grad().numpy()
    v.assign(v0 - h)
    down = grad().numpy()
    v.assign(v0)
    fd[:, j] = (up - down) / (2 * h)
  assert np.all(np.isfinite(h_ad)), (name, h_ad)
  np.testing.assert_allclose(h_ad, fd, rtol=2e-5,
                             atol=2e-5 * np.max(np.abs(fd)),
                             err_msg=f'{name}: Hessian over {names}')
