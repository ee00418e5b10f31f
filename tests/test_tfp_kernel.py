"""`nt_gp.tfp.NeuralKernel`: TFP's kernel contract, GP models, gradients.

References are independent of the stax engine where possible: the closed-form
arc-cosine kernels of a one-hidden-layer ReLU network (Cho & Saul 2009;
Jacot et al. 2018) in numpy, numpy Cholesky GP algebra, Monte Carlo moments,
and central finite differences.
"""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from nt_gp import stax
from nt_gp.tfp import NeuralKernel

tfd, tfb = tfp.distributions, tfp.bijectors


def relu_net(W_std, b_std):
  return stax.serial(stax.Dense(1, W_std, b_std), stax.Relu(),
                     stax.Dense(1, W_std, b_std))


def relu_closed_form(x1, x2, W, b):
  """NNGP and NTK of Dense(W, b) -> ReLU -> Dense(W, b), NTK parameterization.

  Returns the full matrices; for `x2 is None` the diagonal is exact (cos = 1).
  """
  same = x2 is None
  x2 = x1 if same else x2
  d = x1.shape[-1]
  q12 = W**2 * x1 @ x2.T / d + b**2
  q11 = W**2 * (x1**2).sum(-1) / d + b**2
  q22 = W**2 * (x2**2).sum(-1) / d + b**2
  norm = np.sqrt(np.outer(q11, q22))
  c = np.clip(q12 / norm, -1, 1)
  if same:
    np.fill_diagonal(c, 1.)
  theta = np.arccos(c)
  relu_nngp = norm * (np.sqrt(1 - c**2) + (np.pi - theta) * c) / (2 * np.pi)
  nngp = W**2 * relu_nngp + b**2
  ntk = nngp + W**2 * q12 * (np.pi - theta) / (2 * np.pi)
  return nngp, ntk


def mvn_logpdf(y, mean, cov):
  """Gaussian log density by hand (numpy Cholesky)."""
  chol = np.linalg.cholesky(cov)
  z = np.linalg.solve(chol, y - mean)
  return (-0.5 * z @ z - np.log(np.diag(chol)).sum() -
          0.5 * len(y) * np.log(2 * np.pi))


@pytest.fixture(scope='module')
def data():
  rng = np.random.RandomState(0)
  x = rng.randn(12, 3)
  y = np.sin(x.sum(-1)) + 0.1 * rng.randn(12)
  xt = rng.randn(4, 3)
  return x, y, xt


# ----------------------------------------------------------------------------
# The kernel contract.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('get', ['nngp', 'ntk'])
def test_matrix_apply_tensor_agree_with_closed_form(data, get):
  x, _, xt = data
  W, b = 1.4, 0.3
  k = NeuralKernel(relu_net, get=get, W_std=W, b_std=b)
  idx = 0 if get == 'nngp' else 1
  want = relu_closed_form(x, xt, W, b)[idx]
  mat = k.matrix(x, xt).numpy()
  np.testing.assert_allclose(mat, want, rtol=1e-12)
  np.testing.assert_allclose(
      mat, relu_net(W, b)[2](x, xt, get).numpy(), rtol=1e-12)
  # `apply` pairs examples elementwise.
  np.testing.assert_allclose(k.apply(x[:4], xt).numpy(), np.diag(want[:4]),
                             rtol=1e-12)
  # The diagonal path: exact closed form at cos = 1. The stax engine's
  # cosine on the diagonal is 1 up to rounding, and arccos has an infinite
  # slope there, so the NTK agrees to ~sqrt(eps).
  diag = relu_closed_form(x, None, W, b)[idx].diagonal()
  tol = 1e-12 if get == 'nngp' else 1e-7
  np.testing.assert_allclose(k.apply(x, x).numpy(), diag, rtol=tol)
  np.testing.assert_allclose(k.apply(x[0], x[0]).numpy(), diag[0], rtol=tol)
  # `tensor` concatenates example shapes.
  t = k.tensor(x.reshape(3, 4, 3), xt, 2, 1).numpy()
  np.testing.assert_allclose(t, want.reshape(3, 4, 4), rtol=1e-12)
  t0 = k.tensor(x[5], xt, 0, 1).numpy()
  np.testing.assert_allclose(t0, want[5], rtol=1e-12)


