"""A persistent, resumable, crash-safe store for kernels computed in blocks.

A `KernelStore` is one HDF5 file holding the ``(N1, N2, ...)`` outputs (e.g.
``nngp``, ``ntk``) of a kernel computed block by block, which blocks are done,
and what was computed: a fingerprint of the inputs (SHA-256 of the bytes,
shapes, dtype), the architecture's identity, `get`, the dtype and the block
size. A job that is killed restarts and computes only the missing blocks; a
store made for other inputs or another architecture is refused, never
overwritten.

Why HDF5 (through h5py) rather than zarr: h5py is already a dependency
(GPflow/Keras users have it), a kernel is one self-describing file that
numpy/Matlab/Julia users can open, and HDF5's early allocation gives a
crash-safety argument that needs no extra machinery. zarr (a directory of one
file per chunk) would have written each block atomically by itself, but adds
a dependency and thousands of small files per kernel.

File layout::

  /<name>          (N1, N2, *spatial) float32/float64, chunks = one block
  /block_state     (B1, B2) uint64, 0 = missing, else DONE_FLAG | crc32(block)
  attrs            format, format_version, fingerprint, grid, names, meta (JSON)

Crash safety (a SIGKILL at any moment, or a power loss with ``fsync=True``):

* The file is created under a temporary name, fully initialised and flushed,
  then linked to its final name (`os.link`, which never replaces an existing
  file): a store either exists completely or not at all.
* All storage is allocated when the file is created (``H5D_ALLOC_TIME_EARLY``,
  no compression): writing a block later only overwrites raw bytes at fixed
  offsets, and never changes HDF5 metadata, so a write cut short cannot make
  the file unreadable.
* A block is written, flushed (and fsync-ed), and only then recorded as done
  by an 8-byte write of ``DONE_FLAG | crc32`` into `/block_state`, flushed
  again. A block killed mid-write is not recorded and is recomputed; a
  recorded block's bytes are checked against its CRC when the store is
  opened with ``verify=True``.

Example:
  >>> import os, tempfile
  >>> import numpy as np
  >>> from nt_gp.blocks import BlockGrid
  >>> from nt_gp.store import KernelStore, fingerprint
  >>> x = np.arange(8.).reshape(4, 2)
  >>> fp = fingerprint(x, None, arch='example', get=('nngp',), dtype='float64',
  ...                  batch_size=2)
  >>> path = os.path.join(tempfile.mkdtemp(), 'k.h5')
  >>> grid = BlockGrid(4, 4, 2, 2, symmetric=True)
  >>> with KernelStore.create(path, fp, grid, {'nngp': ((), 'float64')}) as s:
  ...   s.write_blocks([(0, 0, {'nngp': np.ones((2, 2))})])
  ...   s.n_done
  1
  >>> with KernelStore.open(path, fingerprint=fp) as s:
  ...   s.done.tolist()
  [[True, False], [False, False]]
"""
import hashlib
import json
import os
import zlib
from typing import Dict, Iterable, Optional, Sequence, Tuple

import h5py
import numpy as np

from nt_gp.blocks import BlockGrid

__all__ = ['KernelStore', 'fingerprint', 'StoreError', 'StoreCorruptError',
           'StoreMismatchError', 'StoreExistsError', 'DONE_FLAG']

FORMAT = 'nt_gp.kernel_store'
FORMAT_VERSION = 1
DONE_FLAG = np.uint64(1 << 32)
_STATE = 'block_state'
_MAX_CHUNK_BYTES = 2 ** 32 - 1   # HDF5's limit on one chunk


class StoreError(Exception):
  """A kernel store cannot be used as asked.

  Example:
    >>> issubclass(StoreCorruptError, StoreError)
    True
  """


class StoreCorruptError(StoreError):
  """The file is not a readable, consistent kernel store.

  Example:
    >>> str(StoreCorruptError('k.h5 is corrupted'))
    'k.h5 is corrupted'
  """


class StoreMismatchError(StoreError):
  """The store was made for other inputs, architecture or settings.

  Example:
    >>> issubclass(StoreMismatchError, StoreError)
    True
  """


