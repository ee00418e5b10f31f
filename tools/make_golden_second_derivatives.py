"""Regenerates tests/golden/second_derivatives.npz and derivative_gp.npz
from neural-tangents 0.6.5.

Usage: python tools/make_golden_second_derivatives.py

Runs tests/second_order/nt_runner.py (jax.hessian, jax.jacfwd(jax.grad)) on
the inputs of tests/second_order/cases.py, and nt_derivative_gp_runner.py on
the data of docs/tutorials/derivative_gp.py, in the reference env
(tools/reference_env.sh, or NT_REFERENCE_PYTHON), and stores their outputs
with the inputs.
"""
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.parity import harness  # pylint: disable=g-import-not-at-top
from tests.second_order import cases  # pylint: disable=g-import-not-at-top

CASES_FILE = ROOT / 'tests' / 'second_order' / 'cases.py'
RUNNER = ROOT / 'tests' / 'second_order' / 'nt_runner.py'
GOLDEN = harness.GOLDEN / 'second_derivatives.npz'
GP_RUNNER = ROOT / 'tests' / 'second_order' / 'nt_derivative_gp_runner.py'
GP_GOLDEN = harness.GOLDEN / 'derivative_gp.npz'


def _python():
  python = harness.reference_python()
  if python is None:
    raise RuntimeError('neural-tangents reference env not found: run '
                       'tools/reference_env.sh or set NT_REFERENCE_PYTHON.')
  return python


def run_reference(timeout=3600):
  """`{'<case>/<get>/<quantity>': array}` computed by neural-tangents."""
  return harness.run_reference_script(_python(), RUNNER, cases.suite_inputs(),
                                      timeout, args=(CASES_FILE,))


def derivative_gp_inputs():
  """Data and test points of the tutorial (its non-quick grid)."""
  import runpy  # pylint: disable=g-import-not-at-top
  tutorial = runpy.run_path(str(ROOT / 'docs' / 'tutorials' /
                                'derivative_gp.py'))
  x, y, dy = tutorial['data']()
  return {'x': x, 'y': y, 'dy': dy, 't': np.linspace(-2.5, 2.5, 41),
          'theta': np.array([tutorial['W_STD'], tutorial['B_STD'],
                             tutorial['NOISE']])}


def run_derivative_gp_reference(timeout=1800):
  """The derivative-GP posterior computed with neural-tangents and jax."""
  return harness.run_reference_script(_python(), GP_RUNNER,
                                      derivative_gp_inputs(), timeout)


def save(reference, path=GOLDEN):
  errors = [k for k in reference if k.endswith('/error')]
  for k in errors:
    print(f'{k}:\n{reference[k]}')
  np.savez_compressed(path, **reference, **cases.suite_inputs())
  print(f'{path.name}: {len(reference)} arrays, {len(errors)} errors')


if __name__ == '__main__':
  save(run_reference())
  gp = run_derivative_gp_reference()
  np.savez_compressed(GP_GOLDEN, **gp, **derivative_gp_inputs())
  print(f'{GP_GOLDEN.name}: {len(gp)} arrays')
