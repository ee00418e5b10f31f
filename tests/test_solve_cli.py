"""`nt-gp solve`: predictions and a diag_reg sweep from stores or inputs,
checked against scipy on the same kernels; user errors end in one line."""
import os
import pathlib
import re
import signal
import subprocess
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import pytest
import scipy.linalg
from sklearn.datasets import load_digits

from nt_gp import presets
from nt_gp.cli import main
from nt_gp.distributed import LocalRunner, compute_kernel
from nt_gp.solve.memory import current_rss
from nt_gp.store import KernelStore

ROOT = pathlib.Path(__file__).resolve().parents[1]
REGS = [1e-3, 1e-2, 1e-1]


@pytest.fixture(scope='module')
def digits(tmp_path_factory):
  """Digits 0-9: 300 train, 100 validation, 100 test; NNGP stores of the
  `fcn` preset (float64); labels as .npy."""
  d = tmp_path_factory.mktemp('digits')
  x, y = load_digits(return_X_y=True)
  x = (x / 16.).astype(np.float64)
  rng = np.random.RandomState(0)
  order = rng.permutation(len(x))[:500]
  x, y = x[order], y[order]
  parts = {'train': slice(0, 300), 'val': slice(300, 400),
           'test': slice(400, 500)}
  files = {}
  for name, s in parts.items():
    files[f'x_{name}'] = str(d / f'x_{name}.npy')
    files[f'y_{name}'] = str(d / f'y_{name}.npy')
    np.save(files[f'x_{name}'], x[s])
    np.save(files[f'y_{name}'], y[s])
  _, _, kernel_fn = presets.build('fcn')
  arch = presets.identity('fcn', {})
  for name, a, b in (('train', 'train', None), ('val', 'val', 'train'),
                     ('test', 'test', 'train'), ('testtest', 'test', None)):
    files[name] = str(d / f'{name}.h5')
    compute_kernel(kernel_fn, x[parts[a]], None if b is None else x[parts[b]],
                   out=files[name], arch=arch, batch_size=50,
                   runner=LocalRunner(1), progress=False)
  files['dir'] = d
  files['y'] = {k: y[s] for k, s in parts.items()}
  return files


def _scipy_sweep(files):
  """Accuracy and log marginal likelihood per reg with scipy.linalg."""
  with KernelStore.open(files['train']) as s:
    k = s.read()
  with KernelStore.open(files['test']) as s:
    kt = s.read()
  y = files['y']['train']
  onehot = (y[:, None] == np.arange(10)).astype(np.float64) - 0.1
  out = []
  for reg in REGS:
    a = k + reg * np.mean(np.diag(k)) * np.eye(len(k))
    low = scipy.linalg.cholesky(a, lower=True)
    alpha = scipy.linalg.cho_solve((low, True), onehot)
    acc = np.mean(np.argmax(kt @ alpha, 1) == files['y']['test'])
    lml = (-0.5 * np.sum(onehot * alpha) - 10 * np.sum(np.log(np.diag(low)))
           - 0.5 * onehot.size * np.log(2 * np.pi))
    out.append((acc, lml, kt @ alpha))
  return out


def _solve(args, capsys):
  code = main(['solve'] + args + ['--no-progress'])
  captured = capsys.readouterr()
  return code, captured.out, captured.err


def test_exact_from_stores(digits, capsys, tmp_path):
  out = tmp_path / 'out'
  code, stdout, stderr = _solve([
      '--train-kernel', digits['train'], '--test-kernel', digits['test'],
      '--val-kernel', digits['val'], '--test-test-kernel', digits['testtest'],
      '--y-train', digits['y_train'], '--y-test', digits['y_test'],
      '--y-val', digits['y_val'], '--reg', '1e-3,1e-2', '1e-1',
      # The limit bounds the whole process, and a test worker late in a run
      # already holds gigabytes of TensorFlow state: leave it 1 GiB more.
      '--memory-limit', str(current_rss() + 2 ** 30), '--variances',
      '--out', str(out)], capsys)
  assert code == 0, stderr
  assert sorted(os.listdir(out)) == ['predictions.npz', 'sweep.csv',
                                     'sweep.md', 'sweep.png']
  want = _scipy_sweep(digits)
  rows = [l for l in stdout.splitlines() if re.match(r'^[ *] \d', l)]
  assert len(rows) == 3
  for row, (acc, lml, _) in zip(rows, want):
    cells = row[2:].split()
    assert float(cells[3]) == pytest.approx(acc, abs=1e-4)     # test acc.
    assert float(cells[4]) == pytest.approx(lml, rel=1e-5)
    assert acc > 0.85
  pred = np.load(out / 'predictions.npz')
  assert pred['test_mean'].shape == (3, 100, 10)
  assert pred['test_variance'].shape == (3, 100)
  assert pred['classes'].tolist() == list(range(10))
  for i, (_, lml, mean) in enumerate(want):
    np.testing.assert_allclose(pred['test_mean'][i], mean, rtol=1e-9,
                               atol=1e-10)
    np.testing.assert_allclose(pred['log_marginal_likelihood'][i], lml,
                               rtol=1e-10)
  image = plt.imread(str(out / 'sweep.png'))
  assert image.shape[0] > 100 and image.shape[1] > 100
  assert (out / 'sweep.md').read_text().startswith(
      '| diag_reg | reg | val accuracy | test accuracy | log marginal '
      'likelihood |')


