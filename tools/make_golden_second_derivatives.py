"""Regenerates tests/golden/second_derivatives.npz from neural-tangents 0.6.5.

Usage: python tools/make_golden_second_derivatives.py

Runs tests/second_order/nt_runner.py (jax.hessian, jax.jacfwd(jax.grad)) in
the reference env (tools/reference_env.sh, or NT_REFERENCE_PYTHON) on the
inputs of tests/second_order/cases.py and stores its output with the inputs.
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


def run_reference(timeout=3600):
  """`{'<case>/<get>/<quantity>': array}` computed by neural-tangents."""
  python = harness.reference_python()
  if python is None:
    raise RuntimeError('neural-tangents reference env not found: run '
                       'tools/reference_env.sh or set NT_REFERENCE_PYTHON.')
  return harness.run_reference_script(python, RUNNER, cases.suite_inputs(),
                                      timeout, args=(CASES_FILE,))


def save(reference, path=GOLDEN):
  errors = [k for k in reference if k.endswith('/error')]
  for k in errors:
    print(f'{k}:\n{reference[k]}')
  np.savez_compressed(path, **reference, **cases.suite_inputs())
  print(f'{path.name}: {len(reference)} arrays, {len(errors)} errors')


if __name__ == '__main__':
  save(run_reference())
