"""The HDF5 layout of a kernel store: writing an empty one, checking one, and
where its blocks live in the file (see `nt_gp.store` for the format).

A damaged HDF5 file can crash the HDF5 library itself (a segmentation fault
while reading the attributes of a file with one flipped byte, for example),
so nothing of a store is given to HDF5 before it is known to be intact. The
file's HDF5 *user block* (bytes HDF5 reserves for the application before its
superblock) holds our own header:

  offset 0   b'NTGP.KS\x02', then the user block size and the header length
             (little-endian uint64 each)
  then       the header: JSON (file size, the SHA-256 of every byte of HDF5
             metadata, where `/block_state` lies) and the byte ranges that
             hold block data (little-endian int64 pairs)
  then       the SHA-256 of the header

HDF5 writes its metadata once, when the store is created; afterwards only
block data and block records change (`os.pwrite`). `read_header` checks the
header, the file size and the metadata's SHA-256 before HDF5 opens the file.

Example:
  >>> import os, tempfile
  >>> import h5py
  >>> from nt_gp.blocks import BlockGrid
  >>> path = os.path.join(tempfile.mkdtemp(), 'k.h5')
  >>> grid = BlockGrid(5, 5, 2, 2)
  >>> write_empty(path, {'arch': 'x'}, grid, {'nngp': ((), 'float64')}, {},
  ...             None, fsync=False)
  >>> header = read_header(path)
  >>> header['userblock']
  4096
  >>> with h5py.File(path, 'r') as f:
  ...   check_layout(path, f) == grid
  ...   offsets = block_offsets(path, f, ['nngp'], grid, header)
  True
  >>> len(offsets['nngp']), offsets['nngp'][(2, 2)][1]     # bytes per chunk
  (9, 32)
"""
import hashlib
import json
import os
import struct
from typing import Dict, List, Optional, Tuple

import h5py
import numpy as np

from nt_gp.blocks import BlockGrid
from nt_gp.store_errors import StoreCorruptError

__all__ = ['FORMAT', 'FORMAT_VERSION', 'STATE', 'required_bytes',
           'read_header', 'check_layout', 'write_empty', 'block_offsets',
           'remove_stale_temporaries']

FORMAT = 'nt_gp.kernel_store'
FORMAT_VERSION = 2      # 1: no user block header (no metadata checksum)
HDF5_SIGNATURE = b'\x89HDF\r\n\x1a\n'
MAGIC = b'NTGP.KS\x02'
STATE = 'block_state'
MAX_CHUNK_BYTES = 2 ** 32 - 1   # HDF5's limit on one chunk
# Each entry of a block map: (file offset, bytes).
Offsets = Dict[str, Dict[Tuple[int, ...], Tuple[int, int]]]


def corrupt(path, what) -> StoreCorruptError:
  """The error for a store whose structure is damaged.

  Example:
    >>> str(corrupt('k.h5', 'its header is damaged'))[:44]
    'k.h5 is not a valid nt_gp kernel store: its '
  """
  return StoreCorruptError(f'{path} is not a valid nt_gp kernel store: '
                           f'{what}. Delete it (or move it away) and '
                           f'recompute.')


def required_bytes(grid: BlockGrid,
                   outputs: Dict[str, Tuple[Tuple[int, ...], str]]) -> int:
  """Bytes a store of `grid` and `outputs` occupies once complete (edge
  blocks take a whole chunk; HDF5's own metadata is not counted).

  Example:
    >>> required_bytes(BlockGrid(5, 5, 2, 2), {'ntk': ((), 'float32')})
    216
  """
  b1, b2 = grid.shape
  total = b1 * b2 * 8                                   # /block_state
  for trailing, dtype in outputs.values():
    total += (b1 * b2 * grid.rows * grid.cols * int(np.prod(trailing)) *
              np.dtype(dtype).itemsize)
  return total


def _ranges_between(size: int, start: int, holes: List[Tuple[int, int]]):
  """The byte ranges of ``[start, size)`` outside the sorted `holes`."""
  pos = start
  for a, b in holes:
    if a > pos:
      yield pos, a
    pos = max(pos, b)
  if pos < size:
    yield pos, size


