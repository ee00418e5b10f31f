"""The HDF5 kernel store: contents (also with ragged blocks), refusal of
mismatched, damaged, read-only or locked files, errors instead of overflowed
kernels, crash safety under SIGKILL, and memory bounded by the block size."""
import errno
import hashlib
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from nt_gp import stax
from nt_gp.blocks import BlockGrid
from nt_gp.distributed import LocalRunner, compute_kernel
from nt_gp.nonfinite import NonFiniteKernelError
from nt_gp.store import (KernelStore, StoreCorruptError, StoreExistsError,
                         StoreLockedError, StoreMismatchError,
                         StoreReadOnlyError, StoreWriteError)

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')


def sha256(path):
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def mlp(w_std=1.5):
  return stax.serial(stax.Dense(8, w_std, 0.05), stax.Erf(), stax.Dense(1))[2]


@pytest.fixture(scope='module')
def data():
  rng = np.random.RandomState(0)
  return rng.randn(8, 3), rng.randn(12, 3)


def compute(x1, x2=None, **kw):
  kw = dict(dict(arch='mlp', get=('nngp', 'ntk'), batch_size=4,
                 progress=False, runner=LocalRunner(1)), **kw)
  kernel_fn = kw.pop('kernel_fn', None) or mlp()
  return compute_kernel(kernel_fn, x1, x2, **kw)


@pytest.fixture
def store_path(tmp_path, data):
  """A complete symmetric nngp+ntk store of `data[0]`."""
  path = tmp_path / 'k.h5'
  compute(data[0], out=path)
  return path


def chunk_of(path, name, i, j):
  """`(file offset, bytes)` of block (i, j) of `/name`."""
  with h5py.File(path, 'r') as f:
    ds = f[name]
    info = ds.id.get_chunk_info_by_coord((i * ds.chunks[0], j * ds.chunks[1]))
    return info.byte_offset, info.size


def patch_bytes(path, offset, data):
  with open(path, 'r+b') as f:
    f.seek(offset)
    f.write(data)


@pytest.mark.parametrize('n1, n2, batch_size', [(8, 12, 4), (7, 5, 3),
                                                (7, 5, 8)])
def test_contents_equal_unbatched(tmp_path, data, n1, n2, batch_size):
  """Any block size: the last row/column of blocks may be smaller."""
  rng = np.random.RandomState(1)
  x1, x2 = rng.randn(n1, 3), rng.randn(n2, 3)
  path = tmp_path / 'sym.h5'
  compute(x1, out=path, batch_size=batch_size)
  want = mlp()(x1, None, ('nngp', 'ntk'))
  with KernelStore.open(path) as s:
    assert s.complete and s.names == ('nngp', 'ntk')
    np.testing.assert_allclose(s.read('nngp'), want.nngp, rtol=1e-12)
    np.testing.assert_allclose(s.read('ntk'), want.ntk, rtol=1e-12)
    assert s.fingerprint['arch'] == 'mlp'
    assert s.fingerprint['x1']['shape'] == [n1, 3]
  out = tmp_path / 'cross.h5'
  compute(x1.astype(np.float32), x2.astype(np.float32), out=out, get='ntk',
          batch_size=batch_size)
  with KernelStore.open(out) as s:
    k = s.read()
    assert k.dtype == np.float32 and k.shape == (n1, n2)
    np.testing.assert_allclose(
        k, mlp()(x1.astype(np.float32), x2.astype(np.float32), 'ntk'),
        rtol=2e-5)


def test_ragged_block_shapes_are_checked(tmp_path):
  grid = BlockGrid(5, 5, 2, 2)
  with KernelStore.create(tmp_path / 'r.h5', {'a': 1}, grid,
                          {'nngp': ((3,), 'float64')}) as s:
    s.write_blocks([(2, 1, {'nngp': np.ones((1, 2, 3))})])
    with pytest.raises(ValueError, match=r'expected \(1, 1, 3\)'):
      s.write_blocks([(2, 2, {'nngp': np.ones((2, 2, 3))})])
  with KernelStore.open(tmp_path / 'r.h5') as s:
    k = s.read(allow_incomplete=True)
    assert k.shape == (5, 5, 3) and (k[4:, 2:4] == 1).all()
    assert s.done.sum() == 1 and s.done[2, 1]


