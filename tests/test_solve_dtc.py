"""The Nyström (DTC) GP's predictive variances, log marginal likelihood and
Titsias bound (`nystrom_sweep(..., posterior=True)`) against dense numpy
linear algebra, GPflow's SGPR with the same inducing points, and the exact
GP when every training point is a centre."""
import dataclasses

import gpflow
import numpy as np
import pytest

from nt_gp import stax
from nt_gp.distributed import LocalRunner, compute_kernel
from nt_gp.gpflow import NeuralKernel
from nt_gp.solve import exact_sweep
from nt_gp.solve.nystrom import nystrom_sweep

N, M, T = 200, 25, 30
REGS = [1e-3, 1e-1, 1.]          # relative to the mean of diag K(X, X)


def _arch(W_std, b_std):
  """One hidden Erf layer (tests/test_solve_nystrom.py uses ReLU ones)."""
  return stax.serial(stax.Dense(1, W_std, b_std), stax.Erf(),
                     stax.Dense(1, W_std, b_std))


@pytest.fixture(scope='module')
def data():
  rng = np.random.RandomState(5)
  x = rng.randn(N + T, 3)
  noise = 0.1 * rng.randn(N + T, 2)
  y = np.cos(x[:, :1]) * x[:, 1:] + noise
  return dict(x=x[:N], y=y[:N], xt=x[N:], kernel_fn=_arch(1.5, 0.05)[2],
              idx=np.sort(rng.choice(N, M, replace=False)))


def _dense(kernel_fn, get, x, y, xt, idx, regs):
  """DTC quantities for relative noise variances, from N x N matrices."""
  z = x[idx]
  k_xz = kernel_fn(x, z, get).numpy()
  k_zz = kernel_fn(z, None, get).numpy()
  k_tz = kernel_fn(xt, z, get).numpy()
  k_xx = kernel_fn(x, None, get).numpy()
  k_tt = np.diag(kernel_fn(xt, None, get).numpy())
  q = k_xz @ np.linalg.solve(k_zz, k_xz.T)
  mean_diag = np.mean(np.diag(k_xx))
  return [_dense_one(y, k_xx, k_tt, k_tz, k_zz, k_xz, q, reg * mean_diag,
                     mean_diag) for reg in regs]


def _dense_one(y, k_xx, k_tt, k_tz, k_zz, k_xz, q, s2, mean_diag):
  cov = q + s2 * np.eye(len(y))
  _, logdet = np.linalg.slogdet(cov)
  quad = np.sum(y * np.linalg.solve(cov, y), 0)
  lml = float(np.sum(-0.5 * (quad + logdet + len(y) * np.log(2 * np.pi))))
  elbo = lml - 0.5 * y.shape[1] * np.trace(k_xx - q) / s2
  # Posterior of f at the test points given y under the DTC prior
  # [f_*; y] ~ N(0, [[K_**, Q_*X], [Q_X*, Q_XX + s2 I]]) (as in GPflow).
  q_tx = k_tz @ np.linalg.solve(k_zz, k_xz.T)
  mean = q_tx @ np.linalg.solve(cov, y)
  variance = k_tt - np.sum(q_tx * np.linalg.solve(cov, q_tx.T).T, 1)
  return dict(lml=lml, elbo=elbo, mean=mean, variance=variance,
              mean_diag=mean_diag)


@pytest.mark.parametrize('get', ['nngp', 'ntkgp'])
def test_lml_elbo_and_variances_equal_dense_numpy(data, get):
  kget = 'nngp' if get == 'nngp' else 'ntk'
  fit = nystrom_sweep(data['y'], REGS, kernel_fn=data['kernel_fn'],
                      x_train=data['x'], get=get, centres=data['idx'],
                      batch_size=64, tol=1e-13, max_iter=300, posterior=True)
  variance = fit.predict_variance(data['xt'])
  mean = fit.predict(data['xt'])
  assert variance.shape == (len(REGS), T)
  dense = _dense(data['kernel_fn'], kget, data['x'], data['y'], data['xt'],
                 data['idx'], REGS)
  for i, want in enumerate(dense):
    np.testing.assert_allclose(fit.log_marginal_likelihood[i], want['lml'],
                               rtol=1e-8)
    np.testing.assert_allclose(fit.elbo[i], want['elbo'], rtol=1e-8)
    np.testing.assert_allclose(variance[i], want['variance'], rtol=1e-6,
                               atol=1e-8 * want['mean_diag'])
    np.testing.assert_allclose(mean[i], want['mean'], rtol=1e-6,
                               atol=1e-8 * np.abs(want['mean']).max())
  # The bound is below the marginal likelihood it bounds.
  assert np.all(fit.elbo < fit.log_marginal_likelihood)


