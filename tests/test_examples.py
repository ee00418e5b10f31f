"""The examples run end to end at tiny sizes (`--quick`), print their figures
and save a valid PNG; their printed numbers show what each example is about
(the finite network follows its NTK / linearization; the infinite network
classifies digits)."""
import os
import pathlib
import re
import subprocess
import sys

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _run(name, tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', MPLBACKEND='Agg')
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'examples' / f'{name}.py'), '--quick',
       '--out', str(tmp_path)], capture_output=True, text=True, timeout=300,
      env=env, cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stderr[-3000:]
  png = tmp_path / f'{name}.png'
  assert png.read_bytes()[:8] == PNG_MAGIC
  image = plt.imread(str(png))
  assert image.shape[0] > 100 and image.shape[1] > 100
  assert f'figure: {png}' in proc.stdout
  return proc.stdout


def _number(pattern, text):
  match = re.search(pattern, text)
  assert match, (pattern, text)
  return [float(g) for g in match.groups()]


def test_infinite_fcn(tmp_path):
  out = _run('infinite_fcn', tmp_path)
  for get in ('NNGP', 'NTK'):
    loss, acc = _number(get + r'\s+t=inf: test loss ([\d.]+)\s+accuracy '
                        r'([\d.]+)', out)
    assert acc > 0.5 and loss < 0.05, out


def test_function_space(tmp_path):
  out = _run('function_space', tmp_path)
  gap, rms = _number(r'largest RMS gap between network and NTK test outputs: '
                     r'([\d.]+) \(outputs RMS ([\d.]+)\)', out)
  assert gap < 0.25 * rms, out
  assert re.search(r'^\s+50\s', out, re.M), out


def test_weight_space(tmp_path):
  out = _run('weight_space', tmp_path)
  (gap,) = _number(r'largest RMS output gap ([\d.]+)', out)
  assert gap < 0.1, out
  assert 'final test accuracy: network' in out