def test_existing_file_is_never_overwritten(store_path, data):
  before = sha256(store_path)
  with pytest.raises(StoreExistsError, match='refusing to overwrite'):
    compute(data[0], out=store_path)
  grid = BlockGrid(8, 8, 4, 4, symmetric=True)
  with pytest.raises(StoreExistsError):
    KernelStore.create(store_path, {}, grid, {'nngp': ((), 'float64')})
  assert sha256(store_path) == before
  assert not os.path.exists(f'{store_path}.lock')


@pytest.mark.parametrize('change', ['inputs', 'arch', 'get', 'batch_size',
                                    'dtype'])
def test_mismatched_store_is_refused(store_path, data, change):
  x1 = data[0]
  kw = dict(arch='mlp', get=('nngp', 'ntk'), batch_size=4, dtype='float64')
  if change == 'inputs':
    x1 = x1.copy()
    x1[3, 1] += 1e-9
  elif change == 'arch':
    kw['arch'] = {'preset': 'fcn', 'args': {'depth': 2}}
  elif change == 'get':
    kw['get'] = 'nngp'
  elif change == 'batch_size':
    kw['batch_size'] = 2
  else:
    kw['dtype'] = 'float32'
  before = sha256(store_path)
  want = {'inputs': r'\(x1 differs', 'arch': r'\(arch differs',
          'get': r'\(get differs', 'batch_size': r'\(batch_size differs',
          'dtype': r'\(dtype differs.*; x1 differs'}
  with pytest.raises(StoreMismatchError, match=want[change]):
    compute(x1, out=store_path, resume=True, **kw)
  assert sha256(store_path) == before


def test_changed_architecture_is_refused_by_the_probe(store_path, data):
  """Same declared identity, another kernel (as when an imported helper
  changed): the probe kernel differs and the store is left untouched."""
  before = sha256(store_path)
  with pytest.raises(StoreMismatchError,
                     match='now computes a different kernel.*nngp'):
    compute(data[0], out=store_path, resume=True, kernel_fn=mlp(1.6))
  assert sha256(store_path) == before
  compute(data[0], out=store_path, resume=True)   # the same one is accepted


def test_resume_of_complete_store_computes_nothing(store_path, data):
  lines = []
  compute(data[0], out=store_path, resume=True, log=lines.append)
  assert lines == []


@pytest.mark.parametrize('content', [b'', b'not an hdf5 file' * 100,
                                     'truncated'])
def test_unreadable_file_is_refused_and_left_untouched(tmp_path, store_path,
                                                       data, content):
  path = tmp_path / 'bad.h5'
  if content == 'truncated':
    content = store_path.read_bytes()[:-1000]
  path.write_bytes(content)
  with pytest.raises(StoreCorruptError, match='not a kernel store|truncated'):
    KernelStore.open(path)
  with pytest.raises(StoreCorruptError):
    compute(data[0], out=path, resume=True)
  assert path.read_bytes() == content
  assert sorted(os.listdir(tmp_path)) == ['bad.h5', 'k.h5']


def test_foreign_hdf5_file_is_refused(tmp_path):
  path = tmp_path / 'other.h5'
  with h5py.File(path, 'w') as f:
    f['nngp'] = np.zeros((2, 2))
  with pytest.raises(StoreCorruptError, match='`format` attribute is missing'):
    KernelStore.open(path)


def test_edited_metadata_is_refused(store_path):
  """A change made with HDF5 itself (here: a deleted dataset) no longer
  matches the checksum of the metadata."""
  with h5py.File(store_path, 'r+') as f:
    del f['ntk']
  with pytest.raises(StoreCorruptError, match='metadata do not match'):
    KernelStore.open(store_path)