def test_sgpr_gives_the_same_mean_variance_and_elbo(data):
  noise = [0.02, 0.3]
  fit = nystrom_sweep(data['y'], noise, diag_reg_absolute_scale=True,
                      kernel_fn=data['kernel_fn'], x_train=data['x'],
                      centres=data['idx'], batch_size=64, tol=1e-13,
                      max_iter=300, posterior=True)
  mean = fit.predict(data['xt'])
  variance = fit.predict_variance(data['xt'])
  config = dataclasses.replace(gpflow.config.config(), jitter=1e-12)
  with gpflow.config.as_context(config):
    for i, s2 in enumerate(noise):
      model = gpflow.models.SGPR(
          (data['x'], data['y']), NeuralKernel(_arch, W_std=1.5, b_std=0.05),
          inducing_variable=data['x'][data['idx']], noise_variance=s2)
      want_mean, want_var = model.predict_f(data['xt'])
      np.testing.assert_allclose(mean[i], want_mean.numpy(), rtol=1e-6,
                                 atol=1e-6 * np.abs(want_mean).max())
      # GPflow gives one variance column per output (the same here).
      np.testing.assert_allclose(variance[i], want_var.numpy()[:, 0],
                                 rtol=1e-6, atol=1e-9)
      np.testing.assert_allclose(fit.elbo[i], model.elbo().numpy(),
                                 rtol=1e-8)


def test_all_points_as_centres_give_the_exact_gp(data):
  x, y = data['x'][:120], data['y'][:120]
  fit = nystrom_sweep(y, REGS, kernel_fn=data['kernel_fn'], x_train=x,
                      centres=np.arange(120), batch_size=50, tol=1e-12,
                      posterior=True)
  k = data['kernel_fn'](x, None, 'nngp').numpy()
  k_t = data['kernel_fn'](data['xt'], x, 'nngp').numpy()
  k_tt = np.diag(data['kernel_fn'](data['xt'], None, 'nngp').numpy())
  exact = exact_sweep(k, y, REGS, eval_sets={'test': (k_t, k_tt)})
  # With Z = X, G = K_XZ K_ZX = K^2 has K's condition number squared:
  # agreement to ~1e-8 (the dense DTC comparison above is to 1e-8 as well).
  np.testing.assert_allclose(fit.log_marginal_likelihood,
                             exact.log_marginal_likelihood, rtol=5e-8)
  np.testing.assert_allclose(fit.predict_variance(data['xt']),
                             exact.variance['test'], rtol=1e-6, atol=1e-9)
  # With Q_XX = K_XX the bound is tight.
  np.testing.assert_allclose(fit.elbo, fit.log_marginal_likelihood,
                             rtol=5e-8)


