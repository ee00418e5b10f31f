"""Live neural-tangents results shared by all test processes of a machine.

With `pytest -n 2` every worker would otherwise run the reference subprocess
of a suite itself. Results are stored once in the temporary directory, under
a file lock, keyed by everything they depend on: the suite file, the kind of
run, the inputs, the reference interpreter and its neural-tangents/jax
versions, and the runner scripts that produce them. Without the reference env
this defers to `live.require_reference` (a skip locally, a failure on CI).
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
# The scripts whose code shapes a reference result (run in the reference env,
# or preparing what it gets).
_RUNNER_SCRIPTS = ('nt_runner.py', 'nt_apply_runner.py', 'harness.py',
                   'apply_harness.py')
def cache_key(suite_file, kind, python, inputs=None) -> str:
  """Hex digest of everything a cached reference result depends on."""
  here = pathlib.Path(__file__).parent
  h = hashlib.sha256()
  for part in (pathlib.Path(suite_file).read_bytes(), kind.encode(),
               python.encode(), harness.reference_versions(python).encode()):
    h.update(hashlib.sha256(part).digest())
  for script in _RUNNER_SCRIPTS:
    h.update(hashlib.sha256((here / script).read_bytes()).digest())
  for name in sorted(inputs or {}):
    a = np.ascontiguousarray(inputs[name])
    h.update(f'{name}:{a.dtype.str}:{a.shape}'.encode())
    h.update(hashlib.sha256(a.tobytes()).digest())
  return h.hexdigest()[:24]


def reference(suite_file, kind='kernel', inputs=None):
  """`{key: array}` of the suite's reference run (`kind` 'kernel'/'apply';
  `inputs` for 'kernel': the arrays to run on, default freshly generated)."""
  python = live.require_reference()
  suite_file = pathlib.Path(suite_file)
  key = cache_key(suite_file, kind, python, inputs)
  cache = pathlib.Path(tempfile.gettempdir()) / f'nt_gp_parity_{os.getuid()}'
  cache.mkdir(exist_ok=True)
  path = cache / f'{suite_file.stem}_{kind}_{key}.npz'
  with open(cache / f'{path.name}.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      if not path.exists():
        kwargs = {} if inputs is None else {'inputs': inputs}
        out = _RUNNERS[kind](suite_file, **kwargs)
        tmp = path.with_suffix('.tmp.npz')
        np.savez(tmp, **out)
        os.replace(tmp, path)
      with np.load(path) as f:
        return {k: f[k] for k in f.files}
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
