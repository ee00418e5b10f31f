"""GP models on features against dense GP regression with ``K = Φ Φᵀ``.

Bayesian linear regression on features is exactly GP regression with the
kernel ``Φ Φᵀ``: means, variances and the log marginal likelihood agree
with a dense computation (numpy/scipy, float64) to 1e-10; so do the TFP
and GPflow routes, streaming over blocks, and posterior weight samples
(checked by their empirical moments).
"""
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from nt_gp import features, stax

NOISE = 0.05


@pytest.fixture(scope='module')
def problem():
  rs = np.random.RandomState(0)
  x = rs.randn(60, 3)
  y = np.stack([np.sin(x[:, 0]) + 0.1 * rs.randn(60), x[:, 1]], 1)
  x_test = rs.randn(7, 3)
  net = stax.serial(stax.Dense(8, W_std=1.5, b_std=0.1), stax.Relu(),
                    stax.Dense(1, W_std=1.5, b_std=0.1))
  phi = features.features_fn(net, 40, seed=3, input_shape=(3,))
  return dict(x=x, y=y, x_test=x_test, phi=phi,
              f=phi(x, 'ntk').numpy(), f_test=phi(x_test, 'ntk').numpy())


def _dense_gp(p, noise=NOISE):
  k = p['f'] @ p['f'].T + noise * np.eye(len(p['f']))
  ks = p['f_test'] @ p['f'].T
  kss = p['f_test'] @ p['f_test'].T
  mean = ks @ np.linalg.solve(k, p['y'])
  cov = kss - ks @ np.linalg.solve(k, ks.T)
  lml = sum(scipy.stats.multivariate_normal(np.zeros(len(k)), k).logpdf(
      p['y'][:, j]) for j in range(p['y'].shape[1]))
  return mean, cov, lml


