"""A persistent, resumable, crash-safe store for kernels computed in blocks.

A `KernelStore` is one HDF5 file holding the ``(N1, N2, ...)`` outputs (e.g.
``nngp``, ``ntk``) of a kernel computed block by block, which blocks are done,
and what was computed (`nt_gp.store_fingerprint`): the inputs' SHA-256, the
architecture's identity, `get`, the dtype, the block size, and a probe kernel.
A job that is killed restarts and computes only the missing blocks; a store
made for other inputs or another architecture is refused, never overwritten.

Why HDF5 (through h5py) rather than zarr: h5py is already a dependency
(GPflow/Keras users have it), a kernel is one self-describing file that
numpy/Matlab/Julia users can open, and HDF5's early allocation gives a
crash-safety argument that needs no extra machinery. zarr (a directory of one
file per chunk) would have written each block atomically by itself, but adds
a dependency and thousands of small files per kernel.

File layout::

  user block       nt_gp's header: file size, SHA-256 of the HDF5 metadata,
                   where block data lie (`nt_gp.store_layout`)
  /<name>          (N1, N2, *spatial) float32/float64, chunks = one block
                   (the last row/column of blocks may be partly used)
  /block_state     (B1, B2) uint64, 0 = missing, else DONE_FLAG | crc32(block)
  attrs            format, format_version, fingerprint, probe, grid, names,
                   meta (JSON)

Crash safety (a SIGKILL at any moment, or a power loss with ``fsync=True``):

* The file is created under a temporary name, fully initialised and flushed,
  then linked to its final name (`os.link`, which never replaces an existing
  file): a store either exists completely or not at all.
* All storage is allocated when the file is created (``H5D_ALLOC_TIME_EARLY``,
  no compression), and HDF5 never writes to the file again: blocks and their
  records are written with `os.pwrite` at the fixed offsets HDF5 allocated,
  so a write cut short (a kill, a full disk) cannot make the file unreadable
  or leave HDF5 with unwritable buffers.
* A block is written, fsync-ed, and only then recorded as done by an 8-byte
  write of ``DONE_FLAG | crc32`` into `/block_state`, fsync-ed again. A block
  killed mid-write is not recorded and is recomputed; a recorded block's
  bytes are checked against its CRC when the store is opened with
  ``verify=True``.
* Damage is detected before it is trusted: the header's own SHA-256, the
  file size and the SHA-256 of all HDF5 metadata are checked before HDF5
  reads the file (a damaged HDF5 file can crash HDF5 itself), and each block
  has its CRC. Any mismatch is `StoreCorruptError`.
* One writer at a time: writing takes ``<file>.lock`` (`nt_gp.store_lock`).

Example:
  >>> import os, tempfile
  >>> import numpy as np
  >>> from nt_gp.blocks import BlockGrid
  >>> from nt_gp.store import KernelStore, fingerprint
  >>> x = np.arange(10.).reshape(5, 2)
  >>> fp = fingerprint(x, None, arch='example', get=('nngp',), dtype='float64',
  ...                  batch_size=2)
  >>> path = os.path.join(tempfile.mkdtemp(), 'k.h5')
  >>> grid = BlockGrid(5, 5, 2, 2, symmetric=True)      # ragged: 2 + 2 + 1
  >>> with KernelStore.create(path, fp, grid, {'nngp': ((), 'float64')}) as s:
  ...   s.write_blocks([(0, 0, {'nngp': np.ones((2, 2))}),
  ...                   (2, 2, {'nngp': np.ones((1, 1))})])
  ...   s.n_done
  2
  >>> with KernelStore.open(path, fingerprint=fp) as s:
  ...   s.done.tolist()
  [[True, False, False], [False, False, False], [False, False, True]]
"""
import errno
import json
import os
import shutil
import socket
import zlib
from typing import Dict, Iterable, Optional, Tuple

import h5py
import numpy as np

