"""`PanelFile`: the column panels of a Cholesky factor in a resumable HDF5 file.

An out-of-core Cholesky factor ``L`` of an ``N x N`` matrix is kept as column
panels: panel ``j`` holds rows ``s_j .. N-1`` of columns ``s_j .. e_j-1``
(its diagonal block on top, the part below the diagonal underneath). The file
records which panels are finished, with the same crash-safety argument as
`nt_gp.store.KernelStore`:

* the file is created under a temporary name, fully allocated
  (``H5D_ALLOC_TIME_EARLY``, contiguous layout, no fill writes) and flushed,
  then linked to its final name; it exists completely or not at all;
* writing a panel only overwrites raw bytes at fixed offsets (no HDF5
  metadata changes), is flushed and fsync-ed, and only then recorded as done
  by an 8-byte ``DONE_FLAG | crc32`` write into ``/panel_state``, flushed
  again;
* computing panel ``j`` reads only the input matrix and panels ``< j``, so it
  is idempotent: a panel killed mid-write is not recorded and is simply
  computed again; on reopening, every recorded panel is checked against its
  CRC.

The file also records what it is a factor of (`identity`: the matrix, the
regulariser, the panel bounds); opening it for anything else raises
`PanelFileMismatchError` and leaves it untouched.

Layout::

  /panel_<j>     (N - s_j, e_j - s_j) float64 (or float32), contiguous
  /panel_state   (P,) uint64: 0 = missing, else DONE_FLAG | crc32(panel)
  attrs          format, format_version, bounds, identity (JSON)

Example:
  >>> import os, tempfile
  >>> import numpy as np
  >>> path = os.path.join(tempfile.mkdtemp(), 'f.h5')
  >>> with PanelFile.create(path, [0, 2, 3], {'what': 'example'}) as pf:
  ...   pf.write_panel(0, np.ones((3, 2)))
  ...   pf.n_done, pf.is_done(1)
  (1, False)
  >>> with PanelFile.open(path, {'what': 'example'}) as pf:
  ...   pf.read_rows(0, 1, 3).tolist()
  [[1.0, 1.0], [1.0, 1.0]]
"""
import json
import os
import zlib
from typing import Optional, Sequence

import h5py
import numpy as np

from nt_gp.store import DONE_FLAG

__all__ = ['PanelFile', 'PanelFileError', 'PanelFileMismatchError']

FORMAT = 'nt_gp.cholesky_panels'
FORMAT_VERSION = 1
_STATE = 'panel_state'
_CRC_ROWS_BYTES = 64 * 2 ** 20


class PanelFileError(ValueError):
  """A panel file cannot be used (corrupted, or not a panel file).

  Example:
    >>> issubclass(PanelFileMismatchError, PanelFileError)
    True
  """


class PanelFileMismatchError(PanelFileError):
  """The panel file was made for another matrix, regulariser or panel plan.

  Example:
    >>> str(PanelFileMismatchError('f.h5 differs'))
    'f.h5 differs'
  """


def _canonical(identity) -> str:
  return json.dumps(identity, sort_keys=True)


