"""`nt-gp demo --quick` runs end to end as a user runs it.

Checks against independent baselines: digits accuracy of every model is far
above chance (10%; we require >= 70%, the infinite networks reach about 95%
on 200 training images) and every diabetes RMSE is below that of predicting
the training mean. The figures are valid PNG files that matplotlib reads.
"""
import csv
import os
import pathlib
import shutil
import subprocess
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
FIGURES = ('accuracy', 'rmse', 'kernels', 'regression', 'marginal_likelihood')
MIN_ACCURACY = 0.70


def _command():
  exe = shutil.which('nt-gp', path=str(pathlib.Path(sys.executable).parent))
  if exe:
    return [exe]
  return [sys.executable, '-m', 'nt_gp.cli']


def test_demo_quick(tmp_path):
  out = tmp_path / 'out'
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', MPLBACKEND='Agg')
  proc = subprocess.run(_command() + ['demo', '--quick', '--out', str(out)],
                        capture_output=True, text=True, timeout=600, env=env,
                        cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  # A progress bar moved (tqdm writes to stderr).
  assert 'Myrtle CNN train x train' in proc.stderr
  assert '100%' in proc.stderr

  with open(out / 'results.tsv') as f:
    rows = list(csv.DictReader(f, delimiter='\t'))
  acc = {r['model']: float(r['value']) for r in rows
         if r['metric'] == 'accuracy'}
  rmse = {r['model']: float(r['value']) for r in rows
          if r['metric'] == 'rmse'}
  for name in ('Myrtle CNN NNGP', 'Myrtle CNN NTK', 'MLP NNGP', 'MLP NTK',
               'MLP NNGP, learned W_std/b_std', 'RBF, learned'):
    assert acc[name] >= MIN_ACCURACY, (name, acc)
  baseline = rmse.pop('predict the mean')
  assert set(rmse) >= {'MLP NNGP', 'MLP NTK', 'MLP NNGP, learned W_std/b_std',
                       'RBF, learned'}
  for name, value in rmse.items():
    assert value < 0.9 * baseline, (name, value, baseline)
  # The printed table has the same numbers.
  assert f'{acc["Myrtle CNN NNGP"]:.3f}' in proc.stdout
  assert 'chance / predict the mean' in proc.stdout

  for name in FIGURES:
    png = out / f'{name}.png'
    assert png.read_bytes()[:8] == PNG_MAGIC, name
    image = plt.imread(str(png))
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 0.01, f'{name}.png is blank'
    assert f'figure: {png}' in proc.stdout


def test_demo_without_its_extras_says_what_to_install(monkeypatch, capsys):
  """Without scikit-learn or matplotlib (extras, not requirements) the
  command ends in one `error:` line naming what to install, before any
  work."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  from nt_gp import cli  # pylint: disable=g-import-not-at-top
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: (
      None if name == 'sklearn' else real(name, *a)))
  assert cli.main(['demo', '--quick', '--out', 'unused']) == 1
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('nt-gp demo: error:'), err
  assert 'scikit-learn' in err[0] and 'nt_gp[demo]' in err[0]
  assert 'matplotlib' not in err[0]
  assert not os.path.exists('unused')


def test_demo_from_python_without_its_extras_says_what_to_install(
    monkeypatch, tmp_path):
  """`nt_gp.demo.run()` and the data loaders called from Python without the
  extras raise an ImportError naming the packages and the extra, before any
  work (not a bare `No module named 'sklearn'` minutes in)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  import pytest  # pylint: disable=g-import-not-at-top
  from nt_gp import demo, extras  # pylint: disable=g-import-not-at-top
  real = importlib.util.find_spec
  hidden = {'matplotlib'}
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: (
      None if name in hidden else real(name, *a)))
  with pytest.raises(ImportError, match=r'matplotlib.*pip install "nt_gp\[demo\]"'):
    demo.run(quick=True, out_dir=str(tmp_path / 'out'), progress=False)
  assert not (tmp_path / 'out').exists()
  with pytest.raises(ImportError, match=r'pip install "nt_gp\[plots\]"'):
    demo.plots._pyplot()  # pylint: disable=protected-access
  hidden = {'sklearn'}
  with pytest.raises(ImportError, match=r'scikit-learn.*"nt_gp\[demo\]"'):
    demo.load_digits_images(10, 10)
  with pytest.raises(ImportError, match=r'scikit-learn'):
    demo.load_diabetes_split()
  assert extras.missing('plots') == []
  with pytest.raises(ValueError, match='unknown extra'):
    extras.missing('gpu')