class StoreExistsError(StoreError, FileExistsError):
  """A file already exists where a new store was to be created.

  Example:
    >>> issubclass(StoreExistsError, FileExistsError)
    True
  """


# ----------------------------------------------------------------------------
# Fingerprints.
# ----------------------------------------------------------------------------
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
      ``{'preset': 'fcn', 'args': {...}}`` or ``{'file_sha256': ...}``.
    get: the stored quantities, e.g. ``('nngp', 'ntk')``.
    dtype: ``'float32'`` or ``'float64'``.
    batch_size: the block size.

  Returns:
    A JSON-serialisable dict.

  Example:
    >>> import numpy as np
    >>> fp = fingerprint(np.zeros((2, 3)), None, arch='fcn', get=('nngp',),
    ...                  dtype='float64', batch_size=1)
    >>> fp['x1']['shape'], fp['x2'], fp['get']
    ([2, 3], None, ['nngp'])
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


def _compare(stored: dict, wanted: dict, path: str):
  diffs = []
  for key in sorted(set(stored) | set(wanted)):
    if stored.get(key) != wanted.get(key):
      diffs.append(f'  {key}: store has {_describe(key, stored.get(key))}, '
                   f'this job has {_describe(key, wanted.get(key))}')
  if diffs:
    what = ', '.join(d.split(':')[0].strip() for d in diffs)
    raise StoreMismatchError(
        f'{path} was made for a different computation ({what} differ); it '
        f'is left untouched. Use another output file, or delete this one to '
        f'start over.\n' + '\n'.join(diffs))


