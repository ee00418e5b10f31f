"""Regenerates tests/golden/empirical.npz: neural-tangents 0.6.5 empirical
NNGP/NTK for the networks of tests/parity/empirical_suite.py, with the inputs
and parameters they were computed from.

Usage: python tools/make_golden_empirical.py   (needs the reference env of
tools/reference_env.sh or NT_REFERENCE_PYTHON).
"""
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.parity import empirical_harness  # pylint: disable=g-import-not-at-top


def main():
  ref, inputs = empirical_harness.run_reference()
  errors = [k for k in ref if k.endswith('/error')]
  for k in errors:
    print(f'{k}:\n{ref[k]}')
  empirical_harness.GOLDEN_FILE.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(empirical_harness.GOLDEN_FILE, **ref, **inputs)
  print(f'{empirical_harness.GOLDEN_FILE}: {len(ref)} kernels, '
        f'{len(errors)} errors')
  return 1 if errors else 0


if __name__ == '__main__':
  sys.exit(main())
