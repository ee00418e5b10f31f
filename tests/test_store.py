"""The HDF5 kernel store: contents, refusal of mismatched or corrupted files,
crash safety under SIGKILL, and memory bounded by the block size."""
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
from nt_gp.store import (KernelStore, StoreCorruptError, StoreExistsError,
                         StoreMismatchError, fingerprint)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def sha256(path):
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def mlp():
  return stax.serial(stax.Dense(8, 1.5, 0.05), stax.Erf(), stax.Dense(1))[2]


@pytest.fixture(scope='module')
def data():
  rng = np.random.RandomState(0)
  return rng.randn(8, 3), rng.randn(12, 3)


@pytest.fixture
def store_path(tmp_path, data):
  """A complete symmetric nngp+ntk store of `data[0]`."""
  path = tmp_path / 'k.h5'
  compute_kernel(mlp(), data[0], out=path, arch='mlp', get=('nngp', 'ntk'),
                 batch_size=4, progress=False, runner=LocalRunner(1))
  return path


def test_contents_equal_unbatched(tmp_path, data, store_path):
  x1, x2 = data
  want = mlp()(x1, None, ('nngp', 'ntk'))
  with KernelStore.open(store_path) as s:
    assert s.complete and s.names == ('nngp', 'ntk')
    np.testing.assert_allclose(s.read('nngp'), want.nngp, rtol=1e-12)
    np.testing.assert_allclose(s.read('ntk'), want.ntk, rtol=1e-12)
    assert s.fingerprint['arch'] == 'mlp'
    assert s.fingerprint['x1']['shape'] == [8, 3]
  out = tmp_path / 'k12.h5'
  compute_kernel(mlp(), x1.astype(np.float32), x2.astype(np.float32), out=out,
                 arch='mlp', get='ntk', batch_size=4, progress=False)
  with KernelStore.open(out) as s:
    k = s.read()
    assert k.dtype == np.float32 and k.shape == (8, 12)
    np.testing.assert_allclose(
        k, mlp()(x1.astype(np.float32), x2.astype(np.float32), 'ntk'),
        rtol=2e-5)


def test_existing_file_is_never_overwritten(store_path, data):
  before = sha256(store_path)
  with pytest.raises(StoreExistsError, match='refusing to overwrite'):
    compute_kernel(mlp(), data[0], out=store_path, arch='mlp', batch_size=4,
                   get=('nngp', 'ntk'), progress=False)
  grid = BlockGrid(8, 8, 4, 4, symmetric=True)
  with pytest.raises(StoreExistsError):
    KernelStore.create(store_path, {}, grid, {'nngp': ((), 'float64')})
  assert sha256(store_path) == before


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
  want = {'inputs': 'x1 differ', 'arch': 'arch differ', 'get': 'get differ',
          'batch_size': 'batch_size differ', 'dtype': 'dtype, x1 differ'}
  with pytest.raises(StoreMismatchError, match=want[change]):
    compute_kernel(mlp(), x1, out=store_path, resume=True, progress=False, **kw)
  assert sha256(store_path) == before


def test_resume_of_complete_store_computes_nothing(store_path, data):
  lines = []
  compute_kernel(mlp(), data[0], out=store_path, arch='mlp',
                 get=('nngp', 'ntk'), batch_size=4, resume=True,
                 progress=False, log=lines.append)
  assert lines == []


def test_unreadable_file_is_refused(tmp_path, store_path):
  garbage = tmp_path / 'garbage.h5'
  garbage.write_bytes(b'not an hdf5 file' * 100)
  with pytest.raises(StoreCorruptError, match='not a readable HDF5 file'):
    KernelStore.open(garbage)
  truncated = tmp_path / 'truncated.h5'
  truncated.write_bytes(store_path.read_bytes()[:3000])
  with pytest.raises(StoreCorruptError, match='corrupted or truncated'):
    KernelStore.open(truncated)


def test_foreign_hdf5_file_is_refused(tmp_path):
  path = tmp_path / 'other.h5'
  with h5py.File(path, 'w') as f:
    f['nngp'] = np.zeros((2, 2))
  with pytest.raises(StoreCorruptError, match='`format` attribute is missing'):
    KernelStore.open(path)


def test_missing_dataset_is_refused(store_path):
  with h5py.File(store_path, 'r+') as f:
    del f['ntk']
  with pytest.raises(StoreCorruptError, match='dataset `/ntk` is missing'):
    KernelStore.open(store_path)


def test_data_not_matching_record_is_refused(store_path, data):
  with h5py.File(store_path, 'r+') as f:
    f['nngp'][5, 1] += 1e-6          # block (1, 0): recorded done, now wrong
  with pytest.raises(StoreCorruptError,
                     match=r'block \(1, 0\) is recorded as done but its data'):
    KernelStore.open(store_path)
  before = sha256(store_path)
  with pytest.raises(StoreCorruptError):
    compute_kernel(mlp(), data[0], out=store_path, arch='mlp',
                   get=('nngp', 'ntk'), batch_size=4, resume=True,
                   progress=False)
  assert sha256(store_path) == before


def test_invalid_record_is_refused(store_path):
  with h5py.File(store_path, 'r+') as f:
    f['block_state'][0, 1] = 12345
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


WRITER = textwrap.dedent('''
    import os, sys
    import numpy as np
    from nt_gp.blocks import BlockGrid
    from nt_gp.store import KernelStore
    path = sys.argv[1]
    grid = BlockGrid(1024, 1024, 64, 64)
    if os.path.exists(path):
      s = KernelStore.open(path, 'r+', fingerprint={'crash': 1})
    else:
      s = KernelStore.create(path, {'crash': 1}, grid,
                             {'nngp': ((), 'float64'), 'ntk': ((), 'float64')})
    print('ready', flush=True)
    for i in range(16):
      for j in range(16):
        if not s.is_done(i, j):
          v = np.full((64, 64), 16. * i + j)
          s.write_blocks([(i, j, {'nngp': v, 'ntk': -v})])
    s.close()
    print('finished', flush=True)
''')


def test_sigkill_while_writing_leaves_only_correct_blocks(tmp_path):
  """A writer killed at random moments never leaves a recorded bad block."""
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
        block = (slice(64 * i, 64 * i + 64), slice(64 * j, 64 * j + 64))
        assert (nngp[block] == 16. * i + j).all()
        assert (ntk[block] == -(16. * i + j)).all()
      seen.append(s.n_done)
  assert seen == sorted(seen)   # progress is kept across kills


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