# ----------------------------------------------------------------------------
# The store.
# ----------------------------------------------------------------------------
class KernelStore:
  """An HDF5 kernel store (see the module docstring).

  Create with `KernelStore.create`, open with `KernelStore.open`; use as a
  context manager or call `close`.

  Attributes:
    path: the file.
    grid: the `BlockGrid` (block size, symmetry).
    names: the stored quantities, e.g. ``('nngp',)``.
    fingerprint: the dict given at creation (see `fingerprint`).
    meta: extra JSON information given at creation (e.g. the output layout).

  Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from nt_gp.blocks import BlockGrid
    >>> path = os.path.join(tempfile.mkdtemp(), 'k.h5')
    >>> grid = BlockGrid(4, 6, 2, 3)                  # 2 x 2 blocks of 2 x 3
    >>> with KernelStore.create(path, {'arch': 'x'}, grid,
    ...                         {'ntk': ((), 'float32')}) as s:
    ...   s.write_blocks([(1, 1, {'ntk': np.ones((2, 3))})])
    >>> with KernelStore.open(path) as s:
    ...   s.n_done, s.complete, s.read('ntk', allow_incomplete=True).dtype
    (1, False, dtype('float32'))
  """

  def __init__(self, path, f: h5py.File, fsync: bool):
    self.path = str(path)
    self._f = f
    self._fsync = fsync
    attrs = f.attrs
    g = json.loads(attrs['grid'])
    self.grid = BlockGrid(g['n1'], g['n2'], g['rows'], g['cols'],
                          symmetric=g['symmetric'])
    self.names = tuple(json.loads(attrs['names']))
    self.fingerprint = json.loads(attrs['fingerprint'])
    self.meta = json.loads(attrs['meta']) if 'meta' in attrs else {}
    self._state = f[_STATE]
    self._done_cache = None

  # -- creation ----------------------------------------------------------------
  @classmethod
  def create(cls, path, fingerprint: dict, grid: BlockGrid,  # pylint: disable=redefined-outer-name
             outputs: Dict[str, Tuple[Tuple[int, ...], str]],
             fsync: bool = True, meta: Optional[dict] = None) -> 'KernelStore':
    """Creates a new, empty store; refuses to replace any existing file.

    Args:
      path: file to create (must not exist).
      fingerprint: from `fingerprint`.
      grid: the block grid.
      outputs: ``{name: (trailing_shape, dtype)}``: each output has shape
        ``(N1, N2) + trailing_shape``.
      fsync: fsync the file before recording each block (survives power loss;
        a few ms per block).
      meta: JSON-serialisable extra information, kept as `meta`.

    Returns:
      The store, open for writing.
    """
    path = os.fspath(path)
    if os.path.exists(path):
      raise StoreExistsError(f'{path} already exists; refusing to overwrite it.')
    if not outputs:
      raise ValueError('`outputs` must name at least one quantity.')
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
      raise FileNotFoundError(f'The folder of {path} does not exist.')
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
      with h5py.File(tmp, 'w', libver='earliest') as f:
        f.attrs['format'] = FORMAT
        f.attrs['format_version'] = FORMAT_VERSION
        f.attrs['fingerprint'] = json.dumps(fingerprint, sort_keys=True)
        f.attrs['grid'] = json.dumps(
            {'n1': grid.n1, 'n2': grid.n2, 'rows': grid.rows,
             'cols': grid.cols, 'symmetric': grid.symmetric})
        f.attrs['names'] = json.dumps(list(outputs))
        f.attrs['meta'] = json.dumps(meta or {}, sort_keys=True)
        for name, (trailing, dtype) in outputs.items():
          dtype = np.dtype(dtype)
          if dtype not in (np.float32, np.float64):
            raise ValueError(f'Output `{name}` must be float32 or float64, got '
                             f'{dtype}.')
          trailing = tuple(int(d) for d in trailing)
          chunk = (grid.rows, grid.cols) + trailing
          if np.prod(chunk) * dtype.itemsize > _MAX_CHUNK_BYTES:
            raise ValueError(
                f'A block of `{name}` ({chunk}, {dtype}) exceeds HDF5\'s 4 GiB '
                f'chunk limit; use a smaller batch size.')
          dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
          dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
          dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
          f.create_dataset(name, shape=(grid.n1, grid.n2) + trailing,
                           dtype=dtype, chunks=chunk, dcpl=dcpl,
                           track_times=False)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        f.create_dataset(_STATE, shape=grid.shape, dtype=np.uint64,
                         fillvalue=0, dcpl=dcpl, track_times=False)
        f.flush()
        if fsync:
          os.fsync(f.id.get_vfd_handle())
      try:
        os.link(tmp, path)   # atomic, and never replaces an existing file
      except FileExistsError:
        raise StoreExistsError(
            f'{path} already exists; refusing to overwrite it.') from None
      except OSError:        # file systems without hard links
        if os.path.exists(path):
          raise StoreExistsError(
              f'{path} already exists; refusing to overwrite it.') from None
        os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)
    return cls.open(path, mode='r+', verify=False, fsync=fsync)

  # -- opening -----------------------------------------------------------------
  @classmethod
  def open(cls, path, mode: str = 'r', fingerprint: Optional[dict] = None,  # pylint: disable=redefined-outer-name
           verify: bool = True, fsync: bool = True) -> 'KernelStore':
    """Opens and checks an existing store.

    Args:
      path: the store file.
      mode: ``'r'`` (read) or ``'r+'`` (continue writing).
      fingerprint: if given, the store must have been made for exactly this
        computation, else `StoreMismatchError`.
      verify: check every block recorded as done against its CRC (reads the
        whole file).
      fsync: see `create`.

    Raises:
      FileNotFoundError: no such file.
      StoreCorruptError: unreadable file, missing datasets or attributes, or a
        block whose bytes do not match its record.
      StoreMismatchError: `fingerprint` differs from the stored one.
    """
    path = os.fspath(path)
    if mode not in ('r', 'r+'):
      raise ValueError(f'`mode` must be "r" or "r+", got {mode!r}.')
    if not os.path.exists(path):
      raise FileNotFoundError(f'No kernel store at {path}.')
    try:
      f = h5py.File(path, mode)
    except OSError as e:
      msg = str(e)
      if 'unable to lock' in msg.lower():
        raise StoreError(f'{path} is open for writing in another process '
                         f'({msg}).') from e
      raise StoreCorruptError(f'{path} is not a readable HDF5 file; the kernel '
                              f'store is corrupted or truncated ({msg}).') from e
    try:
      cls._check_layout(path, f)
      store = cls(path, f, fsync)
      if fingerprint is not None:
        _compare(store.fingerprint, json.loads(json.dumps(
            fingerprint, sort_keys=True)), path)
      store._check_state()
      if verify:
        store.verify()
    except BaseException:
      f.close()
      raise
    return store

  @staticmethod
  def _check_layout(path, f):
    def corrupt(what):
      return StoreCorruptError(f'{path} is not a valid nt_gp kernel store: '
                               f'{what}.')
    attrs = f.attrs
    if attrs.get('format') != FORMAT:
      raise corrupt('the `format` attribute is missing (not written by '
                    'nt_gp, or damaged)')
    if attrs.get('format_version') != FORMAT_VERSION:
      raise corrupt(f'unsupported format_version '
                    f'{attrs.get("format_version")!r}')
    for key in ('fingerprint', 'grid', 'names'):
      if key not in attrs:
        raise corrupt(f'attribute `{key}` is missing')
      try:
        json.loads(attrs[key])
      except (TypeError, ValueError):
        raise corrupt(f'attribute `{key}` is not valid JSON') from None
    g = json.loads(attrs['grid'])
    try:
      grid = BlockGrid(g['n1'], g['n2'], g['rows'], g['cols'],
                       symmetric=g['symmetric'])
    except (KeyError, TypeError, ValueError) as e:
      raise corrupt(f'attribute `grid` is invalid ({e})') from None
    names = json.loads(attrs['names'])
    if not names:
      raise corrupt('no stored quantities')
    for name in list(names) + [_STATE]:
      if name not in f or not isinstance(f[name], h5py.Dataset):
        raise corrupt(f'dataset `/{name}` is missing')
    for name in names:
      ds = f[name]
      if ds.shape[:2] != (grid.n1, grid.n2):
        raise corrupt(f'dataset `/{name}` has shape {ds.shape}, expected '
                      f'({grid.n1}, {grid.n2}, ...)')
      if ds.chunks is None or ds.chunks[:2] != (grid.rows, grid.cols) or (
          ds.chunks[2:] != ds.shape[2:]):
        raise corrupt(f'dataset `/{name}` is not chunked by blocks of '
                      f'{grid.rows} x {grid.cols}')
      if ds.dtype not in (np.float32, np.float64):
        raise corrupt(f'dataset `/{name}` has dtype {ds.dtype}')
    state = f[_STATE]
    if state.shape != grid.shape or state.dtype != np.uint64:
      raise corrupt(f'dataset `/{_STATE}` has shape {state.shape} and dtype '
                    f'{state.dtype}, expected {grid.shape} uint64')

  def _check_state(self):
    state = self._state[...]
    bad = (state != 0) & ((state >> np.uint64(32)) != np.uint64(1))
    if bad.any():
      i, j = (int(v) for v in np.argwhere(bad)[0])
      raise StoreCorruptError(
          f'{self.path} is corrupted: block ({i}, {j}) has an invalid record '
          f'{int(state[i, j]):#x} in `/{_STATE}`.')
    self._done_cache = state != 0

  def verify(self):
    """Checks every block recorded as done against its CRC.

    Raises:
      StoreCorruptError: naming the first block whose bytes do not match.
    """
    state = self._state[...]
    for i, j in np.argwhere(state != 0):
      i, j = int(i), int(j)
      crc = self._crc(self._read_block(i, j))
      if np.uint64(crc) != state[i, j] & np.uint64(0xFFFFFFFF):
        raise StoreCorruptError(
            f'{self.path} is corrupted: block ({i}, {j}) is recorded as done '
            f'but its data does not match the recorded checksum. Delete the '
            f'file (or move it away) and recompute.')

  # -- blocks ------------------------------------------------------------------
  def _index(self, i, j):
    return self.grid.rows_of(i), self.grid.cols_of(j)

  def _read_block(self, i, j) -> Dict[str, np.ndarray]:
    r, c = self._index(i, j)
    return {n: self._f[n][r, c] for n in self.names}

  def _crc(self, arrays: Dict[str, np.ndarray]) -> int:
    crc = 0
    for n in self.names:
      a = np.ascontiguousarray(arrays[n], dtype=self._f[n].dtype)
      crc = zlib.crc32(a.view(np.uint8).reshape(-1), crc)
    return crc

  def _flush(self):
    self._f.flush()
    if self._fsync:
      os.fsync(self._f.id.get_vfd_handle())

  @property
  def done(self) -> np.ndarray:
    """``(B1, B2)`` bool array: which blocks are recorded as done."""
    return self._done_cache.copy()

  @property
  def n_done(self) -> int:
    """Number of blocks recorded as done."""
    return int(self._done_cache.sum())

  @property
  def complete(self) -> bool:
    """Whether every block is done."""
    return bool(self._done_cache.all())

  def is_done(self, i: int, j: int) -> bool:
    """Whether block ``(i, j)`` is recorded as done."""
    return bool(self._done_cache[i, j])

  def output_spec(self) -> Dict[str, Tuple[Tuple[int, ...], str]]:
    """``{name: (trailing_shape, dtype)}`` as given to `create`."""
    return {n: (tuple(self._f[n].shape[2:]), self._f[n].dtype.name)
            for n in self.names}

  def write_blocks(self, blocks: Iterable[Tuple[int, int, Dict[str, np.ndarray]]]):
    """Writes blocks, then records them as done (see the module docstring).

    Args:
      blocks: ``(i, j, {name: array of shape (rows, cols, *trailing)})``.
    """
    blocks = list(blocks)
    if self._f.mode != 'r+':
      raise StoreError(f'{self.path} is open read-only.')
    records = []
    for i, j, arrays in blocks:
      if set(arrays) != set(self.names):
        raise ValueError(f'Block ({i}, {j}) has outputs {sorted(arrays)}, the '
                         f'store holds {list(self.names)}.')
      r, c = self._index(i, j)
      cast = {}
      for n in self.names:
        ds = self._f[n]
        a = np.asarray(arrays[n])
        expected = (self.grid.rows, self.grid.cols) + ds.shape[2:]
        if a.shape != expected:
          raise ValueError(f'Block ({i}, {j}) of `{n}` has shape {a.shape}, '
                           f'expected {expected}.')
        cast[n] = np.ascontiguousarray(a, dtype=ds.dtype)
        ds[r, c] = cast[n]
      records.append((i, j, np.uint64(self._crc(cast)) | DONE_FLAG))
    self._flush()
    for i, j, rec in records:
      self._state[i, j] = rec
    self._flush()
    for i, j, _ in records:
      self._done_cache[i, j] = True

  # -- reading -----------------------------------------------------------------
  def dataset(self, name: str) -> h5py.Dataset:
    """The h5py dataset of `name` (read slices without loading everything)."""
    if name not in self.names:
      raise KeyError(f'`{name}` is not stored; the store holds '
                     f'{list(self.names)}.')
    return self._f[name]

  def read(self, name: Optional[str] = None,
           allow_incomplete: bool = False) -> np.ndarray:
    """The whole ``(N1, N2, ...)`` array of `name` (default: the first).

    Raises:
      StoreError: if blocks are missing and not `allow_incomplete`.
    """
    name = self.names[0] if name is None else name
    if not allow_incomplete and not self.complete:
      missing = int((~self._done_cache).sum())
      raise StoreError(f'{self.path} is incomplete: {missing} of '
                       f'{self.grid.n_blocks} blocks are missing; resume the '
                       f'computation first.')
    return self.dataset(name)[...]

  def close(self):
    """Closes the file."""
    if self._f:
      self._f.close()
      self._f = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __repr__(self):
    return (f'KernelStore({self.path!r}, names={self.names}, '
            f'done={self.n_done}/{self.grid.n_blocks})')
