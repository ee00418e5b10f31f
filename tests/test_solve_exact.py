"""Exact GP solves over a list of regularisers, in memory and out of core,
against scipy.linalg on the same kernel; bad inputs end in clear errors."""
import os

import numpy as np
import pytest
import scipy.linalg

from nt_gp import stax
from nt_gp.distributed import LocalRunner, compute_kernel
from nt_gp.solve import (MemoryLimitError, NotPositiveDefiniteError,
                         PanelFile, PanelFileError, PanelFileMismatchError,
                         exact_sweep)
from nt_gp.solve.memory import MARGIN_BYTES, current_rss
from nt_gp.solve.records import EvalSet
from nt_gp.solve.sources import ArraySource
from nt_gp.solve import tiled
from nt_gp.store import KernelStore

REGS = [1e-3, 1e-2, 0.1]
N_TRAIN, N_TEST = 600, 90


def _mlp():
  return stax.serial(stax.Dense(1, 1.5, 0.05), stax.Relu(),
                     stax.Dense(1, 1.5, 0.05), stax.Relu(),
                     stax.Dense(1, 1.5, 0.05))[2]


@pytest.fixture(scope='module')
def problem(tmp_path_factory):
  """Stores of k(train, train), k(test, train), k(test, test) of a ReLU MLP
  (float64), their arrays, and regression targets of a known function."""
  d = tmp_path_factory.mktemp('stores')
  rng = np.random.RandomState(0)
  x = rng.randn(N_TRAIN + N_TEST, 4)
  x_train, x_test = x[:N_TRAIN], x[N_TRAIN:]
  y = np.stack([np.sin(x_train[:, 0]), x_train[:, 1] * x_train[:, 2]], 1)
  y = y + 0.1 * rng.randn(*y.shape)
  kernel_fn = _mlp()
  paths = {}
  for name, a, b, bs in (('train', x_train, None, 120),
                         ('test', x_test, x_train, 30),
                         ('testtest', x_test, None, 30)):
    paths[name] = str(d / f'{name}.h5')
    compute_kernel(kernel_fn, a, b, out=paths[name], arch='mlp', get='nngp',
                   batch_size=bs, runner=LocalRunner(1), progress=False)
  k = kernel_fn(x_train, None, 'nngp').numpy()
  k_test = kernel_fn(x_test, x_train, 'nngp').numpy()
  k_tt = np.diag(kernel_fn(x_test, None, 'nngp').numpy())
  return dict(paths=paths, k=k, k_test=k_test, k_tt=k_tt, y=y, x=x,
              dir=d, kernel_fn=kernel_fn)


def scipy_reference(k, k_test, k_tt, y, reg):
  """Means, variances and log marginal likelihood with scipy.linalg."""
  a = k + reg * np.eye(len(k))
  lower = scipy.linalg.cholesky(a, lower=True)
  alpha = scipy.linalg.cho_solve((lower, True), y)
  v = scipy.linalg.solve_triangular(lower, k_test.T, lower=True)
  sign, logdet = np.linalg.slogdet(a)
  assert sign > 0
  lml = (-0.5 * np.sum(y * alpha) - 0.5 * y.shape[1] * logdet
         - 0.5 * y.size * np.log(2 * np.pi))
  return k_test @ alpha, k_tt - np.sum(v ** 2, 0), lml, alpha


def _assert_matches(out, problem, regs_abs, rtol=1e-10):
  for i, reg in enumerate(regs_abs):
    mean, var, lml, alpha = scipy_reference(problem['k'], problem['k_test'],
                                            problem['k_tt'], problem['y'], reg)
    np.testing.assert_allclose(out.mean['test'][i], mean, rtol=rtol,
                               atol=rtol * np.abs(mean).max())
    np.testing.assert_allclose(out.variance['test'][i], var, rtol=0,
                               atol=rtol * problem['k_tt'].max())
    np.testing.assert_allclose(out.log_marginal_likelihood[i], lml, rtol=rtol)
    np.testing.assert_allclose(out.alpha[i], alpha, rtol=rtol,
                               atol=rtol * np.abs(alpha).max())