FLIPS = textwrap.dedent('''
    import collections, json, os, sys, tempfile
    import numpy as np
    from nt_gp.blocks import BlockGrid
    from nt_gp.store import KernelStore, StoreCorruptError, StoreError
    from nt_gp.store_layout import read_header
    folder = sys.argv[1]
    path = os.path.join(folder, 'k.h5')
    grid = BlockGrid(9, 9, 4, 4, symmetric=True)
    rng = np.random.RandomState(0)
    a, b = rng.randn(9, 9), rng.randn(9, 9)
    with KernelStore.create(path, {'x': 1}, grid, {'nngp': ((), 'float64'),
                            'ntk': ((), 'float32')}, probe={'p': 1}) as s:
      for i in range(3):
        for j in range(3):
          r, c = grid.rows_of(i), grid.cols_of(j)
          s.write_blocks([(i, j, {'nngp': a[r, c], 'ntk': b[r, c]})])
    header = read_header(path)
    data = open(path, 'rb').read()
    skip = np.zeros(len(data), bool)     # block data: covered by block CRCs
    for start, stop in header['runs']:
      skip[start:stop] = True
    with open(path, 'rb') as f:          # the user block's unused bytes
      f.seek(16)
      length = int.from_bytes(f.read(8), 'little')
    skip[24 + length + 32:header['userblock']] = True
    # Every byte of the header, the HDF5 superblock and the root group's
    # header, and every third byte after them.
    first = header['userblock'] + 1024
    offsets = np.flatnonzero(~skip & ((np.arange(len(data)) < first) |
                                      (np.arange(len(data)) % 3 == 0)))
    flipped = os.path.join(folder, 'f.h5')
    outcome = collections.Counter()
    other = []
    for k in offsets.tolist():
      with open(flipped, 'wb') as f:
        f.write(data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1:])
      try:
        with KernelStore.open(flipped, verify=True) as s:
          same = (np.array_equal(s.read('nngp'), a) and
                  np.array_equal(s.read('ntk'), b.astype(np.float32)) and
                  s.fingerprint == {'x': 1} and s.probe == {'p': 1})
        outcome['correct' if same else 'wrong data'] += 1
      except StoreCorruptError:
        outcome['StoreCorruptError'] += 1
      except Exception as e:  # pylint: disable=broad-except
        outcome[type(e).__name__] += 1
        other.append((k, repr(e)[:300]))
    print(json.dumps({'flipped': len(offsets), 'size': len(data),
                      'outcome': outcome, 'other': other[:5]}))
''')


def test_byte_flips_outside_block_data_are_detected(tmp_path):
  """Bytes of the file outside block data (covered by the blocks' CRCs) and
  the user block's unused padding, flipped one at a time (all of the first
  kilobytes, every third one after): opening the store either fails with
  StoreCorruptError or reads the right kernel.
  (Runs in a subprocess: a damaged HDF5 file can crash HDF5 itself, which
  the store must prevent by checking before HDF5 reads anything.)"""
  script = tmp_path / 'flips.py'
  script.write_text(FLIPS)
  proc = subprocess.run([sys.executable, str(script), str(tmp_path)],
                        capture_output=True, text=True, cwd=ROOT, timeout=900,
                        env=ENV)
  assert proc.returncode == 0, proc.stderr[-3000:]
  res = json.loads(proc.stdout.strip().splitlines()[-1])
  assert res['flipped'] > 4000, res
  assert set(res['outcome']) <= {'StoreCorruptError', 'correct'}, res
  assert res['outcome']['StoreCorruptError'] > 0.9 * res['flipped'], res


def test_data_not_matching_record_is_refused(store_path, data):
  offset, _ = chunk_of(store_path, 'nngp', 1, 0)
  with open(store_path, 'r+b') as f:       # block (1, 0): recorded as done
    f.seek(offset + 8)
    value = np.frombuffer(f.read(8), '<f8')[0]
    f.seek(offset + 8)
    f.write(np.array([value + 1e-6], '<f8').tobytes())
  with pytest.raises(StoreCorruptError,
                     match=r'block \(1, 0\) is recorded as done but its data'):
    KernelStore.open(store_path)
  before = sha256(store_path)
  with pytest.raises(StoreCorruptError):
    compute(data[0], out=store_path, resume=True)
  assert sha256(store_path) == before