class PanelFile:
  """Column panels of a Cholesky factor (see the module docstring).

  Create with `PanelFile.create`, reopen with `PanelFile.open`.

  Attributes:
    path: the file.
    bounds: ``(P + 1,)`` int array: panel ``j`` is columns
      ``bounds[j]:bounds[j+1]``.
    n: the matrix size (``bounds[-1]``).
    identity: what the factor is of (JSON-serialisable dict).
  """

  def __init__(self, path: str, f: h5py.File, fsync: bool):
    self.path = path
    self._f = f
    self._fsync = fsync
    self.bounds = np.asarray(json.loads(f.attrs['bounds']), np.int64)
    self.n = int(self.bounds[-1])
    self.identity = json.loads(f.attrs['identity'])
    self._state = f[_STATE]
    self._done = self._state[...] != 0

  @classmethod
  def create(cls, path, bounds: Sequence[int], identity: dict,
             dtype=np.float64, fsync: bool = True) -> 'PanelFile':
    """Creates an empty panel file; refuses to replace an existing file.

    Args:
      path: file to create.
      bounds: increasing panel bounds, from 0 to N.
      identity: JSON-serialisable description of what is factored.
      dtype: float64 or float32.
      fsync: fsync after each panel (survives power loss).
    """
    path = os.fspath(path)
    if os.path.exists(path):
      raise FileExistsError(f'{path} already exists; refusing to overwrite '
                            f'it.')
    bounds = [int(b) for b in bounds]
    if bounds[0] != 0 or any(b <= a for a, b in zip(bounds, bounds[1:])):
      raise ValueError(f'Panel bounds must increase from 0, got {bounds}.')
    n = bounds[-1]
    tmp = f'{path}.tmp-{os.getpid()}'
    try:
      with h5py.File(tmp, 'w', libver='earliest') as f:
        f.attrs['format'] = FORMAT
        f.attrs['format_version'] = FORMAT_VERSION
        f.attrs['bounds'] = json.dumps(bounds)
        f.attrs['identity'] = _canonical(identity)
        for j, (s, e) in enumerate(zip(bounds, bounds[1:])):
          dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
          dcpl.set_layout(h5py.h5d.CONTIGUOUS)
          dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
          dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
          f.create_dataset(f'panel_{j}', shape=(n - s, e - s), dtype=dtype,
                           dcpl=dcpl, track_times=False)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        f.create_dataset(_STATE, shape=(len(bounds) - 1,), dtype=np.uint64,
                         fillvalue=0, dcpl=dcpl, track_times=False)
        f.flush()
        if fsync:
          os.fsync(f.id.get_vfd_handle())
      try:
        os.link(tmp, path)
      except FileExistsError:
        raise FileExistsError(f'{path} already exists; refusing to overwrite '
                              f'it.') from None
    finally:
      if os.path.exists(tmp):
        os.unlink(tmp)
    return cls.open(path, identity, verify=False, fsync=fsync)

  @classmethod
  def open(cls, path, identity: Optional[dict] = None, verify: bool = True,
           fsync: bool = True) -> 'PanelFile':
    """Opens a panel file to continue it.

    Args:
      path: the file.
      identity: if given, must equal the recorded one, else
        `PanelFileMismatchError`.
      verify: check every recorded panel against its CRC.
      fsync: see `create`.

    Raises:
      PanelFileError: not a readable panel file, or a recorded panel whose
        bytes do not match its CRC.
      PanelFileMismatchError: made for something else.
    """
    path = os.fspath(path)
    try:
      f = h5py.File(path, 'r+')
    except OSError as e:
      raise PanelFileError(f'{path} is not a readable HDF5 file ({e}); delete '
                           f'it to start the factorisation over.') from None
    try:
      attrs = f.attrs
      if attrs.get('format') != FORMAT or attrs.get(
          'format_version') != FORMAT_VERSION or _STATE not in f:
        raise PanelFileError(f'{path} is not an nt_gp panel file (format '
                             f'{attrs.get("format")!r}); delete or move it.')
      pf = cls(path, f, fsync)
      if identity is not None and _canonical(identity) != _canonical(
          pf.identity):
        stored, wanted = pf.identity, json.loads(_canonical(identity))
        keys = sorted(k for k in set(stored) | set(wanted)
                      if stored.get(k) != wanted.get(k))
        raise PanelFileMismatchError(
            f'{path} holds the factor of another computation ({", ".join(keys)}'
            f' differ); it is left untouched. Use another work folder, or '
            f'delete the file to start over.')
      if verify:
        pf.verify()
    except BaseException:
      f.close()
      raise
    return pf

  # -- state -------------------------------------------------------------------
  @property
  def n_panels(self) -> int:
    return len(self.bounds) - 1

  @property
  def n_done(self) -> int:
    """Number of panels recorded as done."""
    return int(self._done.sum())

  @property
  def complete(self) -> bool:
    return bool(self._done.all())

  def is_done(self, j: int) -> bool:
    """Whether panel `j` is recorded as done."""
    return bool(self._done[j])

  def _crc(self, j: int) -> int:
    ds = self._f[f'panel_{j}']
    rows = max(1, _CRC_ROWS_BYTES // max(ds.shape[1] * ds.dtype.itemsize, 1))
    crc = 0
    for r0 in range(0, ds.shape[0], rows):
      piece = ds[r0:r0 + rows]
      crc = zlib.crc32(piece.view(np.uint8).reshape(-1), crc)
    return crc

  def verify(self):
    """Checks each recorded panel's bytes against its CRC."""
    state = self._state[...]
    for j in np.flatnonzero(state):
      if np.uint64(self._crc(int(j))) != state[j] & np.uint64(0xFFFFFFFF):
        raise PanelFileError(
            f'{self.path} is corrupted: panel {j} is recorded as done but its '
            f'bytes do not match the recorded checksum. Delete the file to '
            f'start the factorisation over.')

  # -- panels ------------------------------------------------------------------
  def write_panel(self, j: int, panel: np.ndarray):
    """Writes panel `j`, makes it durable, then records it as done."""
    ds = self._f[f'panel_{j}']
    if panel.shape != ds.shape:
      raise ValueError(f'Panel {j} has shape {panel.shape}, expected '
                       f'{ds.shape}.')
    panel = np.ascontiguousarray(panel, ds.dtype)
    ds.write_direct(panel)
    crc = zlib.crc32(panel.view(np.uint8).reshape(-1))
    self._flush()
    self._state[j] = np.uint64(crc) | DONE_FLAG
    self._flush()
    self._done[j] = True

  def read_rows(self, j: int, r0: int, r1: int,
                out: Optional[np.ndarray] = None) -> np.ndarray:
    """Rows ``r0:r1`` (global indices, ``>= bounds[j]``) of panel `j`."""
    s = int(self.bounds[j])
    if r0 < s or r1 > self.n or r1 < r0:
      raise IndexError(f'Rows {r0}:{r1} are outside panel {j} (rows {s}:'
                       f'{self.n}).')
    ds = self._f[f'panel_{j}']
    if out is None:
      out = np.empty((r1 - r0, ds.shape[1]), ds.dtype)
    if r1 > r0:
      ds.read_direct(out, np.s_[r0 - s:r1 - s])
    return out

  def _flush(self):
    self._f.flush()
    if self._fsync:
      os.fsync(self._f.id.get_vfd_handle())

  def close(self):
    if self._f:
      self._f.close()
      self._f = None

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def __repr__(self):
    return (f'PanelFile({self.path!r}, n={self.n}, panels '
            f'{self.n_done}/{self.n_panels})')
