"""Regenerates tests/golden/<suite>.npz from neural-tangents 0.6.5.

Usage: python tools/make_golden.py [SUITE ...]   (default: every suite in
tests/parity/suite_*.py). Needs the reference env (tools/reference_env.sh) or
NT_REFERENCE_PYTHON.
"""
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.parity import harness  # pylint: disable=g-import-not-at-top


def main(names):
  files = sorted((ROOT / 'tests' / 'parity').glob('suite_*.py'))
  for f in files:
    suite_name = f.stem[len('suite_'):]
    if names and suite_name not in names:
      continue
    ref = harness.run_reference(f)
    errors = [k for k in ref if k.endswith('/error')]
    for k in errors:
      print(f'{k}:\n{ref[k]}')
    harness.GOLDEN.mkdir(parents=True, exist_ok=True)
    inputs = harness.suite_inputs(harness.load_suite(f))
    np.savez_compressed(harness.GOLDEN / f'{suite_name}.npz', **ref, **inputs)
    print(f'{suite_name}: {len(ref)} arrays, {len(errors)} errors')


if __name__ == '__main__':
  main(sys.argv[1:])
