"""`nt-gp kernel`: results, kill-and-resume, and clear refusals."""
import hashlib
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from nt_gp import presets
from nt_gp.cli import main
from nt_gp.store import KernelStore

ROOT = pathlib.Path(__file__).resolve().parents[1]

# A small network whose blocks take a while (a graph-side busy loop, so it
# also slows workers that run traced closures).
SLOW_ARCH = textwrap.dedent('''
    import tensorflow as tf
    from nt_gp import stax
    _, _, _kernel_fn = stax.serial(stax.Dense(8, 1.5, 0.05), stax.Relu(),
                                   stax.Dense(1, 1.5, 0.05))

    @tf.function(autograph=False)
    def _spin(x):
      i, = tf.while_loop(lambda i: i < 20000, lambda i: (i + 1,),
                         (tf.constant(0),))
      return x + tf.cast(i - i, x.dtype)

    def kernel_fn(x1, x2=None, get=None, **kwargs):
      return _kernel_fn(_spin(x1), x2, get, **kwargs)
''')


def sha256(path):
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp('cli')
  rng = np.random.RandomState(0)
  x = rng.randn(16, 5)
  np.save(d / 'x.npy', x)
  np.savez(d / 'xy.npz', train=x, test=rng.randn(8, 5))
  np.save(d / 'img.npy', rng.randn(8, 4, 4, 2).astype(np.float32))
  (d / 'slow_arch.py').write_text(SLOW_ARCH)
  return d


def run_cli(capsys, *args):
  rc = main(['kernel', '--no-progress', *map(str, args)])
  out, err = capsys.readouterr()
  return rc, out, err


def test_fcn_preset_matches_kernel_fn(files, tmp_path, capsys):
  out = tmp_path / 'k.h5'
  rc, stdout, _ = run_cli(capsys, '--x1', files / 'x.npy', '--arch', 'fcn',
                          '--arch-args', '{"depth": 2}', '--get', 'nngp,ntk',
                          '--batch-size', 4, '--out', out)
  assert rc == 0 and 'wrote' in stdout
  _, _, kernel_fn = presets.build('fcn', depth=2)
  x = np.load(files / 'x.npy')
  want = kernel_fn(x, None, ('nngp', 'ntk'))
  with KernelStore.open(out) as s:
    assert s.fingerprint['arch'] == presets.identity('fcn', {'depth': 2})
    np.testing.assert_allclose(s.read('nngp'), want.nngp, rtol=1e-10)
    np.testing.assert_allclose(s.read('ntk'), want.ntk, rtol=1e-10)


def test_npz_keys_x2_and_float32(files, tmp_path, capsys):
  out = tmp_path / 'k.h5'
  rc, _, err = run_cli(capsys, '--x1', files / 'xy.npz', '--arch', 'fcn',
                       '--batch-size', 4, '--out', out)
  assert rc == 1 and "holds 2 arrays ['train', 'test']; choose one" in err
  rc, _, err = run_cli(capsys, '--x1', files / 'xy.npz', '--x1-key', 'nope',
                       '--arch', 'fcn', '--batch-size', 4, '--out', out)
  assert rc == 1 and "has no array 'nope'" in err
  rc, _, _ = run_cli(capsys, '--x1', files / 'xy.npz', '--x1-key', 'train',
                     '--x2', files / 'xy.npz', '--x2-key', 'test', '--arch',
                     'fcn', '--get', 'ntk', '--dtype', 'float32',
                     '--batch-size', 4, '--out', out)
  assert rc == 0
  data = np.load(files / 'xy.npz')
  want = presets.build('fcn')[2](data['train'].astype(np.float32),
                                 data['test'].astype(np.float32), 'ntk')
  with KernelStore.open(out) as s:
    k = s.read('ntk')
  assert k.dtype == np.float32 and k.shape == (16, 8)
  np.testing.assert_allclose(k, want, rtol=1e-4)


def test_conv_preset_and_arch_file(files, tmp_path, capsys):
  out = tmp_path / 'cnn.h5'
  rc, _, _ = run_cli(capsys, '--x1', files / 'img.npy', '--arch', 'cnn-gap',
                     '--arch-args', '{"depth": 1}', '--batch-size', 4,
                     '--out', out)
  assert rc == 0
  img = np.load(files / 'img.npy')
  want = presets.build('cnn-gap', depth=1)[2](img, None, 'nngp')
  with KernelStore.open(out) as s:
    np.testing.assert_allclose(s.read(), want, rtol=2e-4, atol=1e-6)
  out = tmp_path / 'file.h5'
  rc, _, _ = run_cli(capsys, '--x1', files / 'x.npy', '--arch',
                     files / 'slow_arch.py', '--batch-size', 8, '--out', out)
  assert rc == 0
  with KernelStore.open(out) as s:
    assert set(s.fingerprint['arch']) == {'file_sha256'}
    x = np.load(files / 'x.npy')
    from nt_gp import stax  # pylint: disable=g-import-not-at-top
    ref = stax.serial(stax.Dense(8, 1.5, 0.05), stax.Relu(),
                      stax.Dense(1, 1.5, 0.05))[2](x, None, 'nngp')
    np.testing.assert_allclose(s.read(), ref, rtol=1e-6)


def test_progress_bar(files, tmp_path, capsys):
  rc = main(['kernel', '--x1', str(files / 'x.npy'), '--arch', 'fcn',
             '--batch-size', '4', '--out', str(tmp_path / 'k.h5')])
  err = capsys.readouterr().err
  assert rc == 0
  assert 'blocks 10/10' in err and 'entry/s' in err