def test_exact_from_inputs_with_a_block_size_that_does_not_divide(
    capsys, tmp_path):
  """--batch-size need not divide the numbers of inputs (20 train, 9 test
  points in blocks of 7): the predictions equal scipy's on the kernels of
  `kernel_fn` itself."""
  rng = np.random.RandomState(3)
  x, xt, y = rng.randn(20, 5), rng.randn(9, 5), rng.randn(20)
  for name, a in (('x', x), ('xt', xt), ('y', y)):
    np.save(tmp_path / f'{name}.npy', a)
  out = tmp_path / 'out'
  code, _, stderr = _solve([
      '--x-train', str(tmp_path / 'x.npy'), '--x-test',
      str(tmp_path / 'xt.npy'), '--arch', 'fcn', '--y-train',
      str(tmp_path / 'y.npy'), '--reg', '1e-2', '--batch-size', '7',
      '--out', str(out)], capsys)
  assert code == 0, stderr
  _, _, kernel_fn = presets.build('fcn')
  k = kernel_fn(x, None, 'nngp').numpy()
  kt = kernel_fn(xt, x, 'nngp').numpy()
  a = k + 1e-2 * np.mean(np.diag(k)) * np.eye(20)
  want = kt @ scipy.linalg.solve(a, y, assume_a='pos')
  got = np.load(out / 'predictions.npz')['test_mean']
  np.testing.assert_allclose(got.reshape(-1), want, rtol=1e-8, atol=1e-10)


def test_without_matplotlib_the_tables_are_written_and_the_plot_is_not(
    digits, capsys, tmp_path, monkeypatch):
  """matplotlib is an extra (`nt_gp[plots]`): without it the sweep's tables
  and predictions are written, sweep.png is not, and the output says how to
  get it."""
  from nt_gp.solve import report  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(report, 'can_plot', lambda: False)
  out = tmp_path / 'out'
  code, stdout, stderr = _solve([
      '--train-kernel', digits['train'], '--test-kernel', digits['test'],
      '--y-train', digits['y_train'], '--y-test', digits['y_test'],
      '--reg', '1e-2', '--out', str(out)], capsys)
  assert code == 0, stderr
  assert sorted(os.listdir(out)) == ['predictions.npz', 'sweep.csv',
                                     'sweep.md']
  assert 'predictions.npz, sweep.csv, sweep.md\n' in stdout
  assert 'sweep.png not written: matplotlib is not installed' in stdout
  assert 'nt_gp[plots]' in stdout


def test_nystrom_from_inputs(digits, capsys, tmp_path):
  out = tmp_path / 'out'
  code, stdout, stderr = _solve([
      '--method', 'nystrom', '--x-train', digits['x_train'], '--x-test',
      digits['x_test'], '--x-val', digits['x_val'], '--arch', 'fcn',
      '--get', 'ntk', '--y-train', digits['y_train'], '--y-test',
      digits['y_test'], '--y-val', digits['y_val'], '--reg', '1e-3,1e-1',
      '--centres', '300', '--batch-size', '64', '--out', str(out)], capsys)
  assert code == 0, stderr
  assert 'CG iterations' in stdout
  pred = np.load(out / 'predictions.npz')
  assert pred['centres'].tolist() == list(range(300))
  accuracy = np.mean(np.argmax(pred['test_mean'], -1) ==
                     digits['y']['test'][None], axis=1)
  assert accuracy.max() > 0.85, accuracy