def test_float32_inputs_give_float32(data):
  x, _, xt = data
  k = NeuralKernel(relu_net, get='ntk', W_std=1.4, b_std=0.3)
  m32 = k.matrix(x.astype(np.float32), xt.astype(np.float32))
  assert m32.dtype == tf.float32
  np.testing.assert_allclose(m32.numpy(), relu_closed_form(x, xt, 1.4, .3)[1],
                             rtol=1e-5)
  a32 = k.apply(x.astype(np.float32), x.astype(np.float32))
  assert a32.dtype == tf.float32
  assert k.dtype is None  # only Python numbers: the inputs decide


def test_parameter_properties_and_variables():
  W = tfp.util.TransformedVariable(1.5, tfb.Softplus(), dtype=tf.float64)
  k = NeuralKernel(relu_net, get='ntk', W_std=W, b_std=0.05)
  props = type(k).parameter_properties(tf.float64)
  assert sorted(props) == ['W_std', 'b_std']
  for p in props.values():
    assert p.event_ndims == 0
    bij = p.default_constraining_bijector_fn()
    assert isinstance(bij, tfb.Softplus)
    assert float(bij.forward(np.float64(-50.))) > 0
  assert k.dtype == tf.float64
  assert k.W_std is W and float(k.b_std) == pytest.approx(0.05)
  assert len(k.trainable_variables) == 1
  assert k.trainable_variables[0] is W.pretransformed_input
  assert isinstance(k, NeuralKernel)
  k2 = k.copy(b_std=0.5)
  assert isinstance(k2, NeuralKernel) and float(k2.b_std) == 0.5


def test_batch_shapes_broadcast(data):
  x, _, xt = data
  Ws = np.array([1., 1.5, 2.])
  bs = np.array([[0.1], [0.4]])
  k = NeuralKernel(relu_net, get='ntk', W_std=Ws, b_std=bs)
  assert k.batch_shape == [2, 3]
  assert list(k.batch_shape_tensor().numpy()) == [2, 3]
  mat = k.matrix(x, xt).numpy()
  assert mat.shape == (2, 3, 12, 4)
  for i in range(2):
    for j in range(3):
      np.testing.assert_allclose(
          mat[i, j], relu_closed_form(x, xt, Ws[j], bs[i, 0])[1], rtol=1e-12)
  ap = k.apply(x[:4], xt, example_ndims=1).numpy()
  assert ap.shape == (2, 3, 4)
  np.testing.assert_allclose(ap[1, 2], np.diag(mat[1, 2, :4]), rtol=1e-12)
  # Slicing gives scalar-parameter kernels.
  k12 = k[1, 2]
  assert k12.batch_shape == []
  np.testing.assert_allclose(k12.matrix(x, xt).numpy(), mat[1, 2],
                             rtol=1e-12)
  # Input batch axes broadcast against the kernel batch: member j of a
  # [3]-batch of inputs goes with W_std[j].
  k3 = NeuralKernel(relu_net, get='nngp', W_std=Ws, b_std=0.2)
  xs = np.stack([x, 2 * x, -x])
  mat3 = k3.matrix(xs, xt).numpy()
  assert mat3.shape == (3, 12, 4)
  for j in range(3):
    np.testing.assert_allclose(
        mat3[j], relu_closed_form(xs[j], xt, Ws[j], .2)[0], rtol=1e-12)
  with pytest.raises(ValueError, match='do not broadcast'):
    k3.matrix(np.stack([x, x]), xt)


def test_no_retracing_when_hyperparameters_change(data):
  x, _, _ = data
  W = tf.Variable(1.2, dtype=tf.float64)
  k = NeuralKernel(relu_net, get='ntk', W_std=W, b_std=0.1)
  compiled = k._arch_kernel._compiled  # pylint: disable=protected-access

  def counts():
    return {key: f.experimental_get_tracing_count()
            for key, f in compiled.items()}

  k.matrix(x, x), k.apply(x, x)
  before = counts()
  for v in (1.3, 1.4):
    W.assign(v)
    # (the matrix diagonal has cos = 1 only up to rounding, see above)
    np.testing.assert_allclose(k.matrix(x, x).numpy(),
                               relu_closed_form(x, None, v, .1)[1], rtol=1e-7)
    np.testing.assert_allclose(
        k.apply(x, x).numpy(),
        relu_closed_form(x, None, v, .1)[1].diagonal(), rtol=1e-7)
  # A new kernel with the same architecture reuses the compiled functions.
  NeuralKernel(relu_net, get='ntk', W_std=W, b_std=0.1).matrix(x, x)
  assert before and counts() == before