def test_invalid_record_is_refused(store_path):
  with h5py.File(store_path, 'r') as f:
    offset = f['block_state'].id.get_offset()
  patch_bytes(store_path, offset + 8 * 1, np.array([12345], '<u8').tobytes())
  with pytest.raises(StoreCorruptError, match=r'block \(0, 1\) has an invalid'):
    KernelStore.open(store_path)


def test_incomplete_store_cannot_be_read_as_complete(tmp_path):
  grid = BlockGrid(4, 4, 2, 2)
  with KernelStore.create(tmp_path / 'p.h5', {'a': 1}, grid,
                          {'nngp': ((), 'float32')}) as s:
    s.write_blocks([(1, 0, {'nngp': np.ones((2, 2))})])
    with pytest.raises(Exception, match='3 of 4 blocks are missing'):
      s.read()
    part = s.read(allow_incomplete=True)
    assert part.dtype == np.float32 and (part[2:, :2] == 1).all()
  with pytest.raises(ValueError, match='expected'):
    with KernelStore.open(tmp_path / 'p.h5', 'r+') as s:
      s.write_blocks([(0, 0, {'nngp': np.ones((3, 2))})])


def test_read_only_store_is_not_called_corrupted(store_path, data,
                                                 monkeypatch):
  """Opening for writing is refused with what to do; reading still works.
  (Permission bits do not stop root, so the refusal is simulated where the
  tests run as root.)"""
  os.chmod(store_path, 0o444)
  try:
    if os.geteuid() == 0:
      real_open = os.open

      def refusing_open(path, flags, *args):
        if os.fspath(path) == os.fspath(store_path) and flags & os.O_RDWR:
          raise PermissionError(errno.EACCES, 'Permission denied', path)
        return real_open(path, flags, *args)
      monkeypatch.setattr(os, 'open', refusing_open)
    with pytest.raises(StoreReadOnlyError, match='read-only|cannot be opened '
                       'for writing.*make it writable'):
      compute(data[0], out=store_path, resume=True)
    with KernelStore.open(store_path) as s:
      assert s.complete
  finally:
    os.chmod(store_path, 0o644)
  assert not os.path.exists(f'{store_path}.lock')


def test_full_disk_is_an_error_and_the_job_resumes(tmp_path, data,
                                                   monkeypatch):
  """A write that fails (ENOSPC) raises StoreWriteError; the blocks recorded
  before are intact and a resumed job completes the right kernel."""
  path = tmp_path / 'k.h5'
  x = np.random.RandomState(2).randn(11, 3)
  real_pwrite, calls = os.pwrite, []

  def pwrite(fd, data_, offset):
    calls.append(offset)
    if len(calls) == 9:
      raise OSError(errno.ENOSPC, 'No space left on device')
    return real_pwrite(fd, data_, offset)
  monkeypatch.setattr(os, 'pwrite', pwrite)
  with pytest.raises(StoreWriteError, match='No space left on device.*'
                     'the disk is full') as info:
    compute(x, out=path, batch_size=3)
  assert info.value.errno == errno.ENOSPC
  monkeypatch.setattr(os, 'pwrite', real_pwrite)
  with KernelStore.open(path) as s:
    assert 0 < s.n_done < s.grid.n_blocks
  compute(x, out=path, batch_size=3, resume=True)
  with KernelStore.open(path) as s:
    np.testing.assert_allclose(s.read('ntk'), mlp()(x, None, 'ntk'),
                               rtol=1e-12)


def test_store_larger_than_the_free_space_is_refused(tmp_path, monkeypatch):
  import shutil  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(shutil, 'disk_usage',
                      lambda _: shutil._ntuple_diskusage(10, 10, 100))  # pylint: disable=protected-access
  with pytest.raises(StoreWriteError, match='needs .* GB but only'):
    KernelStore.create(tmp_path / 'k.h5', {}, BlockGrid(40, 40, 8, 8),
                       {'nngp': ((), 'float64')})
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('dtype, value, bias', [('float32', 1e30, 0.05),
                                                ('float64', 1e200, None)])