def test_refusals(files, tmp_path, capsys):
  x = files / 'x.npy'
  out = tmp_path / 'k.h5'
  assert run_cli(capsys, '--x1', x, '--arch', 'fcn', '--batch-size', 4,
                 '--out', out)[0] == 0
  before = sha256(out)

  def refused(*args, match):
    rc, _, err = run_cli(capsys, *args)
    assert rc == 1, err
    assert re.search(match, err), err
    assert sha256(out) == before

  refused('--x1', tmp_path / 'missing.npy', '--arch', 'fcn', '--batch-size',
          4, '--out', tmp_path / 'new.h5', match='--x1: no such file')
  refused('--x1', x, '--x2', files / 'img.npy', '--arch', 'fcn',
          '--batch-size', 4, '--out', tmp_path / 'new.h5',
          match='same shape apart from the batch axis')
  refused('--x1', files / 'img.npy', '--arch', 'fcn', '--batch-size', 4,
          '--out', tmp_path / 'new.h5', match=r'expects inputs of shape \(N, f')
  refused('--x1', x, '--arch', 'fcn', '--batch-size', 5, '--out',
          tmp_path / 'new.h5', match='must divide the number of inputs')
  refused('--x1', x, '--arch', 'resnet', '--batch-size', 4, '--out',
          tmp_path / 'new.h5', match='neither a preset')
  refused('--x1', x, '--arch', 'fcn', '--arch-args', '{"depht": 2}',
          '--batch-size', 4, '--out', tmp_path / 'new.h5',
          match=r"no argument\(s\) \['depht'\]")
  refused('--x1', x, '--arch', 'fcn', '--get', 'cov1', '--batch-size', 4,
          '--out', tmp_path / 'new.h5', match='--get must be')
  # The existing output: not without --resume, not for other work.
  refused('--x1', x, '--arch', 'fcn', '--batch-size', 4, '--out', out,
          match='already exists; pass --resume')
  other = tmp_path / 'other.npy'
  np.save(other, np.load(x) * 2)
  refused('--x1', other, '--arch', 'fcn', '--batch-size', 4, '--out', out,
          '--resume', match='made for a different computation.*x1 differ')
  refused('--x1', x, '--arch', 'fcn', '--arch-args', '{"depth": 4}',
          '--batch-size', 4, '--out', out, '--resume',
          match='different computation.*arch differ')
  refused('--x1', x, '--arch', files / 'slow_arch.py', '--batch-size', 4,
          '--out', out, '--resume', match='arch differ')
  assert not (tmp_path / 'new.h5').exists()
  # A damaged output is refused too, and left as it is.
  with h5py.File(out, 'r+') as f:
    f['nngp'][0, 0] += 1.
  before = sha256(out)
  refused('--x1', x, '--arch', 'fcn', '--batch-size', 4, '--out', out,
          '--resume', match=r'corrupted: block \(0, 0\)')


def _blocks_in(text, word):
  return [tuple(int(v) for v in m) for m in
          re.findall(word + r' block \((\d+), (\d+)\)', text)]


def test_sigkill_and_resume(files, tmp_path):
  """A job killed mid-run and resumed gives the uninterrupted job's file,
  and recomputes no block that was finished before the kill."""
  cmd = [sys.executable, '-m', 'nt_gp.cli', 'kernel', '--x1',
         str(files / 'x.npy'), '--arch', str(files / 'slow_arch.py'),
         '--get', 'nngp,ntk', '--batch-size', '2', '--log-blocks',
         '--no-progress']
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  whole = subprocess.Popen(cmd + ['--out', str(tmp_path / 'whole.h5')],
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
  killed = subprocess.Popen(cmd + ['--out', str(tmp_path / 'killed.h5')],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)
  seen = 0
  for line in killed.stderr:
    seen += line.startswith('computed block')
    if seen == 8:
      os.kill(killed.pid, signal.SIGKILL)
      break
  killed.wait()
  killed.stderr.close()
  assert killed.returncode == -signal.SIGKILL
  with KernelStore.open(tmp_path / 'killed.h5') as s:
    done_before = {(int(i), int(j)) for i, j in zip(*np.nonzero(s.done))}
    n_blocks = s.grid.n_blocks
    assert not s.complete
  assert len(done_before) >= 8

  resumed = subprocess.run(
      cmd + ['--out', str(tmp_path / 'killed.h5'), '--resume'],
      capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  computed = _blocks_in(resumed.stderr, 'computed')
  mirrored = _blocks_in(resumed.stderr, 'mirrored')
  written = set(mirrored)
  for i, j in computed:
    assert (i, j) not in done_before and (j, i) not in done_before, (i, j)
    written |= {(i, j), (j, i)}
  assert not written & done_before
  assert written | done_before == {(i, j) for i in range(8) for j in range(8)}
  assert len(written | done_before) == n_blocks
  assert f'{len(written)} of {n_blocks} blocks written by this run' in (
      resumed.stdout)

  assert whole.wait(timeout=600) == 0
  with h5py.File(tmp_path / 'whole.h5', 'r') as a, \
       h5py.File(tmp_path / 'killed.h5', 'r') as b:
    for name in ('nngp', 'ntk', 'block_state'):
      np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=name)
    assert dict(a.attrs) == dict(b.attrs)