# ----------------------------------------------------------------------------
# GP models.
# ----------------------------------------------------------------------------
def test_gprm_log_prob_equals_hand_cholesky(data):
  x, y, xt = data
  W, b, noise = 1.3, 0.2, 0.05
  k = NeuralKernel(relu_net, get='ntk', W_std=W, b_std=b)
  yt = np.cos(xt.sum(-1))
  gprm = tfd.GaussianProcessRegressionModel(
      k, index_points=xt, observation_index_points=x, observations=y,
      observation_noise_variance=np.float64(noise),
      cholesky_fn=tf.linalg.cholesky)
  k_xx = relu_closed_form(x, None, W, b)[1]
  k_tx = relu_closed_form(xt, x, W, b)[1]
  k_tt = relu_closed_form(xt, None, W, b)[1]
  a = k_xx + noise * np.eye(len(x))
  mean = k_tx @ np.linalg.solve(a, y)
  cov = k_tt - k_tx @ np.linalg.solve(a, k_tx.T) + noise * np.eye(len(xt))
  # The stax NTK's diagonal is exact only to ~sqrt(eps) (see above), which
  # the solves carry into the posterior at the 1e-8 level.
  np.testing.assert_allclose(gprm.mean().numpy(), mean, rtol=1e-7)
  np.testing.assert_allclose(gprm.covariance().numpy(), cov, rtol=1e-6,
                             atol=1e-9)
  np.testing.assert_allclose(gprm.log_prob(yt).numpy(),
                             mvn_logpdf(yt, mean, cov), rtol=1e-7)
  # The prior marginal likelihood too.
  gp = tfd.GaussianProcess(k, index_points=x,
                           observation_noise_variance=np.float64(noise),
                           cholesky_fn=tf.linalg.cholesky)
  np.testing.assert_allclose(gp.log_prob(y).numpy(),
                             mvn_logpdf(y, np.zeros(len(x)), a), rtol=1e-8)


def test_posterior_samples_match_predictive_covariance(data):
  x, y, xt = data
  n = 2000
  k = NeuralKernel(relu_net, get='ntk', W_std=1.3, b_std=0.2)
  gprm = tfd.GaussianProcessRegressionModel(
      k, index_points=np.concatenate([xt, x[:2] + 0.05]),
      observation_index_points=x, observations=y,
      observation_noise_variance=np.float64(0.01))
  mean, cov = gprm.mean().numpy(), gprm.covariance().numpy()
  samples = gprm.sample(n, seed=(3, 4)).numpy()
  assert samples.shape == (n, 6)
  centred = samples - mean
  emp = centred.T @ centred / n
  # Monte Carlo standard error of each entry of a Gaussian sample covariance
  # with known mean: sqrt((S_ii S_jj + S_ij²) / n). Allow 5 of them.
  se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
  assert np.all(np.abs(emp - cov) <= 5 * se), np.max(np.abs(emp - cov) / se)
  assert np.all(np.abs(samples.mean(0) - mean) <= 5 * np.sqrt(
      np.diag(cov) / n))
  # The check has power: the prior covariance fails it.
  prior = k.matrix(gprm.index_points, gprm.index_points).numpy()
  assert np.any(np.abs(emp - prior) > 5 * se)


def test_minimize_lowers_negative_log_marginal_likelihood(data):
  x, y, _ = data
  W = tfp.util.TransformedVariable(1.0, tfb.Softplus(), dtype=tf.float64)
  b = tfp.util.TransformedVariable(0.5, tfb.Softplus(), dtype=tf.float64)
  noise = tfp.util.TransformedVariable(0.5, tfb.Softplus(), dtype=tf.float64)
  k = NeuralKernel(relu_net, get='ntk', W_std=W, b_std=b)

  def loss():
    return -tfd.GaussianProcess(
        k, index_points=x, observation_noise_variance=noise).log_prob(y)

  with tf.GradientTape() as tape:
    before = loss()
  grads = tape.gradient(before, k.trainable_variables)
  assert all(np.isfinite(g.numpy()) for g in grads)
  trace = tfp.math.minimize(loss, num_steps=15,
                            optimizer=tf.optimizers.Adam(0.05))
  assert np.all(np.isfinite(trace.numpy()))
  assert float(loss()) < float(before) - 0.1


