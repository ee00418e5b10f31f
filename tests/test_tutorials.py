"""The tutorial scripts in docs/tutorials/ run end to end (`--quick`) and
produce the figures the documentation embeds; their printed numbers are
checked against what each tutorial shows."""
import os
import pathlib
import re
import subprocess
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TUTORIALS = ROOT / 'docs' / 'tutorials'
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _run(name, tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', MPLBACKEND='Agg')
  proc = subprocess.run(
      [sys.executable, str(TUTORIALS / f'{name}.py'), '--quick', '--out',
       str(tmp_path)], capture_output=True, text=True, timeout=600, env=env,
      cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  png = tmp_path / f'{name}.png'
  assert png.read_bytes()[:8] == PNG_MAGIC
  image = plt.imread(str(png))
  assert image.shape[0] > 100 and image.shape[1] > 100
  assert f'figure: {png}' in proc.stdout
  return proc.stdout


@pytest.mark.parametrize('name', ['regression_1d', 'learning_curves',
                                  'phase_diagram'])
def test_documentation_embeds_the_figure(name):
  page = (TUTORIALS / f'{name}.md').read_text()
  assert f'(img/{name}.png)' in page
  png = TUTORIALS / 'img' / f'{name}.png'
  assert png.read_bytes()[:8] == PNG_MAGIC


def test_regression_1d(tmp_path):
  out = _run('regression_1d', tmp_path)
  gap, std = map(float, re.search(
      r'NTK mean at t ([\d.]+); mean NTK std at t ([\d.]+)', out).groups())
  # 4 networks of width 256: their mean is within a few NTK standard
  # deviations of the infinite-width prediction at the same training time.
  assert gap < 3 * std + 0.05, out
  for get in ('NNGP', 'NTK'):
    (rmse,) = map(float, re.search(get + r'\s+posterior mean: RMSE to '
                                   r'sin\(x\) ([\d.]+)', out).groups())
    assert rmse < 0.3, out       # sin(x) itself has RMS 0.7


def test_learning_curves(tmp_path):
  out = _run('learning_curves', tmp_path)
  rows = re.findall(r'^(NNGP|NTK)\s+(\d+)((?:\s+[\d.]+)+)$', out, re.M)
  assert len(rows) == 4, out
  for _, _, errors in rows:
    errors = [float(e) for e in errors.split()]
    assert errors[-1] < errors[0], out          # more data, fewer errors
    assert errors[-1] < 0.15, out               # chance is 0.9


def test_phase_diagram(tmp_path):
  out = _run('phase_diagram', tmp_path)
  critical = [float(w) for w in re.findall(r'W_std ~ ([\d.]+)', out)]
  assert len(critical) >= 2, out
  # The edge of chaos moves to larger W_std as b_std grows (Schoenholz et
  # al. 2017), and lies between 1 and 2 for b_std <= 1 with Erf.
  assert critical == sorted(critical), out
  assert all(1.0 < w < 2.0 for w in critical), out
