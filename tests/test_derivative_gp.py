"""The derivative-GP tutorial (docs/tutorials/derivative_gp.py): a GP on
function values and slopes with an NNGP kernel, whose posterior equals the
one built from neural-tangents' kernel and jax derivatives.

Reference values are in tests/golden/derivative_gp.npz (made by
tools/make_golden_second_derivatives.py); when the reference env exists
(required on CI) they are also recomputed live.
"""
import functools
import os
import pathlib
import re
import runpy
import subprocess
import sys

import numpy as np

from tests.parity import harness
from tests.second_order import reference

ROOT = pathlib.Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / 'docs' / 'tutorials' / 'derivative_gp.py'
GOLDEN = harness.GOLDEN / 'derivative_gp.npz'


@functools.lru_cache(maxsize=None)
def tutorial():
  return runpy.run_path(str(TUTORIAL))


@functools.lru_cache(maxsize=None)
def golden():
  with np.load(GOLDEN) as f:
    return {k: f[k] for k in f.files}


@functools.lru_cache(maxsize=None)
def ours():
  g, tut = golden(), tutorial()
  w_std, b_std, noise = g['theta']
  kernel_fn = tut['network'](w_std, b_std)[2]
  out = {}
  for tag, use_slopes in (('values', False), ('slopes', True)):
    mean, var = tut['posterior'](kernel_fn, g['x'], g['y'], g['dy'], g['t'],
                                 noise=noise, use_slopes=use_slopes)
    out[f'{tag}/mean'], out[f'{tag}/var'] = mean, var
  return out


def assert_posteriors_match(got, reference):
  for key, value in got.items():
    ref = reference[key]
    scale = np.max(np.abs(ref))
    rel = np.max(np.abs(value - ref) / np.maximum(np.abs(ref), 1e-3 * scale))
    assert rel <= 1e-7, f'{key}: relative error {rel:.3g}'


def test_golden_data_is_the_tutorial_data():
  x, y, dy = tutorial()['data']()
  g = golden()
  np.testing.assert_array_equal(g['x'], x)
  np.testing.assert_array_equal(g['y'], y)
  np.testing.assert_array_equal(g['dy'], dy)
  assert list(g['theta']) == [tutorial()[k] for k in ('W_STD', 'B_STD',
                                                      'NOISE')]


def test_posterior_matches_neural_tangents_golden():
  assert_posteriors_match(ours(), golden())
  # The slopes carry information: the posterior with them is different and
  # tighter.
  got = ours()
  assert np.max(np.abs(got['slopes/mean'] - got['values/mean'])) > 0.1
  assert np.mean(got['slopes/var']) < 0.5 * np.mean(got['values/var'])


def test_posterior_matches_neural_tangents_live():
  reference.require_live()
  assert_posteriors_match(ours(),
                          reference.tool().run_derivative_gp_reference())


def test_documentation_embeds_the_figure():
  page = (ROOT / 'docs' / 'tutorials' / 'derivative_gp.md').read_text()
  assert '(img/derivative_gp.png)' in page
  png = ROOT / 'docs' / 'tutorials' / 'img' / 'derivative_gp.png'
  assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_tutorial_script_runs(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', MPLBACKEND='Agg')
  proc = subprocess.run(
      [sys.executable, str(TUTORIAL), '--quick', '--out', str(tmp_path)],
      capture_output=True, text=True, timeout=600, env=env,
      cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  assert (tmp_path / 'derivative_gp.png').read_bytes()[:8] == (
      b'\x89PNG\r\n\x1a\n')
  rmse = dict(re.findall(r'^(values only|values and slopes)\s+posterior '
                         r'mean: RMSE to sin\(2x\) on \[-2, 2\] ([\d.]+)',
                         proc.stdout, re.M))
  assert len(rmse) == 2, proc.stdout
  # Slopes at the same five points pin sin(2x) down much better.
  assert float(rmse['values and slopes']) < 0.5 * float(rmse['values only'])