def test_overflowing_kernel_is_an_error_not_a_result(tmp_path, dtype, value,
                                                     bias):
  """Inputs too large for the dtype: no NaN/inf block is ever recorded."""
  kernel_fn = stax.serial(stax.Dense(8, 1.5, bias), stax.Relu(),
                          stax.Dense(1, 1.5, bias))[2]
  x = np.full((6, 3), value, dtype)
  x[3:] = 1.
  path = tmp_path / 'k.h5'
  with pytest.raises(NonFiniteKernelError, match='non-finite.*rescale'):
    compute(x, out=path, kernel_fn=kernel_fn, batch_size=2)
  if path.exists():
    with KernelStore.open(path) as s:
      k = s.read('nngp', allow_incomplete=True)
      assert np.all(np.isfinite(k[np.repeat(np.repeat(s.done, 2, 0), 2, 1)]))
  x[:3] = 1.    # the probe passes, a later block overflows
  x[4] = value
  path = tmp_path / 'late.h5'
  with pytest.raises(NonFiniteKernelError, match=r'block \(\d, \d\)'):
    compute(x, out=path, kernel_fn=kernel_fn, batch_size=2)
  with KernelStore.open(path) as s:
    assert 0 < s.n_done < s.grid.n_blocks
    k = s.read('nngp', allow_incomplete=True)
    assert np.all(np.isfinite(k[np.repeat(np.repeat(s.done, 2, 0), 2, 1)]))


@pytest.mark.parametrize('x, error, match', [
    (np.array([[1., np.nan], [0., 1.]]), ValueError, r'NaN or inf.*\(0, 1\)'),
    (np.array([[1., np.inf], [0., 1.]]), ValueError, 'NaN or infinite'),
    (np.zeros((0, 3)), ValueError, 'empty'),
    (np.ones((4, 2), complex), TypeError, 'complex'),
    (np.array([['a', 'b']]), TypeError, 'real numbers'),
    (np.full((2, 2), 1e300), ValueError, 'beyond the range of float32'),
])
def test_bad_inputs_are_refused(tmp_path, x, error, match):
  with pytest.raises(error, match=match):
    compute(x, out=tmp_path / 'k.h5', batch_size=2,
            dtype='float32' if 'range' in match else None)
  assert os.listdir(tmp_path) == []


HOLDER = textwrap.dedent('''
    import sys, time
    from nt_gp.store import KernelStore
    with KernelStore.open(sys.argv[1], 'r+', verify=False):
      print('writing', flush=True)
      time.sleep(60)
''')


def test_second_writer_is_refused_without_hdf5_locking(store_path, data,
                                                       tmp_path):
  script = tmp_path / 'holder.py'
  script.write_text(HOLDER)
  proc = subprocess.Popen(
      [sys.executable, str(script), str(store_path)], stdout=subprocess.PIPE,
      text=True, cwd=ROOT, env=dict(ENV, HDF5_USE_FILE_LOCKING='FALSE'))
  try:
    assert proc.stdout.readline().strip() == 'writing'
    before = sha256(store_path)
    with pytest.raises(StoreLockedError,
                       match=f'process {proc.pid} on host .* has been writing'):
      compute(data[0], out=store_path, resume=True)
    with pytest.raises(StoreLockedError):
      KernelStore.open(store_path, 'r+')
    with KernelStore.open(store_path) as s:     # reading is fine
      assert s.complete
    assert sha256(store_path) == before
  finally:
    proc.kill()
    proc.wait()
    proc.stdout.close()


def _dead_pid():
  proc = subprocess.Popen([sys.executable, '-c', 'pass'])
  proc.wait()
  return proc.pid