def test_nystrom_variances_and_likelihood_from_stores(digits, capsys,
                                                      tmp_path):
  """Every training point a centre (k(train, train) is also k(train,
  centres)): the Nyström GP is the exact GP, so its log marginal likelihood,
  means and variances are the exact solve's (itself checked against scipy)."""
  diag = str(tmp_path / 'diag.npy')
  with KernelStore.open(digits['train']) as s:
    np.save(diag, np.diag(s.read('nngp')))
  common = ['--train-kernel', digits['train'], '--test-kernel',
            digits['test'], '--test-test-kernel', digits['testtest'],
            '--y-train', digits['y_train'], '--y-test', digits['y_test'],
            '--reg', '1e-2,1e-1', '--variances', '--no-progress']
  code, _, stderr = _solve(common + ['--out', str(tmp_path / 'exact')],
                           capsys)
  assert code == 0, stderr
  code, stdout, stderr = _solve(common + [
      '--method', 'nystrom', '--centre-kernel', digits['train'],
      '--train-diag', diag, '--tol', '1e-12', '--max-iter', '300',
      '--out', str(tmp_path / 'nystrom')], capsys)
  assert code == 0, stderr
  assert 'Titsias bound' in stdout
  exact = np.load(tmp_path / 'exact' / 'predictions.npz')
  got = np.load(tmp_path / 'nystrom' / 'predictions.npz')
  # The second value is a sum of terms of size ~5e3 that nearly cancel:
  # 1e-6 absolute is 2e-10 of them.
  np.testing.assert_allclose(got['log_marginal_likelihood'],
                             exact['log_marginal_likelihood'], rtol=1e-8,
                             atol=1e-6)
  # Q_XX = K_XX: the bound is tight.
  np.testing.assert_allclose(got['elbo'], exact['log_marginal_likelihood'],
                             rtol=1e-8, atol=1e-6)
  np.testing.assert_allclose(got['test_variance'], exact['test_variance'],
                             rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(got['test_mean'], exact['test_mean'], rtol=1e-6,
                             atol=1e-6)
  header = (tmp_path / 'nystrom' / 'sweep.csv').read_text().splitlines()[0]
  assert header == ('diag_reg,reg,test accuracy,log marginal likelihood,'
                    'Titsias bound,CG iterations')


def _one_error_line(code, stderr, pattern):
  assert code == 1
  lines = [l for l in stderr.splitlines() if l.strip()]
  assert len(lines) == 1, stderr
  assert lines[0].startswith('nt-gp solve: error: '), stderr
  assert re.search(pattern, lines[0]), lines[0]


def test_bad_input_ends_in_one_error_line(digits, capsys, tmp_path):
  base = ['--train-kernel', digits['train'], '--test-kernel', digits['test'],
          '--y-train', digits['y_train'], '--reg', '1e-2']
  cases = [
      (['--y-train', digits['y_val']], r'`y_train` has 100 rows but .* has '
       r'300 training points'),
      (['--test-kernel', digits['testtest']], r'has 100 columns but .* 300'),
      (['--test-kernel', digits['val'], '--val-kernel', digits['testtest']],
       r'has 100 columns'),
      (['--reg=-1e-3'], r'--reg: diag_reg values must be >= 0'),
      (['--reg', '-1e-3'], r'--reg: diag_reg values must be >= 0 .*, got '
       r'-0.001$'),
      (['--reg', '1e-2,-1'], r'must be >= 0 .*, got -1$'),
      (['--reg', '-.5', '1'], r'must be >= 0 .*, got -0.5$'),
      (['--method', 'nystrom', '--centre-kernel', digits['train'],
        '--marginal-likelihood', '--reg-absolute', '--reg', '0,1e-2'],
       r'drop 0 from --reg'),
      (['--variances'], r'needs --test-test-kernel'),
      (['--marginal-likelihood'], r'is for --method nystrom'),
      (['--reg', 'x'], r"--reg: 'x' is not a number"),
      (['--memory-limit', '64M'], r'too small'),
      (['--memory-limit', 'lots'], r'--memory-limit: Cannot read'),
      (['--x-train', digits['x_train']], r'not both'),
      (['--method', 'nystrom'], r'needs --centre-kernel'),
      (['--method', 'nystrom', '--centre-kernel', digits['train']],
       r'needs --train-diag .* or absolute values with --reg-absolute'),
      (['--train-kernel', str(tmp_path / 'nope.h5')], r'no such file'),
  ]
  for i, (extra, pattern) in enumerate(cases):
    out = tmp_path / f'out{i}'
    code, _, stderr = _solve(base + extra + ['--out', str(out)], capsys)
    _one_error_line(code, stderr, pattern)
  # A store computed against other training inputs.
  other = str(tmp_path / 'other.h5')
  rng = np.random.RandomState(1)
  _, _, kernel_fn = presets.build('fcn')
  compute_kernel(kernel_fn, rng.randn(100, 64), rng.randn(300, 64),
                 out=other, arch=presets.identity('fcn', {}), batch_size=50,
                 runner=LocalRunner(1), progress=False)
  code, _, stderr = _solve(base + ['--test-kernel', other, '--out',
                                   str(tmp_path / 'o')], capsys)
  _one_error_line(code, stderr, r'computed for other inputs')


def test_existing_output_is_never_overwritten(digits, capsys, tmp_path):
  args = ['--train-kernel', digits['train'], '--test-kernel', digits['test'],
          '--y-train', digits['y_train'], '--reg', '1e-2']
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'mine.txt').write_text('keep me')
  code, _, stderr = _solve(args + ['--out', str(out)], capsys)
  _one_error_line(code, stderr, r'already exists; choose a new --out')
  assert os.listdir(out) == ['mine.txt']
  code, _, _ = _solve(args + ['--out', str(tmp_path / 'done')], capsys)
  assert code == 0
  before = {f: (tmp_path / 'done' / f).read_bytes()
            for f in os.listdir(tmp_path / 'done')}
  code, _, stderr = _solve(args + ['--out', str(tmp_path / 'done'),
                                   '--resume'], capsys)
  _one_error_line(code, stderr, r'already holds results')
  after = {f: (tmp_path / 'done' / f).read_bytes()
           for f in os.listdir(tmp_path / 'done')}
  assert before == after


