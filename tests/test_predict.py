"""Independent checks of `nt_gp.predict`: closed forms, explicit integration,
float32 vs float64, graph mode and input validation."""
import collections

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from nt_gp import predict
from nt_gp import stax

Kernels = collections.namedtuple('Kernels', ['nngp', 'ntk'])


def _joint(rng, n, jitter=0.1):
  f = rng.randn(n, n + 2)
  return f @ f.T / (n + 2) + jitter * np.eye(n)


def _problem(seed=0, n_train=5, n_test=3, k=2):
  """Random PD NNGP / NTK (train + test), targets and initial outputs."""
  rng = np.random.RandomState(seed)
  n = n_train + n_test
  nngp = _joint(rng, n)
  ntk = nngp + _joint(rng, n)
  s_tr, s_te = slice(0, n_train), slice(n_train, n)
  return dict(
      nngp_dd=nngp[s_tr, s_tr], nngp_td=nngp[s_te, s_tr],
      nngp_tt=nngp[s_te, s_te], ntk_dd=ntk[s_tr, s_tr],
      ntk_td=ntk[s_te, s_tr], ntk_tt=ntk[s_te, s_te],
      y=rng.randn(n_train, k), fx_train_0=0.2 * rng.randn(n_train, k),
      fx_test_0=0.2 * rng.randn(n_test, k))


def _reg(k, diag_reg):
  return k + diag_reg * np.mean(np.diag(k)) * np.eye(len(k))


def _close(a, b, rtol, atol=0.):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol,
                             atol=atol)


# ----------------------------------------------------------------------------
# Infinite time equals the GP posterior in closed form.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('diag_reg', [0., 1e-2])
def test_infinite_time_mse_is_gp_posterior(diag_reg):
  p = _problem()
  kdd = _reg(p['ntk_dd'], diag_reg)
  predict_fn = predict.gradient_descent_mse(p['ntk_dd'], p['y'],
                                            diag_reg=diag_reg)
  fx_train, fx_test = predict_fn(None, p['fx_train_0'], p['fx_test_0'],
                                 p['ntk_td'])
  expected = p['fx_test_0'] + p['ntk_td'] @ np.linalg.solve(
      kdd, p['y'] - p['fx_train_0'])
  _close(fx_test, expected, 1e-10)
  _close(fx_train, p['y'], 0.)
  # A long finite time converges to the same limit.
  _, fx_test_long = predict_fn(1e5, p['fx_train_0'], p['fx_test_0'],
                               p['ntk_td'])
  _close(fx_test_long, expected, 1e-8)


@pytest.mark.parametrize('diag_reg', [0., 1e-2])
def test_gp_inference_closed_form(diag_reg):
  p = _problem(1)
  kdd = Kernels(p['nngp_dd'], p['ntk_dd'])
  ktd = Kernels(p['nngp_td'], p['ntk_td'])
  ktt = Kernels(p['nngp_tt'], p['ntk_tt'])
  out = predict.gp_inference(kdd, p['y'], diag_reg=diag_reg)(
      ('nngp', 'ntk', 'ntkgp'), ktd, ktt)
  k_inv = np.linalg.inv(_reg(p['nngp_dd'], diag_reg))
  t_inv = np.linalg.inv(_reg(p['ntk_dd'], diag_reg))
  _close(out.nngp.mean, p['nngp_td'] @ k_inv @ p['y'], 1e-10)
  _close(out.nngp.covariance,
         p['nngp_tt'] - p['nngp_td'] @ k_inv @ p['nngp_td'].T, 1e-9)
  _close(out.ntk.mean, p['ntk_td'] @ t_inv @ p['y'], 1e-10)
  a = p['ntk_td'] @ t_inv  # Θ_td Θ^{-1}
  cross = a @ p['nngp_td'].T
  _close(out.ntk.covariance,
         p['nngp_tt'] + a @ p['nngp_dd'] @ a.T - cross - cross.T, 1e-9)
  _close(out.ntkgp.covariance,
         p['ntk_tt'] - p['ntk_td'] @ t_inv @ p['ntk_td'].T, 1e-9)
  # Train set: N(y, 0).
  train = predict.gp_inference(kdd, p['y'])('ntk', None, True)
  _close(train.mean, p['y'], 0.)
  _close(train.covariance, np.zeros_like(p['ntk_dd']), 0.)


