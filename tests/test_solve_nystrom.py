"""Nyström + preconditioned CG (Falkon) against dense linear algebra, the
exact GP, and GPflow's SGPR with the same inducing points and noise."""
import dataclasses

import gpflow
import numpy as np
import pytest

from nt_gp import stax
from nt_gp.distributed import LocalRunner, compute_kernel
from nt_gp.gpflow import NeuralKernel
from nt_gp.solve import centres as centres_lib
from nt_gp.solve.kernel_blocks import FunctionBlocks
from nt_gp.solve.memory import MemoryLimitError
from nt_gp.solve.nystrom import nystrom_sweep

N, M, T = 240, 30, 40
REGS = [1e-2, 1e-1]


def _arch(W_std, b_std):
  return stax.serial(stax.Dense(1, W_std, b_std), stax.Relu(),
                     stax.Dense(1, W_std, b_std), stax.Relu(),
                     stax.Dense(1, W_std, b_std))


@pytest.fixture(scope='module')
def data():
  rng = np.random.RandomState(0)
  x = rng.randn(N + T, 3)
  f = np.stack([np.sin(2 * x[:, 0]), x[:, 1] * x[:, 2]], 1)
  y = f + 0.1 * rng.randn(*f.shape)
  return dict(x=x[:N], y=y[:N], xt=x[N:], yt=y[N:],
              kernel_fn=_arch(1.5, 0.05)[2])


def _dense_dtc(kernel_fn, get, x, y, xt, idx, regs_rel):
  """Subset-of-regressors means from dense numpy linear algebra."""
  z = x[idx]
  k_xz = kernel_fn(x, z, get).numpy()
  k_zz = kernel_fn(z, None, get).numpy()
  k_tz = kernel_fn(xt, z, get).numpy()
  mean_diag = np.mean(np.diag(kernel_fn(x, None, get).numpy()))
  out = []
  for reg in regs_rel:
    s2 = reg * mean_diag
    alpha = np.linalg.solve(k_xz.T @ k_xz + s2 * k_zz, k_xz.T @ y)
    out.append(k_tz @ alpha)
  return np.stack(out)


@pytest.mark.parametrize('get', ['nngp', 'ntk'])
def test_cg_converges_to_the_dense_nystrom_solution(data, get):
  idx = centres_lib.uniform_centres(N, M, seed=1)
  fit = nystrom_sweep(data['y'], REGS, kernel_fn=data['kernel_fn'],
                      x_train=data['x'], get=get, centres=idx, batch_size=64,
                      tol=1e-13, max_iter=300)
  assert fit.solve.converged.all()
  want = _dense_dtc(data['kernel_fn'], get, data['x'], data['y'],
                    data['xt'], idx, REGS)
  got = fit.predict(data['xt'])
  assert got.shape == (2, T, 2)
  np.testing.assert_allclose(got, want, rtol=1e-8,
                             atol=1e-8 * np.abs(want).max())


def test_all_points_as_centres_give_the_exact_gp(data):
  x, y = data['x'], data['y']
  fit = nystrom_sweep(y, REGS, kernel_fn=data['kernel_fn'], x_train=x,
                      centres=np.arange(N), batch_size=100, tol=1e-12)
  k = data['kernel_fn'](x, None, 'nngp').numpy()
  k_t = data['kernel_fn'](data['xt'], x, 'nngp').numpy()
  for i, reg in enumerate(REGS):
    s2 = reg * np.mean(np.diag(k))
    want = k_t @ np.linalg.solve(k + s2 * np.eye(N), y)
    np.testing.assert_allclose(fit.predict(data['xt'])[i], want, rtol=1e-8,
                               atol=1e-8 * np.abs(want).max())
  # With Z = X the preconditioner inverts the system: a few iterations.
  assert fit.solve.iterations.max() <= 4, fit.solve.iterations


def test_sgpr_with_the_same_inducing_points_gives_the_same_mean(data):
  idx = centres_lib.uniform_centres(N, M, seed=2)
  noise = 0.05
  fit = nystrom_sweep(data['y'], noise, diag_reg_absolute_scale=True,
                      kernel_fn=data['kernel_fn'], x_train=data['x'],
                      centres=idx, batch_size=64, tol=1e-13, max_iter=300)
  kernel = NeuralKernel(_arch, W_std=1.5, b_std=0.05)
  config = dataclasses.replace(gpflow.config.config(), jitter=1e-12)
  with gpflow.config.as_context(config):
    model = gpflow.models.SGPR((data['x'], data['y']), kernel,
                               inducing_variable=data['x'][idx],
                               noise_variance=noise)
    mean, _ = model.predict_f(data['xt'])
  np.testing.assert_allclose(fit.predict(data['xt'])[0], mean.numpy(),
                             rtol=1e-6, atol=1e-6 * np.abs(mean).max())