def _limit_below(nbytes):
  """A process-wide memory limit leaving `nbytes` for the solver's buffers."""
  return current_rss() + MARGIN_BYTES + nbytes


def test_out_of_core_from_stores_equals_scipy(problem, tmp_path):
  """Memory for the solver: 1/8 of the kernel; every reg of the list."""
  p = problem['paths']
  kernel_bytes = N_TRAIN * N_TRAIN * 8
  lines = []
  out = exact_sweep(p['train'], problem['y'], REGS,
                    eval_sets={'test': (p['test'], p['testtest'])},
                    memory_limit=_limit_below(kernel_bytes // 8),
                    work_dir=tmp_path / 'work', log=lines.append)
  assert out.method == 'tiled'
  assert any('panels of' in line for line in lines)
  n_panels = int(next(l for l in lines if 'panels of' in l).split(
      'Cholesky of')[1].split(',')[1].split()[0])
  assert n_panels >= 8
  mean_diag = np.mean(np.diag(problem['k']))
  np.testing.assert_allclose(out.reg, np.array(REGS) * mean_diag, rtol=1e-12)
  _assert_matches(out, problem, out.reg)
  # Finished values are recorded and panel files deleted.
  files = sorted(os.listdir(tmp_path / 'work'))
  assert len(files) == 3 and all(f.startswith('result-') for f in files)
  again = []
  out2 = exact_sweep(p['train'], problem['y'], REGS,
                     eval_sets={'test': (p['test'], p['testtest'])},
                     memory_limit=_limit_below(kernel_bytes // 8),
                     work_dir=tmp_path / 'work', log=again.append)
  assert sum('already solved' in line for line in again) == 3
  np.testing.assert_array_equal(out2.mean['test'], out.mean['test'])


@pytest.mark.parametrize('method', ['cholesky', 'eigh', 'tiled'])
def test_methods_equal_scipy_with_arrays(problem, method):
  out = exact_sweep(problem['k'], problem['y'], REGS,
                    eval_sets={'test': (problem['k_test'], problem['k_tt'])},
                    method=method)
  assert out.method == method
  _assert_matches(out, problem, out.reg, rtol=1e-9 if method == 'eigh'
                  else 1e-10)


def test_absolute_scale_and_float32_store(problem, tmp_path):
  """A float32 store solved in float64 equals scipy on the float32 kernel."""
  rng = np.random.RandomState(1)
  x = rng.randn(80, 3).astype(np.float32)
  path = str(tmp_path / 'k32.h5')
  compute_kernel(problem['kernel_fn'], x, out=path, arch='mlp', get='nngp',
                 batch_size=20, runner=LocalRunner(1), progress=False)
  with KernelStore.open(path) as store:
    k32 = store.read('nngp')
  assert k32.dtype == np.float32
  y = np.cos(x[:, :1]).astype(np.float64)
  out = exact_sweep(path, y, [0.05, 0.5], diag_reg_absolute_scale=True,
                    eval_sets={'train': path})
  for i, reg in enumerate([0.05, 0.5]):
    want = k32.astype(np.float64) @ np.linalg.solve(
        k32.astype(np.float64) + reg * np.eye(80), y)
    np.testing.assert_allclose(out.mean['train'][i], want, rtol=1e-10,
                               atol=1e-12)
  single = exact_sweep(k32, y, 0.05, diag_reg_absolute_scale=True,
                       dtype='float32', eval_sets={'train': k32})
  np.testing.assert_allclose(single.mean['train'][0], out.mean['train'][0],
                             atol=2e-3)


def test_factor_resumes_from_recorded_panels(problem, tmp_path):
  """Panels recorded before an interruption are not recomputed; a corrupted
  recorded panel is detected; a file made for another reg is refused."""
  k = problem['k']
  plan = tiled.PanelPlan.fixed(N_TRAIN, 64)
  path = str(tmp_path / 'f.h5')
  calls = []

  class Stop(Exception):
    pass

  def log(line):
    calls.append(line)
    if len(calls) == 4:
      raise Stop()

  with pytest.raises(Stop):
    tiled.factor(ArraySource(k, 'k'), 0.1, path, plan, log=log)
  with PanelFile.open(path, verify=True) as pf:
    assert pf.n_done == 4
  lines = []
  pf = tiled.factor(ArraySource(k, 'k'), 0.1, path, plan, log=lines.append)
  assert lines[0].endswith('4 of 10 panels done')
  assert len(lines) == 1 + 6
  np.testing.assert_allclose(tiled.assemble(pf), np.linalg.cholesky(
      k + 0.1 * np.eye(N_TRAIN)), rtol=1e-10, atol=1e-12)
  pf.close()
  with pytest.raises(PanelFileMismatchError, match='reg'):
    tiled.factor(ArraySource(k, 'k'), 0.2, path, plan)
  before = open(path, 'rb').read()
  with PanelFile.open(path, verify=False) as pf:
    ds = pf._f['panel_2']          # flip bytes of a recorded panel
    ds[5, 3] = ds[5, 3] + 1.
  with pytest.raises(PanelFileError, match='panel 2 .*checksum'):
    tiled.factor(ArraySource(k, 'k'), 0.1, path, plan)
  assert len(open(path, 'rb').read()) == len(before)


# ----------------------------------------------------------------------------
# Bad input.
# ----------------------------------------------------------------------------
def test_label_count_must_match_the_store(problem):
  with pytest.raises(ValueError, match=r'`y_train` has 599 rows but .*'
                     r'train.h5.* has 600 training points'):
    exact_sweep(problem['paths']['train'], problem['y'][:-1], 0.1)


def test_store_for_other_inputs_is_refused(problem, tmp_path):
  rng = np.random.RandomState(5)
  other = str(tmp_path / 'other.h5')
  compute_kernel(problem['kernel_fn'], rng.randn(N_TEST, 4),
                 rng.randn(N_TRAIN, 4), out=other, arch='mlp',
                 batch_size=30, runner=LocalRunner(1), progress=False)
  before = os.path.getsize(other), os.path.getmtime(other)
  with pytest.raises(ValueError, match='computed for other inputs'):
    exact_sweep(problem['paths']['train'], problem['y'], 0.1,
                eval_sets={'test': other})
  assert (os.path.getsize(other), os.path.getmtime(other)) == before
  arch = str(tmp_path / 'arch.h5')
  compute_kernel(problem['kernel_fn'], problem['x'][N_TRAIN:],
                 problem['x'][:N_TRAIN], out=arch, arch='another-mlp',
                 batch_size=30, runner=LocalRunner(1), progress=False)
  with pytest.raises(ValueError, match='different architectures'):
    exact_sweep(problem['paths']['train'], problem['y'], 0.1,
                eval_sets={'test': arch})
  with pytest.raises(ValueError, match='must be square'):
    exact_sweep(problem['paths']['test'], problem['y'][:N_TEST], 0.1)
  square = str(tmp_path / 'square.h5')
  compute_kernel(problem['kernel_fn'], rng.randn(N_TEST, 4),
                 rng.randn(N_TEST, 4), out=square, arch='mlp', batch_size=30,
                 runner=LocalRunner(1), progress=False)
  with pytest.raises(ValueError, match='training kernel must be that of the '
                     'training inputs with themselves'):
    exact_sweep(square, problem['y'][:N_TEST], 0.1)


@pytest.mark.parametrize('reg, match', [
    (-0.1, 'non-negative'), ([0.1, -1e-3], 'non-negative'),
    ([], 'empty'), (float('nan'), 'finite'), ([0.1, 0.1], 'twice'),
    ('0.1', 'numbers')])
def test_bad_regularisers(problem, reg, match):
  with pytest.raises((ValueError, TypeError), match=match):
    exact_sweep(problem['k'], problem['y'], reg)


def test_memory_limit_too_small_for_one_tile(problem, tmp_path):
  with pytest.raises(MemoryLimitError, match='too small for one panel of 32 '
                     'columns.*raise the limit to at least'):
    exact_sweep(problem['paths']['train'], problem['y'], 0.1,
                memory_limit=_limit_below(1000), work_dir=tmp_path / 'w')
  assert not os.listdir(tmp_path / 'w')
  with pytest.raises(MemoryLimitError, match='too small'):
    exact_sweep(problem['k'], problem['y'], 0.1, memory_limit='10M')


def test_not_positive_definite_names_the_value(problem):
  x = np.random.RandomState(0).randn(40, 2)
  k = x @ x.T                                # rank 2
  for method in ('cholesky', 'eigh', 'tiled'):
    with pytest.raises(NotPositiveDefiniteError, match='plus 0 on the '
                       'diagonal is not positive definite'):
      exact_sweep(k, np.ones(40), [0.], method=method)


def test_relative_reg_of_a_kernel_without_positive_variances(problem):
  """A "kernel" whose mean diagonal is <= 0 (here the negated NNGP) is not
  a training kernel; a relative diag_reg would subtract from it. A
  ValueError says so, and absolute values still run into the
  not-positive-definite error that names them."""
  with pytest.raises(ValueError, match=r'mean of the kernel.s diagonal is '
                     r'-[0-9.]+ <= 0.*diag_reg_absolute_scale=True'):
    exact_sweep(-problem['k'], problem['y'], [1e-3])
  with pytest.raises(ValueError, match=r'diagonal is 0 <= 0'):
    exact_sweep(np.zeros((4, 4)), np.ones(4), [1e-3])
  with pytest.raises(NotPositiveDefiniteError, match='plus 0.001 on the '
                     'diagonal'):
    exact_sweep(-problem['k'], problem['y'], [1e-3],
                diag_reg_absolute_scale=True)


def test_other_bad_inputs(problem, tmp_path):
  p = problem['paths']
  with pytest.raises(ValueError, match=r"holds \['nngp'\], not `ntk`"):
    exact_sweep(p['train'], problem['y'], 0.1, get='ntkgp')
  with pytest.raises(FileNotFoundError, match='no kernel store'):
    exact_sweep(str(tmp_path / 'missing.h5'), problem['y'], 0.1)
  with pytest.raises(ValueError, match='not symmetric'):
    exact_sweep(problem['k'] + np.triu(np.ones_like(problem['k']), 1) * 1e-3,
                problem['y'], 0.1)
  with pytest.raises(ValueError, match='non-finite'):
    exact_sweep(problem['k'], problem['y'] * np.nan, 0.1)
  with pytest.raises(ValueError, match='has 599 columns'):
    exact_sweep(problem['k'], problem['y'], 0.1,
                eval_sets={'test': problem['k_test'][:, :-1]})
  with pytest.raises(ValueError, match=r'\(90,\) diagonal'):
    exact_sweep(problem['k'], problem['y'], 0.1,
                eval_sets={'test': (problem['k_test'], np.ones(3))})
  with pytest.raises(NotImplementedError, match='ntkgp'):
    exact_sweep(problem['k'], problem['y'], 0.1, get='ntk',
                eval_sets={'test': (problem['k_test'], problem['k_tt'])})
  bad = problem['k'].copy()
  bad[3, 5] = bad[5, 3] = np.inf
  with pytest.raises(ValueError, match=r'non-finite entry at \(3, 5\)|'
                     r'non-finite entry at \(5, 3\)'):
    exact_sweep(bad, problem['y'], 0.1, method='tiled')