from nt_gp.blocks import BlockGrid
from nt_gp.store_errors import (StoreCorruptError, StoreError,
                                StoreExistsError, StoreLockedError,
                                StoreMismatchError, StoreReadOnlyError,
                                StoreWriteError)
from nt_gp.store_fingerprint import (compare_fingerprints, compare_probes,
                                     fingerprint)
from nt_gp.store_layout import (FORMAT_VERSION, MAX_CHUNK_BYTES, STATE,
                                block_offsets, check_layout, read_header,
                                remove_stale_temporaries, required_bytes,
                                write_empty)
from nt_gp.store_lock import WriterLock

__all__ = ['KernelStore', 'fingerprint', 'StoreError', 'StoreCorruptError',
           'StoreMismatchError', 'StoreExistsError', 'StoreReadOnlyError',
           'StoreLockedError', 'StoreWriteError', 'DONE_FLAG', 'required_bytes']

DONE_FLAG = np.uint64(1 << 32)


class KernelStore:
  """An HDF5 kernel store (see the module docstring).

  Create with `KernelStore.create`, open with `KernelStore.open`; use as a
  context manager or call `close`.

  Attributes:
    path: the file.
    grid: the `BlockGrid` (block size, symmetry; the last blocks may be
      smaller).
    names: the stored quantities, e.g. ``('nngp',)``.
    fingerprint: the dict given at creation (see `fingerprint`).
    probe: the probe record given at creation (or None).
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
    self._fd = None
    self._lock = None
    self._chunks = None
    attrs = f.attrs
    g = json.loads(attrs['grid'])
    self.grid = BlockGrid(g['n1'], g['n2'], g['rows'], g['cols'],
                          symmetric=g['symmetric'])
    self.names = tuple(json.loads(attrs['names']))
    self.fingerprint = json.loads(attrs['fingerprint'])
    self.probe = json.loads(attrs['probe']) if 'probe' in attrs else None
    self.meta = json.loads(attrs['meta']) if 'meta' in attrs else {}
    self.format_version = int(attrs['format_version'])
    self._state = f[STATE]
    self._done_cache = None

  # -- creation ----------------------------------------------------------------
  @classmethod
  def create(cls, path, fingerprint: dict, grid: BlockGrid,  # pylint: disable=redefined-outer-name
             outputs: Dict[str, Tuple[Tuple[int, ...], str]],
             fsync: bool = True, meta: Optional[dict] = None,
             probe: Optional[dict] = None,
             lock: Optional[WriterLock] = None) -> 'KernelStore':
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
      probe: the probe record (`nt_gp.store_fingerprint.make_probe`), compared
        by `open` when a job resumes.
      lock: a held `WriterLock` of `path` (the caller keeps ownership); by
        default the store takes the lock itself and releases it on `close`.

    Returns:
      The store, open for writing.

    Raises:
      StoreExistsError: `path` exists.
      StoreLockedError: another process is writing `path`.
      StoreReadOnlyError: the folder is not writable.
      StoreWriteError: not enough free disk space for the whole kernel, or
        the file could not be written.
    """
    path = os.fspath(path)
    if os.path.lexists(path):
      raise StoreExistsError(f'{path} already exists; refusing to overwrite it.')
    if not outputs:
      raise ValueError('`outputs` must name at least one quantity.')
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
      raise FileNotFoundError(f'The folder of {path} does not exist.')
    for name, (trailing, dtype) in outputs.items():
      dtype = np.dtype(dtype)
      if dtype not in (np.float32, np.float64):
        raise ValueError(f'Output `{name}` must be float32 or float64, got '
                         f'{dtype}.')
      chunk = (grid.rows, grid.cols) + tuple(int(d) for d in trailing)
      if np.prod(chunk) * dtype.itemsize > MAX_CHUNK_BYTES:
        raise ValueError(
            f'A block of `{name}` ({chunk}, {dtype}) exceeds HDF5\'s 4 GiB '
            f'chunk limit; use a smaller batch size.')
    owns_lock = lock is None
    lock = lock or WriterLock(path).acquire()
    try:
      if os.path.lexists(path):   # created by another process meanwhile
        raise StoreExistsError(
            f'{path} already exists; refusing to overwrite it.')
      remove_stale_temporaries(path)
      need = required_bytes(grid, outputs)
      free = shutil.disk_usage(directory).free
      if need > free:
        raise StoreWriteError(
            errno.ENOSPC,
            f'{path} needs {need / 1e9:.3g} GB but only {free / 1e9:.3g} GB '
            f'are free on its disk; free space or choose another folder.')
      tmp = f'{path}.tmp-{socket.gethostname()}-{os.getpid()}'
      try:
        write_empty(tmp, fingerprint, grid, outputs, meta, probe, fsync)
        try:
          os.link(tmp, path)   # atomic, and never replaces an existing file
        except FileExistsError:
          raise StoreExistsError(
              f'{path} already exists; refusing to overwrite it.') from None
        except OSError as e:   # file systems without hard links
          if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV,
                             errno.EMLINK, errno.ENOSYS):
            raise
          if os.path.lexists(path):
            raise StoreExistsError(
                f'{path} already exists; refusing to overwrite it.') from None
          os.replace(tmp, path)
      except (OSError, RuntimeError) as e:
        if isinstance(e, StoreError):
          raise
        if isinstance(e, PermissionError):
          raise StoreReadOnlyError(f'cannot create {path}: {e}') from None
        raise StoreWriteError(getattr(e, 'errno', None) or errno.EIO,
                              f'cannot create {path}: {e}') from None
      finally:
        if os.path.lexists(tmp):
          os.unlink(tmp)
      store = cls.open(path, mode='r+', verify=False, fsync=fsync, lock=lock)
    except BaseException:
      if owns_lock:
        lock.release()
      raise
    store._lock = lock if owns_lock else None   # pylint: disable=protected-access
    return store

  # -- opening -----------------------------------------------------------------
  @classmethod
  def open(cls, path, mode: str = 'r', fingerprint: Optional[dict] = None,  # pylint: disable=redefined-outer-name
           verify: bool = True, fsync: bool = True,
           probe: Optional[dict] = None,
           lock: Optional[WriterLock] = None) -> 'KernelStore':
    """Opens and checks an existing store.

    Args:
      path: the store file.
      mode: ``'r'`` (read) or ``'r+'`` (continue writing; takes the store's
        lock, see `create`).
      fingerprint: if given, the store must have been made for exactly this
        computation, else `StoreMismatchError`.
      verify: check every block recorded as done against its CRC (reads the
        whole file).
      fsync: see `create`.
      probe: if given (and the store has one), the probe kernel recomputed
        now; it must agree with the stored one (`compare_probes`).
      lock: a held `WriterLock` for ``mode='r+'`` (see `create`).

    Raises:
      FileNotFoundError: no such file.
      StoreCorruptError: not an HDF5 file, unreadable, missing or damaged
        datasets or attributes, or a block whose bytes do not match its
        record.
      StoreMismatchError: `fingerprint` or `probe` differs from the stored
        one.
      StoreReadOnlyError: ``mode='r+'`` on a file that cannot be written.
      StoreLockedError: ``mode='r+'`` while another process writes it.
    """
    path = os.fspath(path)
    if mode not in ('r', 'r+'):
      raise ValueError(f'`mode` must be "r" or "r+", got {mode!r}.')
    if not os.path.exists(path):
      raise FileNotFoundError(f'No kernel store at {path}.')
    header = read_header(path)     # before HDF5 sees the file
    owns_lock = mode == 'r+' and lock is None
    if owns_lock:
      lock = WriterLock(path).acquire()
    f = fd = None
    try:
      if mode == 'r+':
        fd = cls._open_for_writing(path)
      try:
        f = h5py.File(path, 'r', locking=False, rdcc_nbytes=0)
      except (OSError, RuntimeError, ValueError) as e:
        raise StoreCorruptError(
            f'{path} is not a readable HDF5 file; the kernel store is '
            f'corrupted or truncated ({e}).') from None
      store = cls._checked(path, f, fsync)
      if mode == 'r+':
        if header is None or store.format_version < FORMAT_VERSION:
          raise StoreError(
              f'{path} was written by an older nt_gp (store format '
              f'{store.format_version}); it can be read but not resumed. '
              f'Compute the kernel into a new file.')
        store._chunks = block_offsets(path, f, store.names, store.grid,  # pylint: disable=protected-access
                                      header)
        store._fd = fd  # pylint: disable=protected-access
      if fingerprint is not None:
        compare_fingerprints(store.fingerprint, fingerprint, path)
      compare_probes(store.probe, probe, path)
      if verify:
        store.verify()
    except BaseException:
      if f is not None:
        f.close()
      if fd is not None:
        os.close(fd)
      if owns_lock:
        lock.release()
      raise
    store._lock = lock if owns_lock else None  # pylint: disable=protected-access
    return store

  @staticmethod
  def _open_for_writing(path) -> int:
    if not os.access(path, os.W_OK):
      raise StoreReadOnlyError(
          f'{path} is read-only (no write permission), so it cannot be '
          f'resumed; make it writable (chmod u+w) or copy it elsewhere.')
    try:
      return os.open(path, os.O_RDWR)
    except OSError as e:
      if isinstance(e, PermissionError) or e.errno == errno.EROFS:
        raise StoreReadOnlyError(
            f'{path} cannot be opened for writing ({e.strerror}), so it '
            f'cannot be resumed; make it writable or copy it elsewhere.'
        ) from None
      raise StoreWriteError(e.errno or errno.EIO,
                            f'cannot open {path} for writing: {e}') from None

  @classmethod
  def _checked(cls, path, f, fsync) -> 'KernelStore':
    """The store of the open file `f` after checking its structure; any
    failure while parsing the file is `StoreCorruptError`."""
    try:
      check_layout(path, f)
      store = cls(path, f, fsync)
      store._check_state()  # pylint: disable=protected-access
      return store
    except StoreError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      # A damaged file can make HDF5 or the parsing fail in many ways
      # (OSError, RuntimeError, KeyError, UnicodeDecodeError, ...).
      raise StoreCorruptError(
          f'{path} is corrupted: its structure cannot be read '
          f'({type(e).__name__}: {e}). Delete it (or move it away) and '
          f'recompute.') from None

  # -- checks ------------------------------------------------------------------
  def _check_state(self):
    state = self._state[...]
    bad = (state != 0) & ((state >> np.uint64(32)) != np.uint64(1))
    if bad.any():
      i, j = (int(v) for v in np.argwhere(bad)[0])
      raise StoreCorruptError(
          f'{self.path} is corrupted: block ({i}, {j}) has an invalid record '
          f'{int(state[i, j]):#x} in `/{STATE}`. Delete it (or move it away) '
          f'and recompute.')
    self._done_cache = state != 0

  def verify(self):
    """Checks every block recorded as done against its CRC.

    Raises:
      StoreCorruptError: naming the first block whose bytes do not match.
    """
    try:
      state = self._state[...]
      for i, j in np.argwhere(state != 0):
        i, j = int(i), int(j)
        crc = self._crc(self._read_block(i, j))
        if np.uint64(crc) != state[i, j] & np.uint64(0xFFFFFFFF):
          raise StoreCorruptError(
              f'{self.path} is corrupted: block ({i}, {j}) is recorded as '
              f'done but its data does not match the recorded checksum. '
              f'Delete the file (or move it away) and recompute.')
    except StoreError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise StoreCorruptError(f'{self.path} is corrupted: reading its blocks '
                              f'failed ({type(e).__name__}: {e}).') from None

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

  def _pwrite(self, data: bytes, offset: int, what: str):
    try:
      view = memoryview(data)
      while view:
        written = os.pwrite(self._fd, view, offset)
        view, offset = view[written:], offset + written
    except OSError as e:
      hint = (' (the disk is full: free space, then resume; blocks recorded '
              'before are kept)' if e.errno in (errno.ENOSPC, errno.EDQUOT)
              else '; blocks recorded before are kept, resume once the cause '
              'is fixed')
      raise StoreWriteError(e.errno or errno.EIO,
                            f'writing {what} of {self.path} failed: '
                            f'{e.strerror or e}{hint}') from None

  def _sync(self):
    if self._fsync:
      try:
        os.fsync(self._fd)
      except OSError as e:
        raise StoreWriteError(e.errno or errno.EIO,
                              f'flushing {self.path} to disk failed: '
                              f'{e.strerror or e}; blocks recorded before are '
                              f'kept, resume once the cause is fixed') from None

  def write_blocks(self, blocks: Iterable[Tuple[int, int, Dict[str, np.ndarray]]]):
    """Writes blocks, then records them as done (see the module docstring).

    Args:
      blocks: ``(i, j, {name: array of shape (rows_i, cols_j, *trailing)})``
        with ``(rows_i, cols_j) = grid.block_shape(i, j)``.

    Raises:
      StoreWriteError: the file could not be written (e.g. a full disk); the
        blocks are not recorded, those recorded before are intact.
    """
    blocks = list(blocks)
    if self._fd is None:
      raise StoreError(f'{self.path} is open read-only.')
    records = []
    for i, j, arrays in blocks:
      if set(arrays) != set(self.names):
        raise ValueError(f'Block ({i}, {j}) has outputs {sorted(arrays)}, the '
                         f'store holds {list(self.names)}.')
      cast = {}
      for n in self.names:
        ds = self._f[n]
        a = np.asarray(arrays[n])
        expected = self.grid.block_shape(i, j) + ds.shape[2:]
        if a.shape != expected:
          raise ValueError(f'Block ({i}, {j}) of `{n}` has shape {a.shape}, '
                           f'expected {expected}.')
        cast[n] = np.ascontiguousarray(a, dtype=ds.dtype)
      for n in self.names:
        chunk = cast[n]
        full = (self.grid.rows, self.grid.cols) + chunk.shape[2:]
        if chunk.shape != full:        # an edge block fills part of its chunk
          padded = np.zeros(full, chunk.dtype)
          padded[:chunk.shape[0], :chunk.shape[1]] = chunk
          chunk = padded
        offset, nbytes = self._chunks[n][(i, j)]
        assert chunk.nbytes == nbytes, (chunk.nbytes, nbytes)
        self._pwrite(chunk.tobytes(), offset, f'block ({i}, {j})')
      records.append((i, j, np.uint64(self._crc(cast)) | DONE_FLAG))
    self._sync()
    state_offset = self._chunks[STATE][()][0]
    b2 = self.grid.shape[1]
    for i, j, rec in records:
      self._pwrite(np.array([rec], '<u8').tobytes(),
                   state_offset + 8 * (i * b2 + j), f'the record of ({i}, {j})')
    self._sync()
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
      StoreCorruptError: the file cannot be read.
    """
    name = self.names[0] if name is None else name
    if not allow_incomplete and not self.complete:
      missing = int((~self._done_cache).sum())
      raise StoreError(f'{self.path} is incomplete: {missing} of '
                       f'{self.grid.n_blocks} blocks are missing; resume the '
                       f'computation first.')
    ds = self.dataset(name)
    try:
      return ds[...]
    except Exception as e:  # pylint: disable=broad-except
      raise StoreCorruptError(f'{self.path} is corrupted: reading `/{name}` '
                              f'failed ({type(e).__name__}: {e}).') from None

  def close(self):
    """Closes the file (and releases the writer's lock)."""
    if self._f:
      self._f.close()
      self._f = None
    if self._fd is not None:
      os.close(self._fd)
      self._fd = None
    if self._lock is not None:
      self._lock.release()
      self._lock = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __repr__(self):
    return (f'KernelStore({self.path!r}, names={self.names}, '
            f'done={self.n_done}/{self.grid.n_blocks})')