def test_kernels_given_as_arrays_and_stores(data, tmp_path):
  x, kernel_fn = data['x'], data['kernel_fn']
  idx = np.arange(0, N, N // M)
  z = x[idx]
  ref = nystrom_sweep(data['y'], REGS, kernel_fn=kernel_fn, x_train=x,
                      centres=idx, batch_size=64, tol=1e-12)
  diag = np.diag(kernel_fn(x, None, 'nngp').numpy())
  arrays = nystrom_sweep(data['y'], REGS,
                         k_train_centres=kernel_fn(x, z, 'nngp').numpy(),
                         k_centres_centres=kernel_fn(z, None, 'nngp').numpy(),
                         k_train_diag=diag, batch_size=50, tol=1e-12)
  k_tz = kernel_fn(data['xt'], z, 'nngp').numpy()
  np.testing.assert_allclose(arrays.predict(k_test_centres=k_tz),
                             ref.predict(data['xt']), rtol=1e-9, atol=1e-9)
  paths = {}
  for name, a, b, bs in (('xz', x, z, 10), ('zz', z, None, 10),
                         ('tz', data['xt'], z, 10)):
    paths[name] = str(tmp_path / f'{name}.h5')
    compute_kernel(kernel_fn, a, b, out=paths[name], arch='mlp',
                   batch_size=bs, runner=LocalRunner(1), progress=False)
  stores = nystrom_sweep(data['y'], REGS, k_train_centres=paths['xz'],
                         k_centres_centres=paths['zz'], k_train_diag=diag,
                         tol=1e-12)
  np.testing.assert_allclose(stores.predict(k_test_centres=paths['tz']),
                             ref.predict(data['xt']), rtol=1e-9, atol=1e-9)
  other = str(tmp_path / 'other.h5')
  compute_kernel(kernel_fn, x, x[idx + 1], out=other, arch='mlp',
                 batch_size=10, runner=LocalRunner(1), progress=False)
  with pytest.raises(ValueError, match='computed for other inputs'):
    nystrom_sweep(data['y'], REGS, k_train_centres=other,
                  k_centres_centres=paths['zz'], k_train_diag=diag)


def test_cached_blocks_give_the_same_passes(data, tmp_path):
  """Blocks kept in memory, in a disk cache, or recomputed every pass."""
  z = data['x'][:M]
  k = data['kernel_fn'](data['x'], z, 'nngp').numpy()
  u = np.random.RandomState(0).randn(M, 3)
  plain = FunctionBlocks(data['kernel_fn'], data['x'], z, batch_size=50)
  memory = FunctionBlocks(data['kernel_fn'], data['x'], z, batch_size=50,
                          cache_bytes=10 ** 9)
  # Room for two blocks in memory, the other three on disk.
  disk = FunctionBlocks(data['kernel_fn'], data['x'], z, batch_size=50,
                        cache_bytes=100 * M * 8, cache_dir=str(tmp_path))
  for blocks in (plain, memory, disk):
    for _ in range(2):                         # computed, then cached
      np.testing.assert_allclose(blocks.gram_apply(u), k.T @ (k @ u),
                                 rtol=1e-12)
  assert len(memory._cache) == 5 and len(disk._cache) == 2
  assert disk._file_done.sum() == 3 and len(list(tmp_path.iterdir())) == 1
  disk.close()
  assert not list(tmp_path.iterdir())
  fit = nystrom_sweep(data['y'], REGS, kernel_fn=data['kernel_fn'],
                      x_train=data['x'], centres=np.arange(M), tol=1e-10,
                      memory_limit='16G')
  again = nystrom_sweep(data['y'], REGS, kernel_fn=data['kernel_fn'],
                        x_train=data['x'], centres=np.arange(M), tol=1e-10,
                        memory_limit=None)
  np.testing.assert_allclose(fit.alpha, again.alpha, rtol=1e-10,
                             atol=1e-10 * np.abs(fit.alpha).max())


def test_regs_and_columns_are_solved_independently(data):
  idx = centres_lib.uniform_centres(N, M, seed=3)
  both = nystrom_sweep(data['y'], REGS, kernel_fn=data['kernel_fn'],
                       x_train=data['x'], centres=idx, tol=1e-12)
  for i, reg in enumerate(REGS):
    for col in range(2):
      one = nystrom_sweep(data['y'][:, col], reg, kernel_fn=data['kernel_fn'],
                          x_train=data['x'], centres=idx, tol=1e-12)
      np.testing.assert_allclose(one.alpha[0, :, 0], both.alpha[i, :, col],
                                 rtol=1e-7, atol=1e-9 * np.abs(
                                     both.alpha).max())


def test_early_stopping_returns_the_best_validation_iterate(data):
  idx = centres_lib.uniform_centres(N, M, seed=4)
  common = dict(kernel_fn=data['kernel_fn'], x_train=data['x'], centres=idx,
                tol=1e-14)
  fit = nystrom_sweep(data['y'], [1e-6, 1e-1], max_iter=200, patience=2,
                      validation=(data['xt'], data['yt']), **common)
  history = np.array(fit.solve.validation)           # (iterations, R)
  for r in range(2):
    ran = fit.solve.iterations[r]
    best = fit.solve.best_iteration[r]
    losses = history[:ran, r]
    assert best == 1 + int(np.argmin(losses))
    assert ran == min(200, best + 2) or fit.solve.converged[r]
    # The returned coefficients are those of iteration `best`: a run
    # stopped there without validation gives the same.
    again = nystrom_sweep(data['y'], [[1e-6, 1e-1][r]], max_iter=int(best),
                          **common)
    np.testing.assert_allclose(fit.alpha[r], again.alpha[0], rtol=1e-9,
                               atol=1e-9 * np.abs(again.alpha).max())
    rmse = np.sqrt(np.mean((fit.predict(data['xt'])[r] - data['yt']) ** 2))
    np.testing.assert_allclose(rmse, losses.min(), rtol=1e-10)


def test_leverage_scores_favour_isolated_points():
  rng = np.random.RandomState(0)
  dense = 0.05 * rng.randn(300, 2)
  far = rng.randn(5, 2) * 0.3 + 4.
  x = np.concatenate([dense, far])
  y = np.sin(x[:, :1])
  kernel_fn = _arch(1.5, 0.05)[2]
  counts = {'uniform': 0, 'leverage': 0}
  for seed in range(5):
    for how in counts:
      fit = nystrom_sweep(y, 1e-3, kernel_fn=kernel_fn, x_train=x,
                          n_centres=10, centres=how, seed=seed)
      assert len(set(fit.centres.tolist())) == 10
      counts[how] += int(np.sum(fit.centres >= 300))
  assert counts['leverage'] >= 3 * max(counts['uniform'], 1), counts


def test_float32_inputs_and_int_labels(data):
  x = data['x'].astype(np.float32)
  labels = (data['y'][:, 0] > 0).astype(np.int64) + 2 * (
      data['y'][:, 1] > 0)
  fit = nystrom_sweep(labels, 1e-2, kernel_fn=data['kernel_fn'], x_train=x,
                      n_centres=M, batch_size=64)
  assert fit.targets.task == 'classification'
  assert fit.alpha.shape == (1, M, 4)
  accuracy = np.mean(np.argmax(fit.predict(x)[0], 1) == labels)
  assert accuracy > 0.6


def test_bad_input(data):
  common = dict(kernel_fn=data['kernel_fn'], x_train=data['x'])
  with pytest.raises(ValueError, match='has 239 rows but the training set '
                     'has 240'):
    nystrom_sweep(data['y'][:-1], 0.1, n_centres=M, **common)
  with pytest.raises(ValueError, match='non-negative'):
    nystrom_sweep(data['y'], [0.1, -0.1], n_centres=M, **common)
  with pytest.raises(ValueError, match='n_centres'):
    nystrom_sweep(data['y'], 0.1, **common)
  with pytest.raises(ValueError, match='positive int'):
    nystrom_sweep(data['y'], 0.1, n_centres=0, **common)
  with pytest.raises(ValueError, match='distinct indices'):
    nystrom_sweep(data['y'], 0.1, centres=np.array([1, 1, 2]), **common)
  with pytest.raises(ValueError, match='either `kernel_fn`'):
    nystrom_sweep(data['y'], 0.1, k_train_centres=np.ones((N, 3)),
                  k_centres_centres=np.eye(3), **common)
  with pytest.raises(ValueError, match='k_train_centres has 3 columns but '
                     'k_centres_centres has 4 centres'):
    nystrom_sweep(data['y'], 0.1, k_train_centres=np.ones((N, 3)),
                  k_centres_centres=np.eye(4), diag_reg_absolute_scale=True)
  with pytest.raises(NotImplementedError, match='diagonal'):
    nystrom_sweep(data['y'], 0.1, k_train_centres=np.ones((N, 3)),
                  k_centres_centres=np.eye(3))
  with pytest.raises(ValueError, match='validation'):
    nystrom_sweep(data['y'], 0.1, n_centres=M, validation=data['xt'],
                  **common)
  with pytest.raises(MemoryLimitError, match='too small for a Nyström solve'):
    nystrom_sweep(data['y'], 0.1, n_centres=M, memory_limit='1M', **common)