# ----------------------------------------------------------------------------
# Finite time: explicit integration of the linear ODE.
# ----------------------------------------------------------------------------
def _euler(k_dd, k_td, y, f0, g0, t, steps):
  """Explicit Euler for df/dt = -K (f - y) / y.size (train and test)."""
  f, g, dt = f0.copy(), g0.copy(), t / steps
  for _ in range(steps):
    r = (f - y) / y.size
    f, g = f - dt * k_dd @ r, g - dt * k_td @ r
  return f, g


@pytest.mark.parametrize('learning_rate', [1., 0.5])
def test_finite_time_mse_matches_euler(learning_rate):
  p = _problem(2)
  t = 3.
  predict_fn = predict.gradient_descent_mse(p['ntk_dd'], p['y'],
                                            learning_rate=learning_rate)
  fx_train, fx_test = predict_fn(t, p['fx_train_0'], p['fx_test_0'],
                                 p['ntk_td'])
  f, g = _euler(p['ntk_dd'], p['ntk_td'], p['y'], p['fx_train_0'],
                p['fx_test_0'], learning_rate * t, 20000)
  _close(fx_train, f, 2e-4, 1e-5)
  _close(fx_test, g, 2e-4, 1e-5)
  # The outputs moved: the comparison is not trivially between initial values.
  assert np.max(np.abs(np.asarray(fx_train) - p['fx_train_0'])) > 0.1


def test_times_array_is_vectorised():
  p = _problem(3)
  predict_fn = predict.gradient_descent_mse(p['ntk_dd'], p['y'])
  ts = np.array([[0., 0.5, 1.], [2., 4., 8.]])
  fx_train, fx_test = predict_fn(ts, p['fx_train_0'], p['fx_test_0'],
                                 p['ntk_td'])
  assert fx_train.shape == (2, 3) + p['y'].shape
  assert fx_test.shape == (2, 3) + p['fx_test_0'].shape
  for idx in np.ndindex(ts.shape):
    a, b = predict_fn(float(ts[idx]), p['fx_train_0'], p['fx_test_0'],
                      p['ntk_td'])
    _close(fx_train[idx], a, 1e-12, 1e-14)
    _close(fx_test[idx], b, 1e-12, 1e-14)
  _close(fx_train[0, 0], p['fx_train_0'], 0., 1e-14)


def test_singular_kernel_has_no_nan():
  """A rank-deficient kernel (zero eigenvalues) gives finite, exact flows."""
  rng = np.random.RandomState(4)
  feats = rng.randn(7, 3)  # 5 train + 2 test points, rank 3
  k = feats @ feats.T
  k_dd, k_td = k[:5, :5], k[5:, :5]
  y, f0, g0 = rng.randn(5, 1), np.zeros((5, 1)), np.zeros((2, 1))
  fx_train, fx_test = predict.gradient_descent_mse(k_dd, y)(2., f0, g0, k_td)
  assert np.all(np.isfinite(fx_train)) and np.all(np.isfinite(fx_test))
  f, g = _euler(k_dd, k_td, y, f0, g0, 2., 20000)
  _close(fx_train, f, 1e-3, 1e-6)
  _close(fx_test, g, 1e-3, 1e-6)