def test_graph_and_xla_match_eager(data):
  # NNGP: smooth at cos = 1, so all modes agree to rounding. (The NTK's
  # diagonal differs between modes at ~sqrt(eps), see above.)
  x, y, xt = data
  W = tfp.util.TransformedVariable(1.3, tfb.Softplus(), dtype=tf.float64)
  k = NeuralKernel(relu_net, get='nngp', W_std=W, b_std=0.2)

  def compute():
    gprm = tfd.GaussianProcessRegressionModel(
        k, index_points=xt, observation_index_points=x, observations=y,
        observation_noise_variance=np.float64(0.05))
    return (k.matrix(x, xt), k.apply(x, x), gprm.mean(), gprm.covariance(),
            gprm.log_prob(np.zeros(4)))

  eager = [t.numpy() for t in compute()]
  graph = [t.numpy() for t in tf.function(compute, autograph=False)()]
  xla = [t.numpy() for t in tf.function(compute, autograph=False,
                                         jit_compile=True)()]
  for e, g, a in zip(eager, graph, xla):
    np.testing.assert_allclose(g, e, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(a, e, rtol=1e-11, atol=1e-13)


# ----------------------------------------------------------------------------
# Gradients vs central finite differences (float64).
# ----------------------------------------------------------------------------
def closed_form_lml(x, y, W, b, noise, get):
  k = relu_closed_form(x, None, W, b)[0 if get == 'nngp' else 1]
  return mvn_logpdf(y, np.zeros(len(y)), k + noise * np.eye(len(y)))


@pytest.mark.parametrize('get', ['nngp', 'ntk'])
def test_log_marginal_likelihood_gradients_match_finite_differences(data, get):
  """Autodiff through the kernel vs central differences of the log marginal
  likelihood. The differences are taken of the closed-form likelihood, whose
  diagonal is exact (the stax NTK's diagonal carries ~sqrt(eps) rounding that
  would swamp differences with small steps); for the NNGP also of the
  kernel's own likelihood."""
  x, y, _ = data
  params = {'W_std': tf.Variable(1.3, dtype=tf.float64),
            'b_std': tf.Variable(0.4, dtype=tf.float64)}
  k = NeuralKernel(relu_net, get=get, **params)

  def lml():
    return tfd.GaussianProcess(
        k, index_points=x, observation_noise_variance=np.float64(0.1),
        cholesky_fn=tf.linalg.cholesky).log_prob(y)

  with tf.GradientTape() as tape:
    value = lml()
  grads = dict(zip(params, tape.gradient(value, list(params.values()))))
  np.testing.assert_allclose(
      value.numpy(), closed_form_lml(x, y, 1.3, .4, .1, get), rtol=1e-8)
  h = 1e-5
  for name in params:
    up = dict(W=1.3, b=.4)
    down = dict(up)
    up[name[0]] += h
    down[name[0]] -= h
    fd = (closed_form_lml(x, y, up['W'], up['b'], .1, get) -
          closed_form_lml(x, y, down['W'], down['b'], .1, get)) / (2 * h)
    np.testing.assert_allclose(grads[name].numpy(), fd, rtol=1e-6,
                               err_msg=name)
    if get == 'nngp':
      var = params[name]
      var.assign(var + h)
      up_k = lml().numpy()
      var.assign(var - 2 * h)
      down_k = lml().numpy()
      var.assign(var + h)
      np.testing.assert_allclose(grads[name].numpy(),
                                 (up_k - down_k) / (2 * h), rtol=1e-6,
                                 err_msg=name)


def test_diagonal_path_gradients_match_finite_differences(data):
  """`apply(x, x)` (the vectorised pairs) w.r.t. hyperparameters and inputs."""
  x, _, _ = data
  W = tf.Variable(1.3, dtype=tf.float64)
  k = NeuralKernel(relu_net, get='ntk', W_std=W, b_std=0.4)
  xv = tf.constant(x[:5])
  w = np.linspace(1., 2., 5)

  def f(xx):
    return tf.reduce_sum(w * k.apply(xx, xx))

  with tf.GradientTape(persistent=True) as tape:
    tape.watch(xv)
    value = f(xv)
  g_w = tape.gradient(value, W).numpy()
  g_x = tape.gradient(value, xv).numpy()
  assert np.isfinite(g_w) and np.all(np.isfinite(g_x))
  # The diagonal in closed form, differentiated numerically.
  def closed(Wv, xx):
    return (w * relu_closed_form(xx, None, Wv, .4)[1].diagonal()).sum()
  h = 1e-6
  np.testing.assert_allclose(
      g_w, (closed(1.3 + h, x[:5]) - closed(1.3 - h, x[:5])) / (2 * h),
      rtol=1e-6)
  e = np.zeros_like(x[:5])
  e[2, 1] = h
  fd_x = (closed(1.3, x[:5] + e) - closed(1.3, x[:5] - e)) / (2 * h)
  np.testing.assert_allclose(g_x[2, 1], fd_x, rtol=1e-6)
  # Off-diagonal pairs take the same path.
  with tf.GradientTape() as tape:
    value = tf.reduce_sum(k.apply(xv, xv[::-1]))
  g_pairs = tape.gradient(value, W).numpy()
  def closed_pairs(Wv):
    return np.diag(relu_closed_form(x[:5], x[:5][::-1], Wv, .4)[1]).sum()
  np.testing.assert_allclose(
      g_pairs, (closed_pairs(1.3 + h) - closed_pairs(1.3 - h)) / (2 * h),
      rtol=1e-6)


# ----------------------------------------------------------------------------
# Images (feature_ndims=3).
# ----------------------------------------------------------------------------
def test_images_with_feature_ndims_3():
  def cnn(W_std, b_std):
    return stax.serial(
        stax.Conv(1, (3, 3), padding='SAME', W_std=W_std, b_std=b_std),
        stax.Relu(), stax.Flatten(), stax.Dense(1, W_std, b_std))
  x = np.random.RandomState(1).randn(4, 5, 5, 1)
  k = NeuralKernel(cnn, get='ntk', feature_ndims=3, W_std=1.2, b_std=0.1)
  want = cnn(1.2, 0.1)[2](x, None, 'ntk').numpy()
  np.testing.assert_allclose(k.matrix(x, x).numpy(), want, rtol=1e-12)
  np.testing.assert_allclose(k.apply(x, x).numpy(), np.diag(want), rtol=1e-7)
  with pytest.raises(ValueError, match='feature_ndims'):
    NeuralKernel(cnn, feature_ndims=1, W_std=1.2, b_std=0.1).matrix(x, x)


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------
def test_bad_input_raises_clear_errors(data):
  x, _, xt = data
  with pytest.raises(TypeError, match='unknown hyperparameter'):
    NeuralKernel(relu_net, W_std=1., b_std=.1, depth=2)
  with pytest.raises(TypeError, match='needs the hyperparameter'):
    NeuralKernel(relu_net, W_std=1.)
  for bad in (0., -1., np.nan, [1., -1.]):
    with pytest.raises(ValueError, match='positive'):
      NeuralKernel(relu_net, W_std=bad, b_std=.1)
  with pytest.raises(ValueError, match='positive'):
    NeuralKernel(relu_net, W_std=tf.constant(-1., tf.float64), b_std=.1)
  with pytest.raises(TypeError):
    NeuralKernel(relu_net, W_std='1', b_std=.1)
  with pytest.raises(ValueError, match='"nngp" or "ntk"'):
    NeuralKernel(relu_net, get='cov1', W_std=1., b_std=.1)
  with pytest.raises(TypeError, match='"nngp" or "ntk"'):
    NeuralKernel(relu_net, get=None, W_std=1., b_std=.1)
  with pytest.raises(ValueError, match='feature_ndims'):
    NeuralKernel(relu_net, feature_ndims=0, W_std=1., b_std=.1)
  with pytest.raises(TypeError, match='architecture'):
    NeuralKernel(None, W_std=1.)
  with pytest.raises(TypeError, match='different dtypes'):
    NeuralKernel(relu_net, W_std=tf.constant(1., tf.float32),
                 b_std=tf.constant(1., tf.float64))
  k = NeuralKernel(relu_net, W_std=1., b_std=.1)
  with pytest.raises(ValueError, match='feature shapes'):
    k.matrix(x, xt[:, :2])
  with pytest.raises(ValueError, match='rank'):
    k.tensor(x[0], xt, 2, 1)
  # Variables are checked when the kernel is evaluated.
  W = tf.Variable(1., dtype=tf.float64)
  kv = NeuralKernel(relu_net, W_std=W, b_std=.1, validate_args=True)
  kv.matrix(x, x)
  W.assign(-1.)
  with pytest.raises(tf.errors.InvalidArgumentError, match='positive'):
    kv.matrix(x, x)

