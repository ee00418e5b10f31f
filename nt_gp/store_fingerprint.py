"""What a kernel store was computed from, and the refusal to mix.

A store records two things about its computation:

* the *fingerprint*: SHA-256, shape and dtype of the inputs, the
  architecture's identity (a preset's name and arguments, or the SHA-256 of
  a ``.py`` architecture and of every local module it imports), `get`, the
  dtype and the block size. Resuming requires equality.
* the *probe*: the kernel of a few of the inputs as the architecture
  computed it when the store was made. Resuming recomputes it and requires
  agreement to the dtype's rounding, so a change of what the architecture
  computes is caught even where no file hash sees it (a helper imported
  lazily, a data file the code reads, another nt_gp version).

Example:
  >>> import numpy as np
  >>> fp = fingerprint(np.zeros((2, 3)), None, arch='fcn', get=('nngp',),
  ...                  dtype='float64', batch_size=1)
  >>> fp['x1']['shape'], fp['x2'], fp['get']
  ([2, 3], None, ['nngp'])
  >>> compare_fingerprints(fp, fp, 'k.h5')   # equal: no error
"""
import hashlib
import json
from typing import Dict, Optional, Sequence

import numpy as np

from nt_gp.store_errors import StoreMismatchError

__all__ = ['fingerprint', 'compare_fingerprints', 'make_probe',
           'compare_probes', 'PROBE_RTOL']

# Agreement required of a recomputed probe kernel (relative to its largest
# entry): rounding differences between machines and thread counts stay far
# below, a changed architecture far above.
PROBE_RTOL = {'float32': 1e-4, 'float64': 1e-9}


def _array_fingerprint(x) -> Optional[dict]:
  if x is None:
    return None
  if isinstance(x, (list, tuple)):
    return {'parts': [_array_fingerprint(a) for a in x]}
  a = np.ascontiguousarray(np.asarray(x))
  return {'sha256': hashlib.sha256(a.view(np.uint8).reshape(-1)).hexdigest(),
          'shape': list(a.shape), 'dtype': a.dtype.name}


def fingerprint(x1, x2=None, *, arch, get: Sequence[str], dtype: str,
                batch_size: int) -> dict:
  """What identifies a kernel computation, for storing and comparing.

  Args:
    x1: `(N1, ...)` inputs (numpy/TensorFlow; hashed as given, so cast them to
      the computation dtype first).
    x2: `(N2, ...)` inputs or None (symmetric kernel).
    arch: the architecture's identity: a JSON-serialisable value, e.g.
      ``{'preset': 'fcn', 'args': {...}}`` or ``{'file_sha256': ...,
      'sources': {...}}``.
    get: the stored quantities, e.g. ``('nngp', 'ntk')``.
    dtype: ``'float32'`` or ``'float64'``.
    batch_size: the block size.

  Returns:
    A JSON-serialisable dict.

  Example:
    >>> fp = fingerprint(np.ones((4, 2)), None, arch={'preset': 'fcn'},
    ...                  get=('ntk',), dtype='float32', batch_size=3)
    >>> fp['arch'], fp['batch_size']
    ({'preset': 'fcn'}, 3)
  """
  fp = {'x1': _array_fingerprint(x1), 'x2': _array_fingerprint(x2),
        'arch': arch, 'get': list(get), 'dtype': str(dtype),
        'batch_size': int(batch_size)}
  try:
    json.dumps(fp, sort_keys=True)
  except TypeError as e:
    raise TypeError(f'`arch` must be JSON-serialisable, got {arch!r}.') from e
  return json.loads(json.dumps(fp, sort_keys=True))


def _describe(key, v):
  if key in ('x1', 'x2') and isinstance(v, dict) and 'sha256' in v:
    return f'{v["dtype"]} {tuple(v["shape"])} sha256 {v["sha256"][:12]}…'
  return json.dumps(v, sort_keys=True)


def _source_changes(stored, wanted) -> Optional[str]:
  """'helper.py changed, new.py added' for two `.py` architecture identities
  with recorded sources; None if they are not both of that form."""
  if not (isinstance(stored, dict) and isinstance(wanted, dict) and
          'sources' in stored and 'sources' in wanted):
    return None
  old, new = stored['sources'], wanted['sources']
  parts = [f'{name} changed' for name in sorted(set(old) & set(new))
           if old[name] != new[name]]
  parts += [f'{name} is new' for name in sorted(set(new) - set(old))]
  parts += [f'{name} is no longer imported'
            for name in sorted(set(old) - set(new))]
  return ', '.join(parts) or None


