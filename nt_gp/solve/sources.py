"""Kernel matrices to solve with: in-memory arrays or `KernelStore` datasets.

A `KernelSource` reads rectangular pieces of one ``(N1, N2)`` kernel into a
caller's buffer (converting float32 to float64 on the way, with no
intermediate copy), so solvers never need the whole matrix at once. Stores are
read only through `KernelStore`'s public API, and checked: complete, one
number per pair of inputs, finite values. `check_pairing` refuses a
test-train store that was computed against other training inputs (or with
another architecture) than the train-train store.

Example:
  >>> import numpy as np
  >>> src = open_source(np.arange(6.).reshape(2, 3), 'k_test_train')
  >>> src.shape, src.read(slice(0, 2), slice(1, 3)).tolist()
  ((2, 3), [[1.0, 2.0], [4.0, 5.0]])
"""
import hashlib
import json
import os
from typing import Optional

import numpy as np

from nt_gp.store import KernelStore

__all__ = ['KernelSource', 'ArraySource', 'StoreSource', 'open_source',
           'kernel_name', 'check_pairing', 'read_diagonal']


def kernel_name(get: str) -> str:
  """The stored kernel a `get` uses: ``'nngp'`` or ``'ntk'``.

  Example:
    >>> kernel_name('ntkgp')
    'ntk'
  """
  if get not in ('nngp', 'ntk', 'ntkgp'):
    raise ValueError(f'`get` must be "nngp", "ntk" or "ntkgp", got {get!r}.')
  return 'nngp' if get == 'nngp' else 'ntk'