def test_stale_lock_is_taken_over(store_path, data):
  import socket  # pylint: disable=g-import-not-at-top
  lock = pathlib.Path(f'{store_path}.lock')
  lock.write_text(json.dumps({'pid': _dead_pid(), 'host': socket.gethostname(),
                              'since': 0}))
  compute(data[0], out=store_path, resume=True)      # taken over
  assert not lock.exists()
  lock.write_text('')                                  # killed while writing
  os.utime(lock, (0, 0))                               # it, long ago
  compute(data[0], out=store_path, resume=True)
  assert not lock.exists()
  lock.write_text(json.dumps({'pid': 1, 'host': 'another-host', 'since': 0}))
  with pytest.raises(StoreLockedError, match='another-host.*delete .*lock'):
    compute(data[0], out=store_path, resume=True)
  assert lock.exists()


def test_temporary_file_of_a_killed_creation_is_removed(tmp_path, data):
  leftover = tmp_path / f'k.h5.tmp-somehost-{_dead_pid()}'
  leftover.write_bytes(b'partial')
  compute(data[0], out=tmp_path / 'k.h5')
  assert sorted(os.listdir(tmp_path)) == ['k.h5']


WRITER = textwrap.dedent('''
    import os, sys
    import numpy as np
    from nt_gp.blocks import BlockGrid
    from nt_gp.store import KernelStore
    path = sys.argv[1]
    grid = BlockGrid(1000, 1000, 64, 64)        # ragged: 15 x 64 + 40
    if os.path.exists(path):
      s = KernelStore.open(path, 'r+', fingerprint={'crash': 1})
    else:
      s = KernelStore.create(path, {'crash': 1}, grid,
                             {'nngp': ((), 'float64'), 'ntk': ((), 'float64')})
    print('ready', flush=True)
    for i in range(16):
      for j in range(16):
        if not s.is_done(i, j):
          v = np.full(grid.block_shape(i, j), 16. * i + j)
          s.write_blocks([(i, j, {'nngp': v, 'ntk': -v})])
    s.close()
    print('finished', flush=True)
''')


