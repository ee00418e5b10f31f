"""Live neural-tangents results shared by all test processes of a machine.

With `pytest -n 2` every worker would otherwise run the reference subprocess
of a suite itself. Results are stored once per (suite file contents, kind,
reference interpreter) in the temporary directory, under a file lock.
Without the reference env this defers to `live.reference_results` (a skip
locally, a failure on CI).
"""
import fcntl
import hashlib
import os
import pathlib
import tempfile

import numpy as np

from tests.parity import apply_harness
from tests.parity import harness
from tests.parity import live

_RUNNERS = {'kernel': harness.run_reference,
            'apply': apply_harness.run_reference}


def reference(suite_file, kind='kernel'):
  """`{key: array}` of the suite's reference run (`kind` 'kernel'/'apply')."""
  python = harness.reference_python()
  if python is None:
    live.reference_results(suite_file)   # skips, or fails on CI
  suite_file = pathlib.Path(suite_file)
  key = hashlib.sha256(suite_file.read_bytes() + kind.encode() +
                       python.encode()).hexdigest()[:24]
  cache = pathlib.Path(tempfile.gettempdir()) / f'nt_gp_parity_{os.getuid()}'
  cache.mkdir(exist_ok=True)
  path = cache / f'{suite_file.stem}_{kind}_{key}.npz'
  with open(cache / f'{path.name}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      if not path.exists():
        out = _RUNNERS[kind](suite_file)
        tmp = path.with_suffix('.tmp.npz')
        np.savez(tmp, **out)
        os.replace(tmp, path)
      with np.load(path) as f:
        return {k: f[k] for k in f.files}
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