def test_ensemble_finite_time_closed_form():
  """Means and covariances of the ensemble from matrix exponentials."""
  _, _, kernel_fn = stax.serial(stax.Dense(64, W_std=1.5, b_std=0.1),
                                stax.Relu(), stax.Dense(1, W_std=1.2,
                                                        b_std=0.2))
  rng = np.random.RandomState(5)
  x_train, x_test, y = rng.randn(5, 3), rng.randn(3, 3), rng.randn(5, 2)
  t, lr = 2., 1.5
  predict_fn = predict.gradient_descent_mse_ensemble(kernel_fn, x_train, y,
                                                     learning_rate=lr)
  out = predict_fn(t, x_test, None, compute_cov=True)

  kdd = kernel_fn(x_train, None, ('nngp', 'ntk'))
  ktd = kernel_fn(x_test, x_train, ('nngp', 'ntk'))
  ktt = np.asarray(kernel_fn(x_test, None, 'nngp'))
  k_dd, t_dd = np.asarray(kdd.nngp), np.asarray(kdd.ntk)
  k_td, t_td = np.asarray(ktd.nngp), np.asarray(ktd.ntk)
  n, eye = y.size, np.eye(5)

  # NTK: f_t = Θ_td Θ^{-1} (I - e^{-Θ t / n}) (y - f_0) + f_0(test).
  a = t_td @ np.linalg.solve(t_dd, eye - scipy.linalg.expm(-t_dd * lr * t / n))
  _close(out.ntk.mean, a @ y, 1e-9)
  cross = a @ k_td.T
  _close(out.ntk.covariance, ktt + a @ k_dd @ a.T - cross - cross.T, 1e-8)
  # NNGP: the same flow with the NNGP; covariance of the Bayesian flow.
  b = k_td @ np.linalg.solve(k_dd, eye - scipy.linalg.expm(-k_dd * lr * t / n))
  _close(out.nngp.mean, b @ y, 1e-9)
  b2 = k_td @ np.linalg.solve(
      k_dd, eye - scipy.linalg.expm(-2 * k_dd * lr * t / n))
  _close(out.nngp.covariance, ktt - b2 @ k_td.T, 1e-8)

  # Train set: mean (I - e^{-Θt/n}) y, NTK covariance e^{-Θt/n} K e^{-Θt/n}.
  train = predict_fn(t, None, 'ntk', compute_cov=True)
  e = scipy.linalg.expm(-t_dd * lr * t / n)
  _close(train.mean, (eye - e) @ y, 1e-9)
  _close(train.covariance, e @ k_dd @ e, 1e-8)


# ----------------------------------------------------------------------------
# gradient_descent (ODE solver) against independent integrations.
# ----------------------------------------------------------------------------
def _mse(fx, y):
  return 0.5 * tf.reduce_mean((fx - y)**2)


def test_ode_mse_matches_closed_form():
  p = _problem(6)
  ts = np.array([0., 0.5, 2., 5.])
  ode = predict.gradient_descent(_mse, p['ntk_dd'], p['y'], rtol=1e-11,
                                 atol=1e-11)
  closed = predict.gradient_descent_mse(p['ntk_dd'], p['y'])
  a = ode(ts, p['fx_train_0'], p['fx_test_0'], p['ntk_td'])
  b = closed(ts, p['fx_train_0'], p['fx_test_0'], p['ntk_td'])
  _close(a[0], b[0], 1e-8, 1e-12)
  _close(a[1], b[1], 1e-8, 1e-12)