def test_bayesian_linear_regression_is_gp_regression(problem):
  p = problem
  reg = features.FeatureRegression(
      features.NormalEquations.of(p['f'], p['y']), NOISE)
  mean, cov, lml = _dense_gp(p)
  m, v = reg.predict(p['f_test'])
  _, c = reg.predict(p['f_test'], full_cov=True)
  np.testing.assert_allclose(m.numpy(), mean, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(v.numpy(), np.diag(cov), rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(c.numpy(), cov, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(float(reg.log_marginal_likelihood()), lml,
                             rtol=1e-10)


def test_more_data_than_features_and_fewer(problem):
  # N > m (60 > 41+) and N < m take different branches of the determinant
  # lemma's (N - m) log σ² term.
  p = dict(problem)
  for n in (10, 60):
    q = dict(p, f=p['f'][:n], y=p['y'][:n])
    reg = features.FeatureRegression(
        features.NormalEquations.of(q['f'], q['y']), 0.3)
    np.testing.assert_allclose(float(reg.log_marginal_likelihood()),
                               _dense_gp(q, 0.3)[2], rtol=1e-10)


def test_streamed_normal_equations_equal_one_block(problem):
  p = problem
  ne = features.normal_equations(p['phi'], p['x'], p['y'], batch_size=7,
                                 get='ntk', progress=False)
  one = features.NormalEquations.of(p['f'], p['y'])
  assert ne.count == 60
  np.testing.assert_allclose(ne.gram, one.gram, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(ne.rhs, one.rhs, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(ne.targets_sq, (p['y'] ** 2).sum(0), rtol=1e-12)
  # An iterable of blocks (e.g. read from disk) gives the same equations.
  blocks = ((p['x'][i:i + 25], p['y'][i:i + 25]) for i in range(0, 60, 25))
  ne2 = features.normal_equations(p['phi'], blocks, get='ntk', progress=False)
  np.testing.assert_allclose(ne2.gram, one.gram, rtol=1e-12, atol=1e-12)
  reg = features.FeatureRegression(ne, NOISE)
  mean, var = features.predict(reg, p['phi'], p['x_test'], batch_size=3,
                               get='ntk', progress=False)
  dense_mean, dense_cov, _ = _dense_gp(p)
  np.testing.assert_allclose(mean, dense_mean, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(var, np.diag(dense_cov), rtol=1e-10, atol=1e-10)


def test_fit_noise_finds_the_likelihood_maximum(problem):
  p = problem
  reg = features.FeatureRegression(
      features.NormalEquations.of(p['f'], p['y'][:, :1]), 1.)
  best = reg.fit_noise()
  grid = np.exp(np.linspace(np.log(best) - 0.5, np.log(best) + 0.5, 11))
  values = [_dense_gp(dict(p, y=p['y'][:, :1]), s)[2] for s in grid]
  assert np.argmax(values) == 5          # the middle of the grid: `best`
  assert reg.noise_variance == best


def test_posterior_weight_samples_have_the_posterior_moments(problem):
  p = problem
  reg = features.FeatureRegression(
      features.NormalEquations.of(p['f'], p['y']), NOISE)
  w = reg.sample_weights(4000, seed=1).numpy()           # (S, m, t)
  f = np.einsum('nm,smt->snt', p['f_test'], w)
  mean, cov, _ = _dense_gp(p)
  se = np.sqrt(np.diag(cov))[:, None] / np.sqrt(len(w))
  assert np.all(np.abs(f.mean(0) - mean) < 4.5 * se)
  emp_cov = np.cov(f[:, :, 0].T)
  np.testing.assert_allclose(emp_cov, cov, atol=0.1 * np.abs(cov).max())
  # Samples are functions: the same weights at any test points.
  again = np.einsum('nm,smt->snt', p['f_test'][:3], w)
  np.testing.assert_array_equal(again, f[:, :3])


def test_tfp_kernel_in_gaussian_process(problem):
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  from nt_gp.features.tfp import FeatureKernel  # pylint: disable=g-import-not-at-top
  p = problem
  kernel = FeatureKernel(p['phi'], get='ntk')
  np.testing.assert_allclose(kernel.matrix(p['x'], p['x_test']).numpy(),
                             p['f'] @ p['f_test'].T, rtol=1e-12)
  np.testing.assert_allclose(kernel.apply(p['x_test'], p['x_test']).numpy(),
                             (p['f_test'] ** 2).sum(1), rtol=1e-12)
  # Batch of example axes: tensor() broadcasts as TFP defines it.
  t = kernel.tensor(p['x'][:6].reshape(2, 3, 3), p['x_test'][:4], 2, 1)
  assert tuple(t.shape) == (2, 3, 4)
  np.testing.assert_allclose(t.numpy()[1, 2], p['f'][5] @ p['f_test'][:4].T,
                             rtol=1e-12)
  gprm = tfp.distributions.GaussianProcessRegressionModel(
      kernel, index_points=p['x_test'], observation_index_points=p['x'],
      observations=p['y'][:, 0], observation_noise_variance=NOISE,
      predictive_noise_variance=0., jitter=0.)
  mean, cov, _ = _dense_gp(p)
  np.testing.assert_allclose(gprm.mean().numpy(), mean[:, 0], rtol=1e-8,
                             atol=1e-8)
  np.testing.assert_allclose(gprm.stddev().numpy() ** 2, np.diag(cov),
                             rtol=1e-6, atol=1e-8)
  marginal = kernel.marginal(p['x'], NOISE)
  lml = scipy.stats.multivariate_normal(
      np.zeros(60), p['f'] @ p['f'].T + NOISE * np.eye(60)).logpdf(
          p['y'][:, 0])
  np.testing.assert_allclose(float(marginal.log_prob(p['y'][:, 0])), lml,
                             rtol=1e-9)
  assert tuple(marginal.sample(3, seed=(1, 2)).shape) == (3, 60)


def test_gpflow_feature_gpr_matches_dense_gpr(problem):
  import gpflow  # pylint: disable=g-import-not-at-top
  from nt_gp.features.gpflow import FeatureGPR  # pylint: disable=g-import-not-at-top
  p = problem
  model = FeatureGPR(p['phi'], (p['x'], p['y']), get='ntk',
                     noise_variance=NOISE)
  mean, cov, lml = _dense_gp(p)
  np.testing.assert_allclose(float(model.maximum_log_likelihood_objective()),
                             lml, rtol=1e-10)
  m, v = model.predict_f(p['x_test'])
  np.testing.assert_allclose(m.numpy(), mean, rtol=1e-10, atol=1e-10)
  np.testing.assert_allclose(v.numpy(), np.tile(np.diag(cov)[:, None], 2),
                             rtol=1e-10, atol=1e-10)
  _, c = model.predict_f(p['x_test'], full_cov=True)
  assert tuple(c.shape) == (2, 7, 7)
  np.testing.assert_allclose(c.numpy()[1], cov, rtol=1e-9, atol=1e-10)
  # Learning the noise: the same optimum as GPflow's dense GPR.
  dense = gpflow.models.GPR((p['x'], p['y']), model.kernel,
                            noise_variance=1.)
  model.likelihood.variance.assign(1.)
  for m_ in (model, dense):
    gpflow.optimizers.Scipy().minimize(m_.training_loss,
                                       m_.trainable_variables)
  np.testing.assert_allclose(model.likelihood.variance.numpy(),
                             dense.likelihood.variance.numpy(), rtol=1e-4)


def test_noise_below_the_precision_of_float32_normal_equations():
  # Fewer data than features: Φᵀ Φ is singular, and in float32 its rounding
  # errors make Φᵀ Φ + σ² I indefinite for tiny σ². That is an error, not a
  # NaN prediction, and the noise fit stays above that precision.
  rs = np.random.RandomState(0)
  phi, y = 10 * rs.randn(20, 60).astype(np.float32), rs.randn(20)
  ne = features.NormalEquations.of(phi, y)
  with pytest.raises(ValueError, match='below the precision'):
    features.FeatureRegression(ne, 1e-12).predict(phi[:2])
  reg = features.FeatureRegression(ne, 1.)
  noise = reg.fit_noise()
  assert noise >= 10 * np.finfo(np.float32).eps * ne.gram.diagonal().max()
  mean, var = reg.predict(phi[:2])
  assert np.isfinite(mean.numpy()).all() and np.isfinite(var.numpy()).all()
