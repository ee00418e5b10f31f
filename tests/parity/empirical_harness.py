"""Empirical-kernel parity with neural-tangents: inputs, parameters, runner.

Inputs and parameters are drawn with numpy from the case name (so the golden
file and a live reference run see the same numbers); the reference runs
`nt_empirical_runner.py` in the neural-tangents virtualenv as a subprocess.
"""
import os
import pathlib
import runpy
import shutil
import subprocess
import tempfile
import zlib

import numpy as np

from tests.parity import harness
from tests.parity import tolerances

SUITE_FILE = pathlib.Path(__file__).with_name('empirical_suite.py')
RUNNER = pathlib.Path(__file__).with_name('nt_empirical_runner.py')
GOLDEN_FILE = harness.GOLDEN / 'empirical.npz'

RTOL = tolerances.EMPIRICAL


def load_suite():
  mod = runpy.run_path(str(SUITE_FILE))
  return mod['SUITE'], mod['OPTIONS']


def _rng(name, salt):
  return np.random.RandomState(zlib.crc32(f'{name}/{salt}'.encode()) % 2**31)


def make_inputs(case):
  rng = _rng(case['name'], 'x')
  shape = tuple(case['shape'])
  return rng.randn(*shape), rng.randn(case.get('n2', 3), *shape[1:])


def make_params(case):
  """Float64 parameter leaves for the shapes of nt_gp's `init_fn`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  init_fn = eval(case['net'], {'stax': stax, 'np': np})[0]  # pylint: disable=eval-used
  _, params = init_fn(0, tuple(case['shape']))
  leaves = [l for l in tf.nest.flatten(params) if l is not None]
  rng = _rng(case['name'], 'params')
  return [rng.randn(*l.shape) for l in leaves]


def suite_inputs(suite):
  out = {}
  for case in suite:
    x1, x2 = make_inputs(case)
    out[f'{case["name"]}/x1'], out[f'{case["name"]}/x2'] = x1, x2
    for i, p in enumerate(make_params(case)):
      out[f'{case["name"]}/param/{i}'] = p
  return out


def run_reference(python=None, timeout=1200):
  python = python or harness.reference_python()
  if python is None:
    raise RuntimeError('neural-tangents reference env not found: run '
                       'tools/reference_env.sh or set NT_REFERENCE_PYTHON.')
  suite, _ = load_suite()
  inputs = suite_inputs(suite)
  tmp = tempfile.mkdtemp(prefix='nt_emp_')
  try:
    inp, out = os.path.join(tmp, 'in.npz'), os.path.join(tmp, 'out.npz')
    np.savez(inp, **inputs)
    env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
    proc = subprocess.run([python, str(RUNNER), str(SUITE_FILE), inp, out],
                          capture_output=True, text=True, timeout=timeout,
                          env=env)
    if proc.returncode != 0:
      raise RuntimeError(f'reference runner failed:\n{proc.stderr[-4000:]}')
    with np.load(out) as f:
      return {k: f[k] for k in f.files}, inputs
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def load_golden():
  with np.load(GOLDEN_FILE) as f:
    return {k: f[k] for k in f.files}


def assert_close(ours, ref, what, rtol=RTOL):
  assert ours.shape == ref.shape, (what, ours.shape, ref.shape)
  scale = max(float(np.max(np.abs(ref))), 1e-300)
  err = float(np.max(np.abs(ours - ref))) / scale
  assert err <= rtol, f'{what}: relative error {err:.3g} > {rtol:g}'