def test_ode_momentum_mse_matches_matrix_exponential():
  """Heavy-ball flow on MSE is linear: solve it with `expm` of the block
  system `[f - y, q]' = [[0, I], [-K / n, (m - 1) / sqrt(lr)]] [f - y, q]`."""
  p = _problem(7, n_train=4, n_test=2, k=2)
  lr, momentum, t = 0.5, 0.9, 3.
  ode = predict.gradient_descent(_mse, p['ntk_dd'], p['y'], learning_rate=lr,
                                 momentum=momentum, rtol=1e-11, atol=1e-11)
  state = ode(t, predict.ODEState(p['fx_train_0'], p['fx_test_0']),
              None, p['ntk_td'])
  n, c = p['y'].size, (momentum - 1) / np.sqrt(lr)
  # Joint train+test system: test outputs are driven by the train residual.
  k_all = np.concatenate([p['ntk_dd'], p['ntk_td']], 0)  # (6, 4)
  nt, nd = k_all.shape
  big = np.zeros((2 * nt, 2 * nt))
  big[:nt, nt:] = np.eye(nt)
  big[nt:, :nd] = -k_all / n
  big[nt:, nt:] = c * np.eye(nt)
  y_all = np.concatenate([p['y'], np.zeros((nt - nd, 2))], 0)
  f0 = np.concatenate([p['fx_train_0'], p['fx_test_0']], 0)
  z0 = np.concatenate([f0 - np.concatenate([p['y'], p['fx_test_0']], 0),
                       np.zeros_like(f0)], 0)
  # Test rows of `f - y` use their own initial value as offset (no target).
  z = scipy.linalg.expm(big * np.sqrt(lr) * t) @ z0
  offset = np.concatenate([p['y'], p['fx_test_0']], 0)
  f_t, q_t = z[:nt] + offset, z[nt:]
  del y_all
  _close(state.fx_train, f_t[:nd], 1e-8, 1e-12)
  _close(state.fx_test, f_t[nd:], 1e-8, 1e-12)
  _close(state.qx_train, q_t[:nd], 1e-7, 1e-12)
  _close(state.qx_test, q_t[nd:], 1e-7, 1e-12)


def _softmax(z):
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_ode_cross_entropy_matches_rk4():
  p = _problem(8, k=3)
  y = np.eye(3)[np.random.RandomState(8).randint(0, 3, 5)]
  xent = lambda fx, y: -tf.reduce_mean(tf.nn.log_softmax(fx) * y)
  t = 4.
  fx_train, fx_test = predict.gradient_descent(
      xent, p['ntk_dd'], y, rtol=1e-10, atol=1e-10)(
          t, p['fx_train_0'], p['fx_test_0'], p['ntk_td'])

  def rhs(state):
    f, _ = state
    grad = (_softmax(f) - y) / y.size
    return -p['ntk_dd'] @ grad, -p['ntk_td'] @ grad

  state, steps = (p['fx_train_0'], p['fx_test_0']), 400
  h = t / steps
  for _ in range(steps):
    k1 = rhs(state)
    k2 = rhs(tuple(s + h / 2 * d for s, d in zip(state, k1)))
    k3 = rhs(tuple(s + h / 2 * d for s, d in zip(state, k2)))
    k4 = rhs(tuple(s + h * d for s, d in zip(state, k3)))
    state = tuple(s + h / 6 * (a + 2 * b + 2 * c + d)
                  for s, a, b, c, d in zip(state, k1, k2, k3, k4))
  _close(fx_train, state[0], 1e-8, 1e-10)
  _close(fx_test, state[1], 1e-8, 1e-10)
  assert np.max(np.abs(state[0] - p['fx_train_0'])) > 0.05


def test_max_learning_rate_is_the_stability_edge():
  """Discrete GD on MSE converges just below the rate and diverges above."""
  p = _problem(9)
  y = p['y']
  lr = float(predict.max_learning_rate(p['ntk_dd'], y.size))
  for factor, converges in ((0.98, True), (1.02, False)):
    f = np.zeros_like(y)
    for _ in range(3000):
      f = f - factor * lr * p['ntk_dd'] @ (f - y) / y.size
    assert (np.max(np.abs(f - y)) < 1e-3) == converges


# ----------------------------------------------------------------------------
# dtypes and graph mode.
# ----------------------------------------------------------------------------
def test_float32_close_to_float64():
  p = _problem(10)
  p32 = {k: v.astype(np.float32) for k, v in p.items()}
  for q, dtype in ((p, tf.float64), (p32, tf.float32)):
    fn = predict.gradient_descent_mse(q['ntk_dd'], q['y'], diag_reg=1e-3)
    res = [fn(t, q['fx_train_0'], q['fx_test_0'], q['ntk_td'])
           for t in (None, np.array([0.5, 3.]))]
    gp = predict.gp_inference(Kernels(q['nngp_dd'], q['ntk_dd']), q['y'])(
        None, Kernels(q['nngp_td'], q['ntk_td']),
        Kernels(q['nngp_tt'], q['ntk_tt']))
    lr = predict.max_learning_rate(q['ntk_dd'])
    ode = predict.gradient_descent(_mse, q['ntk_dd'], q['y'])(
        np.array([1., 2.]), q['fx_train_0'])
    flat = tf.nest.flatten([res, gp, lr, ode])
    assert all(x.dtype == dtype for x in flat)
    if dtype == tf.float64:
      ref = flat
    else:
      for a, b in zip(flat, ref):
        _close(a, b, 2e-4, 2e-5)


