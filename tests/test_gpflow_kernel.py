"""`nt_gp.gpflow.NeuralKernel` in GPflow models.

References: closed-form arc-cosine kernels of a one-hidden-layer ReLU network
in numpy, a numpy Cholesky GP posterior, `nt_gp.predict.gp_inference`, and
central finite differences.
"""
import gpflow
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from sklearn.datasets import load_diabetes, load_digits

from nt_gp import predict, stax
from nt_gp.gpflow import NeuralKernel


def relu_net(W_std, b_std):
  return stax.serial(stax.Dense(1, W_std, b_std), stax.Relu(),
                     stax.Dense(1, W_std, b_std))


def relu_closed_form(x1, x2, W, b, get):
  """Dense(W, b) -> ReLU -> Dense(W, b) kernels (Cho & Saul; Jacot et al.).

  With `x2 is None` the diagonal uses cos = 1 exactly.
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
  nngp = W**2 * norm * (np.sqrt(1 - c**2) + (np.pi - theta) * c) / (
      2 * np.pi) + b**2
  if get == 'nngp':
    return nngp
  return nngp + W**2 * q12 * (np.pi - theta) / (2 * np.pi)


@pytest.fixture(scope='module')
def diabetes():
  X, y = load_diabetes(return_X_y=True)
  X = (X - X.mean(0)) / X.std(0)
  y = ((y - y.mean()) / y.std())[:, None]
  rng = np.random.RandomState(0)
  idx = rng.permutation(len(X))
  return X[idx[:150]], y[idx[:150]], X[idx[150:190]], y[idx[150:190]]


# ----------------------------------------------------------------------------
# K and K_diag.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('get', ['nngp', 'ntk'])
def test_K_and_K_diag_match_closed_form(diabetes, get):
  X, _, Xt, _ = diabetes
  X, Xt = X[:20], Xt[:7]
  k = NeuralKernel(relu_net, get=get, W_std=1.3, b_std=0.2)
  # (the stored values go through the Softplus transform and back)
  W, b = float(k.W_std.numpy()), float(k.b_std.numpy())
  np.testing.assert_allclose(k.K(X, Xt).numpy(),
                             relu_closed_form(X, Xt, W, b, get), rtol=1e-12)
  # The NTK's diagonal is exact in closed form (cos = 1); the stax engine's
  # cosine there is 1 up to rounding, and arccos has an infinite slope at 1.
  tol = 1e-12 if get == 'nngp' else 1e-7
  exact = relu_closed_form(X, None, W, b, get)
  k_xx = k.K(X).numpy()
  np.testing.assert_allclose(k_xx, exact, rtol=tol)
  np.testing.assert_allclose(k_xx, k_xx.T, rtol=1e-14)
  diag = k.K_diag(X).numpy()
  np.testing.assert_allclose(diag, exact.diagonal(), rtol=tol)
  np.testing.assert_allclose(diag, np.diag(k_xx), rtol=tol)
  np.testing.assert_allclose(k(X, full_cov=False).numpy(), diag, rtol=1e-14)
  # GPflow's batch contract.
  Xb = X[:12].reshape(2, 6, 10)
  Kb = k.K(Xb).numpy()
  assert Kb.shape == (2, 6, 6)
  np.testing.assert_allclose(Kb[1], k_xx[6:12, 6:12], rtol=tol)
  Kc = k.K(Xb, Xt[:3].reshape(3, 1, 10)).numpy()
  assert Kc.shape == (2, 6, 3, 1)
  np.testing.assert_allclose(Kc[1, 2, :, 0],
                             relu_closed_form(X[8:9], Xt[:3], W, b, get)[0],
                             rtol=1e-12)
  assert k.K_diag(Xb).shape == (2, 6)


def test_float32_inputs():
  gpflow.config.set_default_float(np.float32)
  try:
    k = NeuralKernel(relu_net, get='ntk', W_std=1.3, b_std=0.2)
  finally:
    gpflow.config.set_default_float(np.float64)
  X = np.random.RandomState(0).randn(6, 4).astype(np.float32)
  K = k.K(X)
  assert K.dtype == tf.float32 and k.K_diag(X).dtype == tf.float32
  np.testing.assert_allclose(
      K.numpy(), relu_closed_form(X.astype(np.float64), None, 1.3, .2, 'ntk'),
      rtol=1e-4)


# ----------------------------------------------------------------------------
# Models.
# ----------------------------------------------------------------------------
def test_gpr_nngp_fit_and_predict(diabetes):
  X, y, Xt, _ = diabetes
  k = NeuralKernel(relu_net, get='nngp', W_std=0.5, b_std=1.0)
  model = gpflow.models.GPR((X, y), k, noise_variance=1.0)
  before = model.log_marginal_likelihood().numpy()
  with tf.GradientTape() as tape:
    loss = model.training_loss()
  grads = tape.gradient(loss, model.trainable_variables)
  assert all(np.isfinite(g.numpy()).all() for g in grads)
  gpflow.optimizers.Scipy().minimize(model.training_loss,
                                     model.trainable_variables,
                                     options=dict(maxiter=30))
  after = model.log_marginal_likelihood().numpy()
  assert after > before + 1.
  W, b = float(k.W_std.numpy()), float(k.b_std.numpy())
  assert abs(W - 0.5) > 1e-2 and abs(b - 1.0) > 1e-2
  noise = float(model.likelihood.variance.numpy())

  mean, cov = model.predict_f(Xt, full_cov=True)
  mean, cov = mean.numpy(), cov.numpy()[0]
  # nt_gp.predict.gp_inference with the same kernel and noise.
  predict_fn = predict.gp_inference(k.K(X), y, diag_reg=noise,
                                    diag_reg_absolute_scale=True)
  out = predict_fn('nngp', k.K(Xt, X), k.K(Xt))
  np.testing.assert_allclose(mean, out.mean.numpy(), rtol=1e-8, atol=1e-10)
  np.testing.assert_allclose(cov, out.covariance.numpy(), rtol=1e-7,
                             atol=1e-10)
  # A numpy Cholesky posterior from the closed-form kernel.
  a = relu_closed_form(X, None, W, b, 'nngp') + noise * np.eye(len(X))
  k_tx = relu_closed_form(Xt, X, W, b, 'nngp')
  chol = np.linalg.cholesky(a)
  v = np.linalg.solve(chol, k_tx.T)
  np.testing.assert_allclose(
      mean, k_tx @ np.linalg.solve(chol.T, np.linalg.solve(chol, y)),
      rtol=1e-7, atol=1e-10)
  np.testing.assert_allclose(
      cov, relu_closed_form(Xt, None, W, b, 'nngp') - v.T @ v, rtol=1e-6,
      atol=1e-9)


def test_svgp_ntk_trains_on_minibatches(diabetes):
  import tf_keras  # pylint: disable=g-import-not-at-top
  X, y, _, _ = diabetes
  k = NeuralKernel(relu_net, get='ntk', W_std=1.0, b_std=0.1)
  model = gpflow.models.SVGP(k, gpflow.likelihoods.Gaussian(),
                             inducing_variable=X[:15].copy(),
                             num_data=len(X))
  batches = iter(tf.data.Dataset.from_tensor_slices((X, y)).repeat()
                 .shuffle(len(X), seed=0).batch(32))
  loss = model.training_loss_closure(batches, compile=True)
  opt = tf_keras.optimizers.Adam(0.02)
  before = model.elbo((X, y)).numpy()
  for _ in range(40):
    opt.minimize(loss, model.trainable_variables)
  after = model.elbo((X, y)).numpy()
  assert np.isfinite(after) and after > before + 10.
  assert abs(float(k.W_std.numpy()) - 1.0) > 1e-3
  mean, var = model.predict_f(X[:5])
  assert np.all(np.isfinite(mean.numpy())) and np.all(var.numpy() > 0)


@pytest.mark.parametrize('model_name', ['SGPR', 'VGP'])
def test_sgpr_and_vgp_run(diabetes, model_name):
  X, y, _, _ = diabetes
  k = NeuralKernel(relu_net, get='nngp', W_std=1.0, b_std=0.1)
  if model_name == 'SGPR':
    model = gpflow.models.SGPR((X, y), k, inducing_variable=X[:15].copy())
  else:
    model = gpflow.models.VGP((X[:40], y[:40]), k,
                              gpflow.likelihoods.Gaussian())
  before = model.training_loss().numpy()
  gpflow.optimizers.Scipy().minimize(model.training_loss,
                                     model.trainable_variables,
                                     options=dict(maxiter=10))
  after = model.training_loss().numpy()
  assert np.isfinite(after) and after < before


# ----------------------------------------------------------------------------
# Gradients vs central finite differences (float64).
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('get', ['nngp', 'ntk'])
def test_lml_gradients_match_finite_differences(diabetes, get):
  """d LML / d (unconstrained hyperparameter): autodiff vs central
  differences. For the NTK the differences are of the closed-form
  likelihood (exact diagonal; the stax NTK's diagonal has ~sqrt(eps)
  rounding that swamps small steps)."""
  X, y, _, _ = diabetes
  X, y = X[:30], y[:30]
  noise = 0.3
  k = NeuralKernel(relu_net, get=get, W_std=1.2, b_std=0.3)
  model = gpflow.models.GPR((X, y), k, noise_variance=noise)
  params = {'W_std': k.W_std, 'b_std': k.b_std}
  with tf.GradientTape() as tape:
    lml = model.log_marginal_likelihood()
  grads = tape.gradient(lml, [p.unconstrained_variable
                              for p in params.values()])

  def closed_lml(W, b):
    a = relu_closed_form(X, None, W, b, get) + noise * np.eye(len(X))
    chol = np.linalg.cholesky(a)
    z = np.linalg.solve(chol, y[:, 0])
    return (-0.5 * z @ z - np.log(np.diag(chol)).sum() -
            0.5 * len(X) * np.log(2 * np.pi))

  W0, b0 = float(k.W_std.numpy()), float(k.b_std.numpy())
  np.testing.assert_allclose(lml.numpy(), closed_lml(W0, b0), rtol=1e-8)
  softplus = lambda u: np.logaddexp(0., u)
  h = 1e-5
  for (name, p), g in zip(params.items(), grads):
    u = p.unconstrained_variable.numpy()
    vals = []
    for s in (1, -1):
      W, b = W0, b0
      if name == 'W_std':
        W = softplus(u + s * h)
      else:
        b = softplus(u + s * h)
      vals.append(closed_lml(W, b))
    np.testing.assert_allclose(g.numpy(), (vals[0] - vals[1]) / (2 * h),
                               rtol=1e-6, err_msg=name)
    if get == 'nngp':  # the kernel's own likelihood is smooth too
      own = []
      for s in (1, -1):
        p.unconstrained_variable.assign(u + s * h)
        own.append(model.log_marginal_likelihood().numpy())
      p.unconstrained_variable.assign(u)
      np.testing.assert_allclose(g.numpy(), (own[0] - own[1]) / (2 * h),
                                 rtol=1e-6, err_msg=name)


# ----------------------------------------------------------------------------
# Images, priors, bad input.
# ----------------------------------------------------------------------------
def test_flattened_images_with_input_shape():
  digits = load_digits()
  X = digits.data[:16] / 16.
  y = (digits.target[:16, None] % 2).astype(np.float64)

  def cnn(W_std, b_std):
    return stax.serial(
        stax.Conv(1, (3, 3), padding='SAME', W_std=W_std, b_std=b_std),
        stax.Relu(), stax.Flatten(), stax.Dense(1, W_std, b_std))

  k = NeuralKernel(cnn, get='ntk', input_shape=(8, 8, 1), W_std=1.2,
                   b_std=0.1)
  W, b = float(k.W_std.numpy()), float(k.b_std.numpy())
  want = cnn(W, b)[2](X.reshape(-1, 8, 8, 1), None, 'ntk').numpy()
  np.testing.assert_allclose(k.K(X).numpy(), want, rtol=1e-12)
  np.testing.assert_allclose(k.K_diag(X).numpy(), np.diag(want), rtol=1e-7)
  model = gpflow.models.GPR((X, y), k, noise_variance=0.1)
  assert np.isfinite(model.log_marginal_likelihood().numpy())
  with pytest.raises(ValueError, match='input_shape'):
    k.K(X[:, :60])
  with pytest.raises(ValueError, match='input_shape'):
    NeuralKernel(cnn, input_shape=(64,), W_std=1., b_std=.1).K(X)


def test_priors():
  from scipy import stats  # pylint: disable=g-import-not-at-top
  prior = tfp.distributions.Gamma(np.float64(2.), np.float64(2.))
  k = NeuralKernel(relu_net, priors={'W_std': prior}, W_std=1.2, b_std=0.3)
  assert k.W_std.prior is prior and k.b_std.prior is None
  k.b_std.prior = tfp.distributions.Exponential(np.float64(1.))
  X = np.random.RandomState(0).randn(5, 3)
  model = gpflow.models.GPR((X, X[:, :1]), k)
  # Priors are on the constrained (positive) values.
  want = (stats.gamma(a=2., scale=.5).logpdf(k.W_std.numpy()) +
          stats.expon().logpdf(k.b_std.numpy()))
  np.testing.assert_allclose(model.log_prior_density().numpy(), want,
                             rtol=1e-10)
  # The training loss is the negative log posterior density.
  np.testing.assert_allclose(
      model.training_loss().numpy(),
      -(model.log_marginal_likelihood().numpy() + want), rtol=1e-10)


def test_hyperparameters_are_positive_parameters_and_copy():
  own = gpflow.Parameter(1.2, transform=gpflow.utilities.positive(lower=0.5))
  k = NeuralKernel(relu_net, W_std=own, b_std=0.3)
  assert k.W_std is own
  assert isinstance(k.b_std, gpflow.Parameter)
  assert k.b_std.transform is not None and k.b_std.trainable
  k.b_std.unconstrained_variable.assign(-30.)
  assert float(k.b_std.numpy()) > 0
  k.b_std.assign(0.3)
  assert sorted(v.name for v in k.trainable_variables) == sorted(
      p.unconstrained_variable.name for p in (k.W_std, k.b_std))
  X = np.random.RandomState(0).randn(5, 3)
  copied = gpflow.utilities.deepcopy(k)
  copied.W_std.assign(2.)
  np.testing.assert_allclose(k.K(X).numpy(),
                             relu_closed_form(X, None, 1.2, .3, 'nngp'),
                             rtol=1e-12)
  np.testing.assert_allclose(copied.K(X).numpy(),
                             relu_closed_form(X, None, 2., .3, 'nngp'),
                             rtol=1e-12)


def test_bad_input_raises_clear_errors():
  X = np.random.RandomState(0).randn(4, 3)
  with pytest.raises(TypeError, match='unknown hyperparameter'):
    NeuralKernel(relu_net, W_std=1., b_std=.1, depth=2)
  with pytest.raises(TypeError, match='needs the hyperparameter'):
    NeuralKernel(relu_net, W_std=1.)
  for bad in (0., -2., np.nan):
    with pytest.raises(ValueError, match='positive'):
      NeuralKernel(relu_net, W_std=bad, b_std=.1)
  with pytest.raises(ValueError, match='scalar'):
    NeuralKernel(relu_net, W_std=[1., 2.], b_std=.1)
  with pytest.raises(ValueError, match='"nngp" or "ntk"'):
    NeuralKernel(relu_net, get='nt', W_std=1., b_std=.1)
  with pytest.raises(TypeError, match='unknown hyperparameter'):
    NeuralKernel(relu_net, priors={'W': None}, W_std=1., b_std=.1)
  with pytest.raises(ValueError, match='input_shape'):
    NeuralKernel(relu_net, input_shape=(0, 3), W_std=1., b_std=.1)
  with pytest.raises(TypeError, match='cannot be a hyperparameter'):
    NeuralKernel(lambda K_diag: relu_net(K_diag, .1), K_diag=1.)
  k = NeuralKernel(relu_net, input_shape=(2, 2), W_std=1., b_std=.1)
  with pytest.raises(ValueError, match='input_shape'):
    k.K(X)

