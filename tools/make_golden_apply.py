"""Regenerates tests/golden/<suite>_apply.npz (finite-width `apply_fn` parity).

For the `APPLY_SUITE` of tests/parity/suite_<suite>.py, stores the inputs and
nt_gp's initial parameters together with neural-tangents 0.6.5's `apply_fn`
outputs for those parameters (see tests/parity/apply_harness.py).

Usage: python tools/make_golden_apply.py SUITE [SUITE ...]
Needs the reference env (tools/reference_env.sh) or NT_REFERENCE_PYTHON.
"""
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.parity import apply_harness  # pylint: disable=g-import-not-at-top
from tests.parity import harness  # pylint: disable=g-import-not-at-top


def main(names):
  if not names:
    raise SystemExit(__doc__)
  for name in names:
    suite_file = ROOT / 'tests' / 'parity' / f'suite_{name}.py'
    suite = apply_harness.load_apply_suite(suite_file)
    if not suite:
      raise SystemExit(f'{suite_file} has no APPLY_SUITE.')
    data = apply_harness.suite_data(suite)
    ref = apply_harness.run_reference(suite_file, data)
    errors = [k for k in ref if k.endswith('/error')]
    for k in errors:
      print(f'{k}:\n{ref[k]}')
    harness.GOLDEN.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(harness.GOLDEN / f'{name}_apply.npz', **ref, **data)
    print(f'{name}_apply: {len(ref)} arrays, {len(errors)} errors')


if __name__ == '__main__':
  main(sys.argv[1:])