def test_ensemble_float32():
  _, _, kernel_fn = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
  rng = np.random.RandomState(11)
  x, xt, y = rng.randn(4, 3), rng.randn(2, 3), rng.randn(4, 1)
  outs = []
  for dtype in (np.float64, np.float32):
    fn = predict.gradient_descent_mse_ensemble(kernel_fn, x.astype(dtype), y,
                                               diag_reg=1e-3)
    outs.append(fn(np.array([1., 10.]), xt.astype(dtype), 'ntk', True))
    assert outs[-1].mean.dtype == tf.as_dtype(dtype)
  _close(outs[1].mean, outs[0].mean, 1e-4, 1e-5)
  _close(outs[1].covariance, outs[0].covariance, 1e-3, 1e-5)


def test_gp_inference_in_tf_function_and_gradient():
  """Works inside `tf.function`; differentiable w.r.t. a `diag_reg` variable."""
  p = _problem(12)
  reg = tf.Variable(0.05, dtype=tf.float64)

  def mean_sum(r):
    fn = predict.gp_inference(p['nngp_dd'], p['y'], diag_reg=r,
                              diag_reg_absolute_scale=True)
    return tf.reduce_sum(fn('nngp', p['nngp_td']))

  compiled = tf.function(mean_sum)
  _close(compiled(reg), mean_sum(reg), 1e-12)
  with tf.GradientTape() as tape:
    value = mean_sum(reg)
  grad = tape.gradient(value, reg)
  h = 1e-6
  fd = (mean_sum(0.05 + h) - mean_sum(0.05 - h)) / (2 * h)
  _close(grad, fd, 1e-6)
  # A predict_fn built eagerly can be called inside a tf.function too.
  fn = predict.gradient_descent_mse(p['ntk_dd'], p['y'])
  eager = fn(np.array([1., 2.]), p['fx_train_0'])
  _close(tf.function(lambda: fn(np.array([1., 2.]), p['fx_train_0']))(),
         eager, 1e-12)


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------
def test_bad_inputs_raise():
  p = _problem(13)
  kdd, y = p['ntk_dd'], p['y']
  with pytest.raises(ValueError, match='second-input axes'):
    predict.gradient_descent_mse(kdd, y[:4])
  with pytest.raises(ValueError, match='square'):
    predict.max_learning_rate(kdd[:, :4])
  with pytest.raises(ValueError, match='diag_reg'):
    predict.gp_inference(kdd, y, diag_reg=-1.)
  with pytest.raises(ValueError, match='learning_rate'):
    predict.gradient_descent_mse(kdd, y, learning_rate=-0.1)
  with pytest.raises(ValueError, match='symmetric'):
    predict.gradient_descent_mse(kdd + np.triu(np.ones_like(kdd), 1), y)
  with pytest.raises(ValueError, match='non-finite'):
    predict.gp_inference(np.where(np.eye(5) > 0, np.nan, kdd), y)
  with pytest.raises(ValueError, match='trace_axes'):
    predict.gradient_descent_mse(kdd, y, trace_axes=(2,))
  with pytest.raises(TypeError, match='dtype'):
    predict.gradient_descent_mse(tf.constant(kdd, tf.float32),
                                 tf.constant(y, tf.float64))

  gp = predict.gp_inference(kdd, y)
  with pytest.raises(ValueError, match='get'):
    gp('nngp_wrong', p['ntk_td'])
  with pytest.raises(ValueError, match='unique'):
    gp(('nngp', 'nngp'), p['ntk_td'])
  with pytest.raises(ValueError, match='NNGP'):  # NTK covariance needs NNGP
    gp('ntk', p['ntk_td'], p['ntk_tt'])
  with pytest.raises(ValueError, match='second-input axes'):
    gp('nngp', p['ntk_td'][:, :3])
  with pytest.raises(ValueError, match='first-input axes'):
    gp('nngp', p['ntk_td'], p['ntk_tt'][:2, :2])
  with pytest.raises(ValueError, match='positive definite'):
    predict.gp_inference(np.ones((5, 5)), y)('nngp', p['ntk_td'])

  fn = predict.gradient_descent_mse(kdd, y)
  with pytest.raises(ValueError, match='k_test_train'):
    fn(1., p['fx_train_0'], p['fx_test_0'])
  with pytest.raises(ValueError, match='Both'):
    fn(1., None, None)
  with pytest.raises(ValueError, match='fx_train_0'):
    fn(1., p['fx_train_0'][:3])
  with pytest.raises(ValueError, match='fx_test_0'):
    fn(1., p['fx_train_0'], p['fx_test_0'][:, :1].repeat(3, 1), p['ntk_td'])
  with pytest.raises(ValueError, match='non-finite'):
    fn(np.array([1., np.nan]))

  ode = predict.gradient_descent(_mse, kdd, y)
  with pytest.raises(ValueError, match='infinite time'):
    ode(None)
  with pytest.raises(ValueError, match='increasing'):
    ode(np.array([1., 0.5]))
  with pytest.raises(ValueError, match='momentum'):
    ode(1., predict.ODEState(p['fx_train_0'], qx_train=p['fx_train_0']))
  with pytest.raises(ValueError, match='scalar'):
    predict.gradient_descent(lambda f, y: (f - y)**2, kdd, y)(1.)
  with pytest.raises(ValueError, match='y_train_size'):
    predict.max_learning_rate(kdd, 0)

  _, _, kernel_fn = stax.serial(stax.Dense(4), stax.Relu(), stax.Dense(1))
  x = np.random.RandomState(0).randn(5, 3)
  ens = predict.gradient_descent_mse_ensemble(kernel_fn, x, y)
  with pytest.raises(ValueError, match='get'):
    ens(1., x, 'ntkgp')
  with pytest.raises(ValueError, match='second-input axes'):
    predict.gradient_descent_mse_ensemble(kernel_fn, x, y[:4])(None, x, 'nngp')