def _metadata_sha256(f, size: int, start: int, holes) -> str:
  h = hashlib.sha256()
  for a, b in _ranges_between(size, start, holes):
    f.seek(a)
    while a < b:
      piece = f.read(min(b - a, 1 << 20))
      if not piece:
        raise EOFError
      h.update(piece)
      a += len(piece)
  return h.hexdigest()


def _merge(spans) -> List[Tuple[int, int]]:
  out = []
  for a, b in sorted(spans):
    if out and out[-1][1] == a:
      out[-1] = (out[-1][0], b)
    else:
      out.append((a, b))
  return out


def _encode_header(userblock: int, info: dict, runs) -> bytes:
  text = json.dumps(info, sort_keys=True).encode('utf-8')
  body = struct.pack('<Q', len(text)) + text + np.asarray(
      runs, '<i8').reshape(-1).tobytes()
  head = MAGIC + struct.pack('<QQ', userblock, len(body)) + body
  return head + hashlib.sha256(head).digest()


def read_header(path) -> Optional[dict]:
  """Checks the user block header, the file size and the SHA-256 of the HDF5
  metadata, without HDF5; returns the header (``userblock``, ``runs``,
  ``state``), or None for a store of format 1 (no header).

  Raises:
    StoreCorruptError: the file is empty, not HDF5, or anything checked here
      does not match.

  Example:
    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile(suffix='.h5') as f:
    ...   read_header(f.name)
    Traceback (most recent call last):
    ...
    nt_gp.store_errors.StoreCorruptError: ... is an empty file (0 bytes), not a kernel store; ...
  """
  try:
    size = os.path.getsize(path)
    with open(path, 'rb') as f:
      head = f.read(24)
      if not head:
        raise StoreCorruptError(
            f'{path} is an empty file (0 bytes), not a kernel store; it is '
            f'left untouched. Delete it (or choose another output file) to '
            f'start a new store.')
      if head[:8] == HDF5_SIGNATURE:
        return None                                  # format 1
      if head[:8] != MAGIC or len(head) < 24:
        raise StoreCorruptError(
            f'{path} is not a kernel store (it does not start with nt_gp\'s '
            f'or HDF5\'s signature); it is left untouched. Delete it (or '
            f'choose another output file) to start a new store.')
      userblock, length = struct.unpack('<QQ', head[8:24])
      if not (512 <= userblock <= size and userblock & (userblock - 1) == 0
              and 24 + length + 32 <= userblock):
        raise corrupt(path, 'its header is damaged')
      body = f.read(length)
      digest = f.read(32)
      if hashlib.sha256(head + body).digest() != digest:
        raise corrupt(path, 'its header does not match its checksum')
      (n,) = struct.unpack('<Q', body[:8])
      info = json.loads(body[8:8 + n].decode('utf-8'))
      runs = np.frombuffer(body[8 + n:], '<i8').reshape(-1, 2)
      if info.get('file_size') != size:
        raise corrupt(path, f'it has {size} bytes, its header says '
                            f'{info.get("file_size")} (truncated or '
                            f'extended)')
      state = tuple(info['state'])
      holes = sorted([tuple(int(v) for v in r) for r in runs] + [state])
      f.seek(userblock)
      if f.read(8) != HDF5_SIGNATURE:
        raise corrupt(path, 'its HDF5 superblock is missing')
      if _metadata_sha256(f, size, userblock, holes) != info['metadata_sha256']:
        raise corrupt(path, 'its HDF5 metadata do not match their checksum')
  except StoreCorruptError:
    raise
  except (OSError, ValueError, KeyError, TypeError, EOFError,
          struct.error) as e:
    raise corrupt(path, f'its header cannot be read ({type(e).__name__})'
                  ) from None
  return {'userblock': userblock, 'runs': [tuple(map(int, r)) for r in runs],
          'state': state}