def test_sigkill_while_writing_leaves_only_correct_blocks(tmp_path):
  """A writer killed at random moments never leaves a recorded bad block,
  and its lock does not stop the next writer."""
  script = tmp_path / 'writer.py'
  script.write_text(WRITER)
  path = tmp_path / 'crash.h5'
  rng = random.Random(0)
  seen = []
  for _ in range(3):
    proc = subprocess.Popen([sys.executable, str(script), str(path)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == 'ready'
    try:
      proc.wait(timeout=rng.uniform(0.05, 0.4))
    except subprocess.TimeoutExpired:
      os.kill(proc.pid, signal.SIGKILL)
      proc.wait()
    proc.stdout.close()
    with KernelStore.open(path, verify=True) as s:   # checks every CRC
      nngp = s.read('nngp', allow_incomplete=True)
      ntk = s.read('ntk', allow_incomplete=True)
      for i, j in zip(*np.nonzero(s.done)):
        block = (s.grid.rows_of(i), s.grid.cols_of(j))
        assert (nngp[block] == 16. * i + j).all()
        assert (ntk[block] == -(16. * i + j)).all()
      seen.append(s.n_done)
  assert seen == sorted(seen)   # progress is kept across kills


KILLED_JOB = textwrap.dedent('''
    import sys
    import numpy as np
    import tensorflow as tf
    from nt_gp import stax
    from nt_gp.distributed import LocalRunner, compute_kernel
    _, _, base = stax.serial(stax.Dense(8, 1.5, 0.05), stax.Relu(),
                             stax.Dense(1, 1.5, 0.05))
    x = np.random.RandomState(0).randn(23, 4)
    x2 = np.random.RandomState(1).randn(10, 4)
    for tag, b in (('sym', None), ('cross', x2)):
      compute_kernel(base, x, b, out=f'{sys.argv[1]}/{tag}.h5', arch='mlp',
                     get=('nngp', 'ntk'), batch_size=4, resume=True,
                     progress=False, log=lambda m: print(m, flush=True),
                     runner=LocalRunner(1))
    print('finished', flush=True)
''')


@pytest.mark.slow
def test_ragged_jobs_killed_at_random_blocks_resume_to_the_kernel(tmp_path):
  """23 inputs in blocks of 4 (the last of 3), x2=None and x2 of 10: the
  job is SIGKILLed after a random number of blocks, twice, then resumed to
  the end: the stores hold the in-memory kernels."""
  script = tmp_path / 'job.py'
  script.write_text(KILLED_JOB)
  rng = random.Random(1)
  stops = [rng.randint(2, 20), rng.randint(2, 20), None]
  for stop in stops:
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env=ENV)
    written = 0
    for line in proc.stdout:
      written += line.startswith(('computed', 'mirrored'))
      if stop is not None and written == stop:
        os.kill(proc.pid, signal.SIGKILL)
        break
    proc.wait(timeout=600)
    proc.stdout.close()
  assert proc.returncode == 0
  x = np.random.RandomState(0).randn(23, 4)
  x2 = np.random.RandomState(1).randn(10, 4)
  kernel_fn = stax.serial(stax.Dense(8, 1.5, 0.05), stax.Relu(),
                          stax.Dense(1, 1.5, 0.05))[2]
  for tag, b in (('sym', None), ('cross', x2)):
    want = kernel_fn(x, b, ('nngp', 'ntk'))
    with KernelStore.open(tmp_path / f'{tag}.h5') as s:
      assert s.complete and s.grid.ragged
      np.testing.assert_allclose(s.read('nngp'), want.nngp, rtol=1e-12)
      np.testing.assert_allclose(s.read('ntk'), want.ntk, rtol=1e-12)


RSS = textwrap.dedent('''
    import json, sys
    import numpy as np
    from nt_gp import stax
    from nt_gp.distributed import LocalRunner, compute_kernel
    mode, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    _, _, kernel_fn = stax.serial(stax.Dense(1, 1.5, .05), stax.Relu(),
                                  stax.Dense(1, 1.5, .05))
    x = np.random.RandomState(0).randn(n, 16)
    if mode == 'store':
      compute_kernel(kernel_fn, x, out=out, arch='rss', batch_size=256,
                     progress=False, runner=LocalRunner(1), fsync=False)
    else:
      kernel_fn(x, None, 'nngp').numpy()
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss across exec,
    # so a child of a large pytest worker would report the worker's peak.
    with open('/proc/self/status') as f:
      print(json.dumps(next(int(l.split()[1]) for l in f
                            if l.startswith('VmHWM:'))))
''')


@pytest.mark.skipif(not os.path.exists('/proc/self/status'),
                    reason='reads VmHWM from /proc (Linux)')
def test_peak_memory_grows_with_block_size_not_n(tmp_path):
  """Peak RSS with the store at N=4096 stays within 40 MB of N=1024 (same
  256 x 256 blocks), while the float64 kernel itself grows by 120 MB; the
  in-memory kernel at N=4096 shows that the measurement sees such growth."""
  script = tmp_path / 'rss.py'
  script.write_text(RSS)
  runs = {'store_1024': ('store', 1024), 'store_4096': ('store', 4096),
          'memory_4096': ('memory', 4096)}
  procs = {name: subprocess.Popen(
      [sys.executable, str(script), mode, str(n), str(tmp_path / f'{name}.h5')],
      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
           for name, (mode, n) in runs.items()}
  peak_mb = {}
  for name, proc in procs.items():
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, name
    peak_mb[name] = json.loads(out.strip().splitlines()[-1]) / 1024
  kernel_growth_mb = (4096**2 - 1024**2) * 8 / 2**20
  assert kernel_growth_mb > 110
  assert peak_mb['store_4096'] - peak_mb['store_1024'] < 40, peak_mb
  assert peak_mb['memory_4096'] - peak_mb['store_1024'] > kernel_growth_mb, (
      peak_mb)
  with KernelStore.open(tmp_path / 'store_4096.h5', verify=False) as s:
    assert s.complete and s.dataset('nngp').shape == (4096, 4096)