def test_max_learning_rate_refuses_kernels_without_positive_eigenvalues():
  """A negative (semi-)definite or zero matrix is no NTK: the formula would
  give a negative or infinite "learning rate". Eagerly a ValueError with the
  eigenvalue; inside a tf.function, TensorFlow's assertion error."""
  kdd = _problem(13)['ntk_dd']
  with pytest.raises(ValueError, match='no positive eigenvalue.*Largest '
                                       'eigenvalue: -'):
    predict.max_learning_rate(-kdd)
  with pytest.raises(ValueError, match='no positive eigenvalue.*Largest '
                                       'eigenvalue: 0'):
    predict.max_learning_rate(np.zeros((3, 3)), eps=0.)
  # eps > 0 keeps the documented zero-kernel behaviour: 2 N / eps.
  _close(predict.max_learning_rate(np.zeros((3, 3)), eps=1e-3), 6e3, 1e-12)
  fn = tf.function(predict.max_learning_rate)
  _close(fn(tf.constant(kdd)), predict.max_learning_rate(kdd), 1e-12)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='no positive eigenvalue'):
    fn(tf.constant(-kdd))


def test_errors_name_the_call_and_the_infinite_time_spelling():
  """An error from the user's `kernel_fn` inside the ensemble says which
  call (its `x1`/`x2` are x_test/x_train there); `t=inf` points at
  `t=None`."""
  _, _, kernel_fn = stax.serial(stax.Dense(4), stax.Relu(), stax.Dense(1))
  rng = np.random.RandomState(0)
  x, y = rng.randn(5, 3), rng.randn(5, 1)
  ens = predict.gradient_descent_mse_ensemble(kernel_fn, x, y)
  with pytest.raises(ValueError, match=r'^kernel_fn\(x_test, x_train, get\): '
                                       '`x1` and `x2` must have the same '
                                       'shape'):
    ens(None, rng.randn(2, 4), 'nngp')
  with pytest.raises(TypeError, match=r'^kernel_fn\(x_test, x_train, get\): '
                                      '`x1` and `x2` must have the same '
                                      'dtype'):
    ens(None, rng.randn(2, 3).astype(np.float32), 'nngp')
  bad = predict.gradient_descent_mse_ensemble(kernel_fn, np.full((5, 3), np.nan),
                                              y)
  with pytest.raises(ValueError, match=r"^kernel_fn\(x_train, None, 'nngp'\): "
                                       '`x1` has non-finite values'):
    bad(None, None, 'nngp')
  with pytest.raises(ValueError, match='infinite-time limit pass `t=None`'):
    ens(np.inf, x, 'ntk')
  with pytest.raises(ValueError, match='infinite-time limit pass `t=None`'):
    predict.gradient_descent_mse(_problem(13)['ntk_dd'], _problem(13)['y'])(
        np.inf, _problem(13)['fx_train_0'])