@pytest.fixture(scope='module')
def big_digits(tmp_path_factory):
  """1200 training and 100 test digits, stores as in `digits`."""
  d = tmp_path_factory.mktemp('big_digits')
  x, y = load_digits(return_X_y=True)
  x = (x / 16.).astype(np.float64)
  order = np.random.RandomState(1).permutation(len(x))
  parts = {'train': order[:1200], 'test': order[1200:1300]}
  files = {'y': {k: y[v] for k, v in parts.items()}}
  for name, idx in parts.items():
    files[f'y_{name}'] = str(d / f'y_{name}.npy')
    np.save(files[f'y_{name}'], y[idx])
  _, _, kernel_fn = presets.build('fcn')
  for name, a, b in (('train', 'train', None), ('test', 'test', 'train')):
    files[name] = str(d / f'{name}.h5')
    compute_kernel(kernel_fn, x[parts[a]], None if b is None else
                   x[parts[b]], out=files[name],
                   arch=presets.identity('fcn', {}), batch_size=100,
                   runner=LocalRunner(1), progress=False)
  return files


@pytest.mark.slow
def test_killed_command_resumes(big_digits, tmp_path):
  """SIGKILL during the out-of-core factorisation, then `--resume`: no
  traceback, the finished panels are kept, the numbers are scipy's."""
  files = big_digits
  out = tmp_path / 'out'
  cmd = [sys.executable, '-m', 'nt_gp.cli', 'solve', '--train-kernel',
         files['train'], '--test-kernel', files['test'], '--y-train',
         files['y_train'], '--y-test', files['y_test'], '--reg',
         ','.join(map(str, REGS)), '--out', str(out), '--no-progress']
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  # What the command's process holds before solving (the same imports),
  # plus ~2 MiB of buffers: the 11 MiB kernel is factored in panels.
  probe = subprocess.run(
      [sys.executable, '-c', 'import nt_gp.cli, nt_gp.solve;'
       'from nt_gp.solve.memory import current_rss; print(current_rss())'],
      capture_output=True, text=True, env=env, cwd=ROOT, check=True)
  limit = int(probe.stdout.split()[-1]) + 48 * 2 ** 20 + 2 * 2 ** 20
  cmd += ['--memory-limit', str(limit)]
  proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True, env=env, cwd=ROOT)
  panels, lines = 0, []
  for line in proc.stderr:
    lines.append(line)
    if line.startswith('panel'):
      panels += 1
      if panels == 3:
        proc.send_signal(signal.SIGKILL)
        break
  proc.wait()
  proc.stderr.close()
  proc.stdout.close()
  assert proc.returncode == -signal.SIGKILL, ''.join(lines[-10:])
  done = subprocess.run(cmd + ['--resume'], capture_output=True, text=True,
                        env=env, cwd=ROOT, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  assert 'Traceback' not in done.stderr
  assert re.search(r'resuming the factorisation .*: [3-9]\d* of \d+ panels '
                   r'done', done.stderr), done.stderr[-3000:]
  pred = np.load(out / 'predictions.npz')
  for i, (_, lml, mean) in enumerate(_scipy_sweep(files)):
    np.testing.assert_allclose(pred['test_mean'][i], mean, rtol=1e-9,
                               atol=1e-10)
    np.testing.assert_allclose(pred['log_marginal_likelihood'][i], lml,
                               rtol=1e-10)
  assert not os.path.exists(out / 'work')