def compare_fingerprints(stored: dict, wanted: dict, path: str):
  """Raises `StoreMismatchError` naming every difference (one line).

  Example:
    >>> a = {'arch': 'fcn', 'batch_size': 2}
    >>> compare_fingerprints(a, dict(a, batch_size=4), 'k.h5')
    Traceback (most recent call last):
    ...
    nt_gp.store_errors.StoreMismatchError: k.h5 was made for a different computation (batch_size differs: the store has 2, this job has 4); it is left untouched. Use another output file, or delete this one to start over.
  """
  wanted = json.loads(json.dumps(wanted, sort_keys=True))
  diffs = []
  for key in sorted(set(stored) | set(wanted)):
    a, b = stored.get(key), wanted.get(key)
    if a == b:
      continue
    sources = _source_changes(a, b) if key == 'arch' else None
    if sources:
      diffs.append(f'the architecture\'s code differs: {sources}')
    else:
      diffs.append(f'{key} differs: the store has {_describe(key, a)}, this '
                   f'job has {_describe(key, b)}')
  if diffs:
    raise StoreMismatchError(
        f'{path} was made for a different computation ({"; ".join(diffs)}); '
        f'it is left untouched. Use another output file, or delete this one '
        f'to start over.')


def make_probe(values: Dict[str, np.ndarray], rows: int, cols: Optional[int],
               dtype: str) -> dict:
  """The probe record of kernel `values` (``{name: (rows, cols, ...)}``) of
  the first `rows` inputs of `x1` against the first `cols` of `x2` (`cols`
  None: against themselves, ``x2=None``).

  Example:
    >>> p = make_probe({'nngp': np.eye(2)}, 2, None, 'float64')
    >>> p['values']['nngp'], p['shape']['nngp']
    ([1.0, 0.0, 0.0, 1.0], [2, 2])
  """
  return {'rows': int(rows), 'cols': None if cols is None else int(cols),
          'dtype': str(dtype),
          'shape': {n: list(np.shape(v)) for n, v in values.items()},
          'values': {n: [float(f) for f in np.ravel(v)]
                     for n, v in values.items()}}


def compare_probes(stored: Optional[dict], wanted: Optional[dict], path: str):
  """Raises `StoreMismatchError` if the architecture now computes another
  kernel on the probe inputs than when the store was made.

  Example:
    >>> p = make_probe({'nngp': np.eye(2)}, 2, None, 'float64')
    >>> q = make_probe({'nngp': 1.1 * np.eye(2)}, 2, None, 'float64')
    >>> compare_probes(p, p, 'k.h5')
    >>> compare_probes(p, q, 'k.h5')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nt_gp.store_errors.StoreMismatchError: k.h5: the architecture now computes a different kernel than when the store was made (nngp of the first 2 inputs differs by 1.0e-01 relative)...
  """
  if stored is None or wanted is None:
    return
  same_inputs = all(stored.get(k) == wanted.get(k)
                    for k in ('rows', 'cols', 'dtype', 'shape'))
  if not same_inputs:
    raise StoreMismatchError(
        f'{path}: the architecture\'s outputs on the probe inputs have '
        f'another shape than when the store was made ({stored.get("shape")} '
        f'vs {wanted.get("shape")}); it is left untouched. Use another '
        f'output file, or delete this one to start over.')
  rtol = PROBE_RTOL.get(stored.get('dtype'), 1e-4)
  for name, old in stored['values'].items():
    old = np.asarray(old, np.float64)
    new = np.asarray(wanted['values'][name], np.float64)
    scale = max(float(np.max(np.abs(old), initial=0.)), 1e-300)
    if not np.all(np.isfinite(new)):
      err = float('inf')
    else:
      err = float(np.max(np.abs(new - old), initial=0.)) / scale
    if err > rtol:
      raise StoreMismatchError(
          f'{path}: the architecture now computes a different kernel than '
          f'when the store was made ({name} of the first {stored["rows"]} '
          f'inputs differs by {err:.1e} relative); its code, something it '
          f'imports or reads, or nt_gp changed. The store is left untouched: '
          f'use another output file, or delete this one to start over.')