def _check_finite(out: np.ndarray, label: str, r0: int, c0: int):
  # In row pieces: a boolean mask of the whole buffer would cost an eighth
  # of its memory.
  step = max(1, (1 << 22) // max(out.shape[1], 1))
  for i in range(0, out.shape[0], step):
    piece = out[i:i + step]
    if not np.isfinite(piece.sum()) and not np.isfinite(piece).all():
      bad = np.argwhere(~np.isfinite(piece))[0]
      raise ValueError(
          f'{label} has a non-finite entry at ({r0 + i + bad[0]}, '
          f'{c0 + bad[1]}); recompute the kernel (e.g. in float64, or with '
          f'inputs of a smaller scale).')


class KernelSource:
  """Read access to an ``(N1, N2)`` kernel (see the module docstring).

  Attributes:
    shape: ``(N1, N2)``.
    dtype: the stored dtype (float32 or float64).
    label: how error messages name it.
  """
  shape = (0, 0)
  dtype = np.dtype(np.float64)
  label = 'kernel'

  def read(self, rows: slice, cols: slice, out: Optional[np.ndarray] = None,
           dtype=np.float64) -> np.ndarray:
    """``kernel[rows, cols]`` into `out` (or a new `dtype` array).

    Raises:
      ValueError: if the piece has NaN or inf entries.
    """
    r0, r1, _ = rows.indices(self.shape[0])
    c0, c1, _ = cols.indices(self.shape[1])
    if out is None:
      out = np.empty((r1 - r0, c1 - c0), dtype)
    if out.shape != (r1 - r0, c1 - c0):
      raise ValueError(f'Buffer of shape {out.shape} for a piece of shape '
                       f'{(r1 - r0, c1 - c0)}.')
    if out.size:
      self._read(slice(r0, r1), slice(c0, c1), out)
      _check_finite(out, self.label, r0, c0)
    return out

  def _read(self, rows, cols, out):
    raise NotImplementedError

  def identity(self) -> dict:
    """A JSON-serialisable description identifying the values."""
    raise NotImplementedError

  def close(self):
    """Releases the file, if this source opened one."""

  @property
  def nbytes(self) -> int:
    return int(self.shape[0]) * int(self.shape[1]) * self.dtype.itemsize


class ArraySource(KernelSource):
  """An in-memory ``(N1, N2)`` array.

  Example:
    >>> ArraySource(np.eye(2), 'k').read(slice(0, 1), slice(0, 2)).tolist()
    [[1.0, 0.0]]
  """

  def __init__(self, array: np.ndarray, label: str):
    self.array = array
    self.shape = tuple(int(d) for d in array.shape)
    self.dtype = array.dtype
    self.label = label
    self.store_fingerprint = None
    self._identity = None

  def _read(self, rows, cols, out):
    np.copyto(out, self.array[rows, cols], casting='same_kind')

  def identity(self) -> dict:
    if self._identity is None:
      a = np.ascontiguousarray(self.array)
      digest = hashlib.sha256(a.view(np.uint8).reshape(-1)).hexdigest()
      self._identity = {'array_sha256': digest, 'shape': list(self.shape),
                        'dtype': self.dtype.name}
    return self._identity


class StoreSource(KernelSource):
  """One dataset (``nngp`` or ``ntk``) of a complete `KernelStore`.

  Args:
    store: an open `KernelStore`.
    name: the dataset.
    label: how error messages name it.
    owned: close the store with this source.
  """

  def __init__(self, store: KernelStore, name: str, label: str,
               owned: bool = False):
    self.store = store
    self.name = name
    self.label = f'{label} ({store.path}, `{name}`)'
    self._owned = owned
    if name not in store.names:
      raise ValueError(
          f'{store.path} holds {list(store.names)}, not `{name}`; compute the '
          f'kernel with `--get {",".join(sorted(set(store.names) | {name}))}`'
          f' or choose another `get`.')
    if not store.complete:
      missing = store.grid.n_blocks - store.n_done
      raise ValueError(f'{store.path} is incomplete ({missing} of '
                       f'{store.grid.n_blocks} blocks missing); finish it with '
                       f'`nt-gp kernel ... --resume` first.')
    trailing, dtype = store.output_spec()[name]
    if trailing:
      raise ValueError(
          f'{store.path} stores `{name}` with per-position axes {trailing}; a '
          f'solve needs one number per pair of inputs (end the network with '
          f'a readout such as GlobalAvgPool or Flatten + Dense).')
    self.dataset = store.dataset(name)
    self.shape = tuple(int(d) for d in self.dataset.shape[:2])
    self.dtype = np.dtype(dtype)
    self.store_fingerprint = store.fingerprint

  def _read(self, rows, cols, out):
    self.dataset.read_direct(out, np.s_[rows, cols])

  def identity(self) -> dict:
    return {'store_fingerprint': self.store_fingerprint, 'name': self.name,
            'shape': list(self.shape)}

  def close(self):
    if self._owned:
      self.store.close()


def _as_array(k, get: str, label: str) -> np.ndarray:
  if isinstance(k, tuple) and hasattr(k, '_fields') or hasattr(k, 'nngp'):
    value = getattr(k, kernel_name(get), None)
    if value is None:
      raise ValueError(f'`{label}` has no "{kernel_name(get)}" kernel; pass '
                       f'an array, or a record containing it.')
    k = value
  if hasattr(k, 'numpy') and not isinstance(k, np.ndarray):
    k = k.numpy()
  a = np.asarray(k)
  if a.dtype.kind not in 'fiu' or a.dtype.kind == 'c':
    raise TypeError(f'`{label}` must be a real array, got dtype {a.dtype}.')
  if a.dtype not in (np.float32, np.float64):
    a = a.astype(np.float64)
  return a


def open_source(k, label: str, get: str = 'nngp', verify: bool = False,
                ndim: int = 2) -> KernelSource:
  """A `KernelSource` for an array, a record, a `KernelStore` or a store path.

  Args:
    k: numpy/TensorFlow array, a namedtuple / `nt_gp.Kernel` with `nngp` /
      `ntk` fields, an open `KernelStore`, or the path of one.
    label: the argument's name, for error messages.
    get: ``'nngp'``, ``'ntk'`` or ``'ntkgp'``: which kernel of a record or
      store to use.
    verify: check every block of a store against its checksum when opening
      it (reads the whole file once).
    ndim: required number of axes of an array (2).

  Example:
    >>> import collections
    >>> K = collections.namedtuple('K', 'nngp ntk')
    >>> open_source(K(np.eye(2), 2 * np.eye(2)), 'k', get='ntk').read(
    ...     slice(0, 1), slice(0, 1)).tolist()
    [[2.0]]
  """
  name = kernel_name(get)
  if isinstance(k, KernelStore):
    return StoreSource(k, name, label)
  if isinstance(k, (str, os.PathLike)):
    path = os.fspath(k)
    if not os.path.exists(path):
      raise FileNotFoundError(f'`{label}`: no kernel store at {path}.')
    store = KernelStore.open(path, verify=verify)
    try:
      return StoreSource(store, name, label, owned=True)
    except BaseException:
      store.close()
      raise
  if k is None:
    raise ValueError(f'`{label}` must not be None.')
  a = _as_array(k, get, label)
  if a.ndim != ndim:
    raise ValueError(f'`{label}` must be a {ndim}-D kernel matrix, got shape '
                     f'{a.shape}.')
  return ArraySource(a, f'`{label}`')


def _describe_inputs(v) -> str:
  if isinstance(v, dict) and 'sha256' in v:
    return f'{v.get("dtype")} {tuple(v.get("shape", ()))} sha256 ' \
           f'{v["sha256"][:12]}…'
  return json.dumps(v, sort_keys=True)


def check_pairing(train: KernelSource, other: KernelSource, role: str,
                  side: str = 'x2', points: str = 'training points'):
  """Checks that `other` (e.g. k(test, train)) pairs with `train`.

  Sizes must agree (`points` names what the columns are); when both are
  stores, `other`'s `side` inputs
  (``'x2'``: its columns) must be the training inputs of `train`, and both
  must come from the same architecture.

  Raises:
    ValueError: saying what differs.

  Example:
    >>> check_pairing(ArraySource(np.eye(3), 'k_train_train'),
    ...               ArraySource(np.ones((2, 4)), 'k_test_train'), 'test')
    Traceback (most recent call last):
    ...
    ValueError: k_test_train has 4 columns but k_train_train has 3 training points; both must be computed against the same training points.
  """
  n = train.shape[0]
  if side == 'x2' and other.shape[1] != n:
    raise ValueError(f'{other.label.strip("`")} has {other.shape[1]} columns '
                     f'but {train.label.strip("`")} has {n} {points}; both '
                     f'must be computed against the same {points}.')
  fp_train = getattr(train, 'store_fingerprint', None)
  fp_other = getattr(other, 'store_fingerprint', None)
  if not fp_train or not fp_other:
    return
  want = fp_train.get('x1')
  have = fp_other.get(side)
  if want is not None and have is not None and want != have:
    raise ValueError(
        f'{other.label} was computed for other inputs than the training '
        f'kernel {train.label}: its {side} is {_describe_inputs(have)}, the '
        f'training inputs are {_describe_inputs(want)}. Compute the {role} '
        f'kernel against the same training inputs (`nt-gp kernel --x1 '
        f'{role}.npy --x2 <training inputs>`).')
  a_train, a_other = fp_train.get('arch'), fp_other.get('arch')
  if a_train is not None and a_other is not None and a_train != a_other:
    raise ValueError(
        f'{other.label} and {train.label} were computed with different '
        f'architectures ({json.dumps(a_other, sort_keys=True)} vs '
        f'{json.dumps(a_train, sort_keys=True)}); recompute one of them.')


def check_train_kernel(train: KernelSource):
  """Checks that the training kernel is square and, for a store, symmetric.

  Example:
    >>> check_train_kernel(ArraySource(np.ones((2, 3)), '`k`'))
    Traceback (most recent call last):
    ...
    ValueError: `k` must be square (N_train, N_train), got shape (2, 3).
  """
  if train.shape[0] != train.shape[1]:
    raise ValueError(f'{train.label} must be square (N_train, N_train), got '
                     f'shape {train.shape}.')
  fp = getattr(train, 'store_fingerprint', None)
  if fp and fp.get('x2') is not None and fp.get('x2') != fp.get('x1'):
    raise ValueError(f'{train.label} is a kernel between two different input '
                     f'sets; the training kernel must be that of the training '
                     f'inputs with themselves (`nt-gp kernel` without --x2).')


def read_diagonal(source: KernelSource, block: int = 1024) -> np.ndarray:
  """The diagonal of a square source, reading only diagonal blocks.

  Example:
    >>> read_diagonal(ArraySource(np.diag([1., 2., 3.]), 'k'), block=2)
    array([1., 2., 3.])
  """
  n = source.shape[0]
  if source.shape[1] != n:
    raise ValueError(f'{source.label} must be square to take its diagonal, '
                     f'got shape {source.shape}.')
  out = np.empty(n, np.float64)
  for i0 in range(0, n, block):
    i1 = min(i0 + block, n)
    out[i0:i1] = np.diagonal(source.read(slice(i0, i1), slice(i0, i1)))
  return out