# ----------------------------------------------------------------------------
# Kernel containers and keyword arguments of `kernel_fn`.
# ----------------------------------------------------------------------------
def test_gp_inference_accepts_kernel_records():
  """`Kernel` objects from `kernel_fn(x1, x2)` give the namedtuple results."""
  _, _, kernel_fn = stax.serial(stax.Dense(8, W_std=1.5), stax.Relu(),
                                stax.Dense(1))
  rng = np.random.RandomState(14)
  x, xt, y = rng.randn(5, 3), rng.randn(2, 3), rng.randn(5, 2)
  a = predict.gp_inference(kernel_fn(x), y, diag_reg=1e-3)(
      None, kernel_fn(xt, x), kernel_fn(xt))
  get = ('nngp', 'ntk')
  b = predict.gp_inference(kernel_fn(x, None, get), y, diag_reg=1e-3)(
      None, kernel_fn(xt, x, get), kernel_fn(xt, None, get))
  for u, v in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
    _close(u, v, 1e-14)


def test_ensemble_kernel_fn_kwargs():
  """Train kwargs reach every call; array pairs become (test, train)."""
  rng = np.random.RandomState(15)
  feats = rng.randn(7, 7)
  gram = feats @ feats.T / 7 + 0.1 * np.eye(7)
  calls = []

  def kernel_fn(x1, x2, get, **kwargs):
    calls.append((len(x1), None if x2 is None else len(x2), kwargs))
    i1 = x1[:, 0].astype(int)
    i2 = i1 if x2 is None else x2[:, 0].astype(int)
    k = gram[np.ix_(i1, i2)]
    if isinstance(get, str):
      return k
    return Kernels(k, 2 * k)

  x_train = np.arange(5.)[:, None]
  x_test = np.arange(5., 7.)[:, None]
  y = rng.randn(5, 1)
  p_train, p_test = np.zeros(1), np.ones(1)
  fn = predict.gradient_descent_mse_ensemble(
      kernel_fn, x_train, y, scale=3, pattern=(p_train, p_train))
  fn(1., x_test, 'nngp', True, pattern=(p_test, p_test))
  train_call, td_call, tt_call = calls
  assert train_call[:2] == (5, None) and train_call[2]['scale'] == 3
  assert td_call[:2] == (2, 5) and td_call[2]['scale'] == 3
  assert td_call[2]['pattern'][0] is p_test
  assert td_call[2]['pattern'][1] is p_train
  assert tt_call[:2] == (2, None) and tt_call[2]['pattern'][0] is p_test
  with pytest.raises(ValueError, match='scale'):
    fn(1., x_test, 'nngp', scale=4)