def test_kernels_given_as_arrays_and_stores(data, tmp_path):
  kernel_fn, x, xt, idx = (data['kernel_fn'], data['x'], data['xt'],
                           data['idx'])
  z = x[idx]
  ref = nystrom_sweep(data['y'], REGS, kernel_fn=kernel_fn, x_train=x,
                      centres=idx, tol=1e-12, posterior=True)
  want_var = ref.predict_variance(xt)
  diag = np.diag(kernel_fn(x, None, 'nngp').numpy())
  k_tt = kernel_fn(xt, None, 'nngp').numpy()
  k_tz = kernel_fn(xt, z, 'nngp').numpy()
  arrays = nystrom_sweep(data['y'], REGS,
                         k_train_centres=kernel_fn(x, z, 'nngp').numpy(),
                         k_centres_centres=kernel_fn(z, None, 'nngp').numpy(),
                         k_train_diag=diag, batch_size=70, tol=1e-12,
                         posterior=True)
  np.testing.assert_allclose(arrays.log_marginal_likelihood,
                             ref.log_marginal_likelihood, rtol=1e-10)
  np.testing.assert_allclose(arrays.elbo, ref.elbo, rtol=1e-10)
  for k_test_diag in (np.diag(k_tt), k_tt):           # diagonal or matrix
    np.testing.assert_allclose(
        arrays.predict_variance(k_test_centres=k_tz, k_test_diag=k_test_diag),
        want_var, rtol=1e-9, atol=1e-12)
  paths = {}
  for name, a, b, bs in (('xz', x, z, 25), ('zz', z, None, 25),
                         ('tz', xt, z, 5), ('tt', xt, None, 30)):
    paths[name] = str(tmp_path / f'{name}.h5')
    compute_kernel(kernel_fn, a, b, out=paths[name], arch='mlp',
                   batch_size=bs, runner=LocalRunner(1), progress=False)
  # Absolute regs and no diagonal: the likelihood, but no bound.
  stores = nystrom_sweep(data['y'], ref.reg, True, k_train_centres=paths['xz'],
                         k_centres_centres=paths['zz'], tol=1e-12,
                         posterior=True)
  assert stores.elbo is None
  np.testing.assert_allclose(stores.log_marginal_likelihood,
                             ref.log_marginal_likelihood, rtol=1e-10)
  np.testing.assert_allclose(
      stores.predict_variance(k_test_centres=paths['tz'],
                              k_test_diag=paths['tt']),
      want_var, rtol=1e-9, atol=1e-12)


def test_float32_inputs(data):
  common = dict(kernel_fn=data['kernel_fn'], centres=data['idx'],
                batch_size=64, tol=1e-12, posterior=True)
  f64 = nystrom_sweep(data['y'], REGS[1:], x_train=data['x'], **common)
  f32 = nystrom_sweep(data['y'], REGS[1:],
                      x_train=data['x'].astype(np.float32), **common)
  np.testing.assert_allclose(f32.log_marginal_likelihood,
                             f64.log_marginal_likelihood, rtol=1e-4)
  np.testing.assert_allclose(
      f32.predict_variance(data['xt'].astype(np.float32)),
      f64.predict_variance(data['xt']), rtol=1e-3, atol=1e-5)


def test_bad_input(data):
  common = dict(kernel_fn=data['kernel_fn'], x_train=data['x'],
                centres=data['idx'])
  with pytest.raises(ValueError, match='drop 0 from `diag_reg`'):
    nystrom_sweep(data['y'], [0., 0.1], posterior=True, **common)
  with pytest.raises(NotImplementedError, match='ntkgp'):
    nystrom_sweep(data['y'], 0.1, get='ntk', posterior=True, **common)
  fit = nystrom_sweep(data['y'], 0.1, **common)
  assert fit.log_marginal_likelihood is None and fit.elbo is None
  with pytest.raises(ValueError, match='posterior=True'):
    fit.predict_variance(data['xt'])
  fit = nystrom_sweep(data['y'], 0.1, posterior=True, **common)
  k_tz = data['kernel_fn'](data['xt'], data['x'][data['idx']],
                           'nngp').numpy()
  with pytest.raises(ValueError, match='k_test_diag'):
    fit.predict_variance(k_test_centres=k_tz)
  with pytest.raises(ValueError, match=r'must be the \(30,\) diagonal'):
    fit.predict_variance(k_test_centres=k_tz, k_test_diag=np.ones(29))
  with pytest.raises(ValueError, match='has 24 columns, there are 25'):
    fit.predict_variance(k_test_centres=k_tz[:, 1:], k_test_diag=np.ones(30))
  with pytest.raises(ValueError, match='leave `k_test_diag` out'):
    fit.predict_variance(data['xt'], k_test_diag=np.ones(30))
