"""Regenerates tests/golden/predict.npz from neural-tangents 0.6.5's `predict`.

Usage: python tools/make_golden_predict.py
Needs the reference env (tools/reference_env.sh) or NT_REFERENCE_PYTHON. The
cases are in tests/parity/predict_cases.py; the file stores the reference
results and the inputs they were computed from.
"""
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.parity import harness  # pylint: disable=g-import-not-at-top
from tests.parity import predict_cases  # pylint: disable=g-import-not-at-top

OUT = harness.GOLDEN / 'predict.npz'


def main():
  python = harness.reference_python()
  if python is None:
    raise SystemExit('neural-tangents reference env not found: run '
                     'tools/reference_env.sh or set NT_REFERENCE_PYTHON.')
  ref = predict_cases.run_reference(python)
  errors = [k for k in ref if k.endswith('/error')]
  for k in errors:
    print(f'{k}:\n{ref[k]}')
  if errors:
    raise SystemExit(f'{len(errors)} cases failed; golden file not written.')
  inputs = {f'inputs/{k}': v
            for k, v in predict_cases.all_inputs(predict_cases.CASES).items()}
  harness.GOLDEN.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(OUT, **ref, **inputs)
  print(f'{OUT}: {len(ref)} results from {len(predict_cases.CASES)} cases')


if __name__ == '__main__':
  main()