def remove_stale_temporaries(path):
  """Removes ``<path>.tmp-*`` files of creations that were killed (call it
  while holding the store's lock: then no live process is creating one).

  Example:
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> open(os.path.join(d, 'k.h5.tmp-host-123'), 'w').close()
    >>> remove_stale_temporaries(os.path.join(d, 'k.h5')); os.listdir(d)
    []
  """
  folder = os.path.dirname(os.path.abspath(path))
  prefix = os.path.basename(path) + '.tmp-'
  try:
    names = os.listdir(folder)
  except OSError:
    return
  for name in names:
    if name.startswith(prefix):
      try:
        os.unlink(os.path.join(folder, name))
      except OSError:
        pass


def _chunk_map(f: h5py.File, names, grid: BlockGrid) -> Offsets:
  """``{name: {(i, j): (offset, bytes)}}`` of every block's chunk (in the
  order HDF5 lists them), and ``{STATE: {(): (offset, bytes)}}``."""
  out = {}
  for name in names:
    ds = f[name]
    blocks = {}

    def add(info, blocks=blocks):
      if info.filter_mask:
        raise ValueError('a filtered chunk')
      coord = tuple(int(c) for c in info.chunk_offset)
      if coord[0] % grid.rows or coord[1] % grid.cols or any(coord[2:]):
        raise ValueError(f'a chunk at {coord}')
      blocks[(coord[0] // grid.rows, coord[1] // grid.cols)] = (
          int(info.byte_offset), int(info.size))
    if hasattr(ds.id, 'chunk_iter'):
      ds.id.chunk_iter(add)
    else:   # HDF5 < 1.14
      for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
          add(ds.id.get_chunk_info_by_coord(
              (i * grid.rows, j * grid.cols) + (0,) * (ds.ndim - 2)))
    out[name] = blocks
  state = f[STATE]
  offset = state.id.get_offset()
  out[STATE] = {(): (-1 if offset is None else int(offset),
                     int(state.id.get_storage_size()))}
  return out


def _write_hdf5(path, userblock, fingerprint, grid, outputs, meta, probe):
  """The HDF5 part of an empty store; returns its block map."""
  with h5py.File(path, 'w', libver='earliest', locking=False,
                 userblock_size=userblock) as f:
    f.attrs['format'] = FORMAT
    f.attrs['format_version'] = FORMAT_VERSION
    f.attrs['fingerprint'] = json.dumps(fingerprint, sort_keys=True)
    f.attrs['grid'] = json.dumps(
        {'n1': grid.n1, 'n2': grid.n2, 'rows': grid.rows, 'cols': grid.cols,
         'symmetric': grid.symmetric})
    f.attrs['names'] = json.dumps(list(outputs))
    f.attrs['meta'] = json.dumps(meta or {}, sort_keys=True)
    if probe is not None:
      f.attrs['probe'] = json.dumps(probe, sort_keys=True)
    for name, (trailing, dtype) in outputs.items():
      trailing = tuple(int(d) for d in trailing)
      dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
      dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
      dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
      f.create_dataset(name, shape=(grid.n1, grid.n2) + trailing,
                       dtype=np.dtype(dtype),
                       chunks=(grid.rows, grid.cols) + trailing, dcpl=dcpl,
                       track_times=False)
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    f.create_dataset(STATE, shape=grid.shape, dtype=np.uint64, fillvalue=0,
                     dcpl=dcpl, track_times=False)
    return _chunk_map(f, list(outputs), grid)


def write_empty(path, fingerprint: dict, grid: BlockGrid,
                outputs: Dict[str, Tuple[Tuple[int, ...], str]], meta: dict,
                probe, fsync: bool):
  """Writes a complete, empty store (all storage allocated, no block done)
  to `path`, with the user block header (see the module docstring for an
  example)."""
  userblock = 4096
  while True:
    chunks = _write_hdf5(path, userblock, fingerprint, grid, outputs, meta,
                         probe)
    runs = _merge(span for name, blocks in chunks.items() if name != STATE
                  for span in ((o, o + n) for o, n in blocks.values()))
    (state_offset, state_bytes), = chunks[STATE].values()
    state = (state_offset, state_offset + state_bytes)
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
      info = {'file_size': size, 'state': list(state),
              'metadata_sha256': _metadata_sha256(
                  f, size, userblock, sorted(runs + [state]))}
      header = _encode_header(userblock, info, runs)
      if len(header) <= userblock:
        f.seek(0)
        f.write(header)
        f.flush()
        if fsync:
          os.fsync(f.fileno())
        return
    os.unlink(path)                 # too many ranges: a larger user block
    userblock = 1 << max(len(header) - 1, 1).bit_length()


def check_layout(path, f: h5py.File) -> BlockGrid:
  """Checks the attributes, datasets, shapes and chunking of an open store
  (after `read_header`); returns its grid (see the module docstring for an
  example)."""
  attrs = f.attrs
  if attrs.get('format') != FORMAT:
    raise corrupt(path, 'the `format` attribute is missing (not written by '
                        'nt_gp, or damaged)')
  version = attrs.get('format_version')
  if version not in (1, FORMAT_VERSION):
    raise corrupt(path, f'unsupported format_version {version!r}')
  for key in ('fingerprint', 'grid', 'names') + (
      ('probe',) if 'probe' in attrs else ()):
    if key not in attrs:
      raise corrupt(path, f'attribute `{key}` is missing')
    try:
      json.loads(attrs[key])
    except (TypeError, ValueError):
      raise corrupt(path, f'attribute `{key}` is not valid JSON') from None
  g = json.loads(attrs['grid'])
  try:
    grid = BlockGrid(g['n1'], g['n2'], g['rows'], g['cols'],
                     symmetric=g['symmetric'])
  except (KeyError, TypeError, ValueError) as e:
    raise corrupt(path, f'attribute `grid` is invalid ({e})') from None
  names = json.loads(attrs['names'])
  if not names or not isinstance(names, list) or not all(
      isinstance(n, str) for n in names):
    raise corrupt(path, 'no stored quantities')
  for name in list(names) + [STATE]:
    if name not in f or not isinstance(f[name], h5py.Dataset):
      raise corrupt(path, f'dataset `/{name}` is missing')
  for name in names:
    ds = f[name]
    if ds.shape[:2] != (grid.n1, grid.n2):
      raise corrupt(path, f'dataset `/{name}` has shape {ds.shape}, expected '
                          f'({grid.n1}, {grid.n2}, ...)')
    if ds.chunks is None or ds.chunks[:2] != (grid.rows, grid.cols) or (
        ds.chunks[2:] != ds.shape[2:]):
      raise corrupt(path, f'dataset `/{name}` is not chunked by blocks of '
                          f'{grid.rows} x {grid.cols}')
    if ds.dtype not in (np.float32, np.float64):
      raise corrupt(path, f'dataset `/{name}` has dtype {ds.dtype}')
    if ds.id.get_create_plist().get_nfilters():
      raise corrupt(path, f'dataset `/{name}` is compressed or filtered')
  state = f[STATE]
  if state.shape != grid.shape or state.dtype != np.uint64:
    raise corrupt(path, f'dataset `/{STATE}` has shape {state.shape} and '
                        f'dtype {state.dtype}, expected {grid.shape} uint64')
  return grid


def block_offsets(path, f: h5py.File, names, grid: BlockGrid,
                  header: dict) -> Offsets:
  """Where each block's chunk (and the block records) live in the file; the
  chunks must exactly fill the data ranges of the checked `header`, so a
  write can never land outside them (example: the module docstring)."""
  try:
    chunks = _chunk_map(f, names, grid)
  except (ValueError, RuntimeError, OSError, KeyError) as e:
    raise corrupt(path, f'the index of its blocks cannot be read ({e})'
                  ) from None
  for name in names:
    if len(chunks[name]) != grid.n_blocks:
      raise corrupt(path, f'`/{name}` has {len(chunks[name])} blocks, '
                          f'expected {grid.n_blocks}')
  runs = _merge(span for name in names for span in (
      (o, o + n) for o, n in chunks[name].values()))
  (state_offset, state_bytes), = chunks[STATE].values()
  if runs != [tuple(r) for r in header['runs']] or (
      (state_offset, state_offset + state_bytes) != tuple(header['state'])):
    raise corrupt(path, 'the index of its blocks does not match its header')
  return chunks
