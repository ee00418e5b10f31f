"""`nt-gp kernel`: results, kill-and-resume, and clear refusals.

Every failure a user can cause or meet (bad inputs, a changed architecture,
overflow, a full disk, too little memory, signals, a second writer, a damaged
or read-only output) must end in exactly one ``nt-gp kernel: error:`` line
that says what to do, never in a traceback or a crash.
"""
import contextlib
import hashlib
import os
import pathlib
import re
import resource
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from nt_gp import presets
from nt_gp import stax
from nt_gp.cli import main
from nt_gp.store import KernelStore

ROOT = pathlib.Path(__file__).resolve().parents[1]
CMD = [sys.executable, '-m', 'nt_gp.cli', 'kernel']

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

# An architecture whose W_std comes from an imported helper module.
HELPER_ARCH = textwrap.dedent('''
    import helper
    from nt_gp import stax
    _, _, kernel_fn = stax.serial(stax.Dense(8, helper.W_STD, 0.05),
                                  stax.Relu(), stax.Dense(1, 1.5, 0.05))
''')
# ... and one that reads it from a data file when it builds the network.
DATA_ARCH = textwrap.dedent('''
    import json, os
    from nt_gp import stax
    with open(os.path.join(os.path.dirname(__file__), 'w.json')) as f:
      w_std = json.load(f)
    _, _, kernel_fn = stax.serial(stax.Dense(8, w_std, 0.05), stax.Relu(),
                                  stax.Dense(1, 1.5, 0.05))
''')


def sha256(path):
  return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def env(**kw):
  """The environment of a command-line run, without the test suite's own
  TensorFlow log setting (the command must be quiet by itself)."""
  e = dict(os.environ, **kw)
  e.pop('TF_CPP_MIN_LOG_LEVEL', None)
  return e


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp('cli')
  rng = np.random.RandomState(0)
  x = rng.randn(16, 5)
  np.save(d / 'x.npy', x)
  np.save(d / 'x15.npy', x[:15])
  np.savez(d / 'xy.npz', train=x, test=rng.randn(8, 5))
  np.save(d / 'img.npy', rng.randn(8, 4, 4, 2).astype(np.float32))
  (d / 'slow_arch.py').write_text(SLOW_ARCH)
  bad = {'nan': x.copy(), 'inf': x.copy(), 'empty': np.zeros((0, 5)),
         'complex': x + 1j, 'strings': np.array([['a', 'b']]),
         'overflow': np.full((4, 5), 1e30, np.float32)}
  bad['nan'][3, 2] = np.nan
  bad['inf'][1, 0] = -np.inf
  for name, a in bad.items():
    np.save(d / f'{name}.npy', a)
  return d


def run_cli(capsys, *args):
  rc = main(['kernel', '--no-progress', *map(str, args)])
  out, err = capsys.readouterr()
  return rc, out, err


def error_lines(err):
  return [l for l in err.splitlines() if 'error:' in l]


def assert_one_error_line(err, match):
  """Exactly one `nt-gp kernel: error:` line, matching `match`, no
  traceback, nothing else from TensorFlow."""
  assert 'Traceback' not in err, err[-3000:]
  lines = error_lines(err)
  assert len(lines) == 1, err[-3000:]
  assert lines[0].startswith('nt-gp kernel: error: '), lines
  assert re.search(match, lines[0]), lines[0]
  assert not re.search(r'^[IWEF]\d{4} |oneDNN|absl', err, re.M), err[-3000:]


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


def test_npz_keys_x2_float32_and_ragged_blocks(files, tmp_path, capsys):
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
                     '--batch-size', 5, '--out', out)     # 16 = 5+5+5+1
  assert rc == 0
  data = np.load(files / 'xy.npz')
  want = presets.build('fcn')[2](data['train'].astype(np.float32),
                                 data['test'].astype(np.float32), 'ntk')
  with KernelStore.open(out) as s:
    k = s.read('ntk')
    assert s.grid.shape == (4, 2) and s.grid.ragged
  assert k.dtype == np.float32 and k.shape == (16, 8)
  np.testing.assert_allclose(k, want, rtol=1e-4)


def test_conv_preset_and_arch_file(files, tmp_path, capsys):
  out = tmp_path / 'cnn.h5'
  rc, _, _ = run_cli(capsys, '--x1', files / 'img.npy', '--arch', 'cnn-gap',
                     '--arch-args', '{"depth": 1}', '--batch-size', 3,
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
    assert s.fingerprint['arch']['sources'] == {
        'slow_arch.py': sha256(files / 'slow_arch.py')}
    x = np.load(files / 'x.npy')
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
    assert_one_error_line(err, match)
    assert sha256(out) == before

  new = tmp_path / 'new.h5'
  refused('--x1', tmp_path / 'missing.npy', '--arch', 'fcn', '--batch-size',
          4, '--out', new, match='--x1: no such file')
  refused('--x1', x, '--x2', files / 'img.npy', '--arch', 'fcn',
          '--batch-size', 4, '--out', new,
          match='same shape apart from the batch axis')
  refused('--x1', files / 'img.npy', '--arch', 'fcn', '--batch-size', 4,
          '--out', new, match=r'--arch fcn: .*expects inputs of shape \(N, f')
  refused('--x1', x, '--arch', 'myrtle5', '--batch-size', 4, '--out', new,
          match=r'expects inputs of shape \(N, height, width, channels\)')
  refused('--x1', x, '--arch', 'fcn', '--batch-size', 0, '--out', new,
          match='--batch-size must be positive')
  refused('--x1', x, '--arch', 'resnet', '--batch-size', 4, '--out', new,
          match='neither a preset')
  refused('--x1', x, '--arch', 'fcn', '--arch-args', '{"depht": 2}',
          '--batch-size', 4, '--out', new, match=r"no argument\(s\) \['depht'\]")
  refused('--x1', x, '--arch', 'fcn', '--get', 'cov1', '--batch-size', 4,
          '--out', new, match='--get must be')
  # The existing output: not without --resume, not for other work.
  refused('--x1', x, '--arch', 'fcn', '--batch-size', 4, '--out', out,
          match='already exists; pass --resume')
  other = tmp_path / 'other.npy'
  np.save(other, np.load(x) * 2)
  refused('--x1', other, '--arch', 'fcn', '--batch-size', 4, '--out', out,
          '--resume', match='made for a different computation.*x1 differs')
  refused('--x1', x, '--arch', 'fcn', '--arch-args', '{"depth": 4}',
          '--batch-size', 4, '--out', out, '--resume',
          match='different computation.*arch differs')
  refused('--x1', x, '--arch', files / 'slow_arch.py', '--batch-size', 4,
          '--out', out, '--resume', match='arch differs')
  assert not new.exists()
  # A damaged output is refused too, and left as it is.
  with h5py.File(out, 'r') as f:
    offset = f['nngp'].id.get_chunk_info_by_coord((0, 0)).byte_offset
  with open(out, 'r+b') as f:
    f.seek(offset)
    f.write(np.array([42.], '<f8').tobytes())
  before = sha256(out)
  refused('--x1', x, '--arch', 'fcn', '--batch-size', 4, '--out', out,
          '--resume', match=r'corrupted: block \(0, 0\)')


@pytest.mark.parametrize('name, match', [
    ('nan', r'--x1 has NaN or infinite values \(first at index \(3, 2\)\)'),
    ('inf', r'NaN or infinite values \(first at index \(1, 0\)\)'),
    ('empty', r'--x1 is empty \(shape \(0, 5\)\)'),
    ('complex', '--x1 is complex'),
    ('strings', '--x1 must hold real numbers'),
])
def test_bad_inputs_one_line_before_tensorflow(files, tmp_path, name, match):
  """Refused by the checks that run before TensorFlow is imported."""
  code = ('import sys; from nt_gp.cli import main; rc = main(sys.argv[1:]); '
          'assert "tensorflow" not in sys.modules; sys.exit(rc)')
  proc = subprocess.run(
      [sys.executable, '-c', code, 'kernel', '--x1', str(files / f'{name}.npy'),
       '--arch', 'fcn', '--batch-size', '4', '--out', str(tmp_path / 'k.h5')],
      capture_output=True, text=True, cwd=ROOT, env=env(), timeout=120)
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert_one_error_line(proc.stderr, match)
  assert os.listdir(tmp_path) == []


def test_overflow_is_an_error_not_a_kernel(files, tmp_path, capsys):
  out = tmp_path / 'k.h5'
  rc, stdout, err = run_cli(capsys, '--x1', files / 'overflow.npy', '--arch',
                            'fcn', '--batch-size', 2, '--out', out)
  assert rc == 1 and 'wrote' not in stdout
  assert_one_error_line(err, 'non-finite.*use float64 inputs')
  if out.exists():
    with KernelStore.open(out) as s:
      assert s.n_done == 0
  out = tmp_path / 'k64.h5'   # float64 holds these squares
  rc, _, _ = run_cli(capsys, '--x1', files / 'overflow.npy', '--arch', 'fcn',
                     '--dtype', 'float64', '--batch-size', 2, '--out', out)
  assert rc == 0


def test_empty_file_at_out_is_refused_and_left_untouched(files, tmp_path,
                                                         capsys):
  out = tmp_path / 'k.h5'
  out.write_bytes(b'')
  rc, _, err = run_cli(capsys, '--x1', files / 'x.npy', '--arch', 'fcn',
                       '--batch-size', 4, '--out', out, '--resume')
  assert rc == 1
  assert_one_error_line(err, r'empty file \(0 bytes\).*left untouched')
  assert out.read_bytes() == b''
  assert os.listdir(tmp_path) == ['k.h5']


def _write_arch(folder, arch, helper=None, data=None):
  (folder / 'arch.py').write_text(arch)
  if helper is not None:
    (folder / 'helper.py').write_text(helper)
  if data is not None:
    (folder / 'w.json').write_text(data)


def test_changed_imported_helper_is_refused_on_resume(files, tmp_path,
                                                      capsys):
  """The store's fingerprint covers the modules a .py architecture imports
  (and, through the probe kernel, what it reads)."""
  _write_arch(tmp_path, HELPER_ARCH, helper='W_STD = 1.5\n')
  out = tmp_path / 'k.h5'
  args = ('--x1', files / 'x.npy', '--arch', tmp_path / 'arch.py',
          '--batch-size', 4, '--out', out)
  assert run_cli(capsys, *args)[0] == 0
  with KernelStore.open(out) as s:
    assert set(s.fingerprint['arch']['sources']) == {'arch.py', 'helper.py'}
  before = sha256(out)
  (tmp_path / 'helper.py').write_text('W_STD = 1.7\n')
  rc, _, err = run_cli(capsys, *args, '--resume')
  assert rc == 1
  assert_one_error_line(err, "architecture's code differs: helper.py changed")
  assert sha256(out) == before
  # A change no file hash sees: the probe kernel.
  sub = tmp_path / 'data'
  sub.mkdir()
  _write_arch(sub, DATA_ARCH, data='1.5')
  out = sub / 'k.h5'
  args = ('--x1', files / 'x.npy', '--arch', sub / 'arch.py', '--batch-size',
          4, '--out', out)
  assert run_cli(capsys, *args)[0] == 0
  (sub / 'w.json').write_text('1.7')
  rc, _, err = run_cli(capsys, *args, '--resume')
  assert rc == 1
  assert_one_error_line(err, 'now computes a different kernel')


@contextlib.contextmanager
def read_only_folder(tmp_path):
  """A folder this process cannot write: permissions as a normal user, a
  read-only tmpfs as root (skipped where it cannot be mounted)."""
  folder = tmp_path / 'ro'
  folder.mkdir()
  if os.geteuid() != 0:
    os.chmod(folder, 0o555)
    try:
      yield folder, lambda: os.chmod(folder, 0o755), lambda: os.chmod(
          folder, 0o555)
    finally:
      os.chmod(folder, 0o755)
    return
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs',
                     str(folder)], capture_output=True).returncode:
    pytest.skip('running as root without permission to mount a tmpfs')
  remount = lambda mode: subprocess.run(
      ['mount', '-o', f'remount,{mode}', str(folder)], check=True)
  try:
    remount('ro')
    yield folder, lambda: remount('rw'), lambda: remount('ro')
  finally:
    subprocess.run(['umount', str(folder)], check=True)


def test_unwritable_output(files, tmp_path, capsys):
  """An unwritable folder is refused before anything is computed; a store on
  a read-only disk is called read-only, not corrupted."""
  with read_only_folder(tmp_path) as (folder, make_rw, make_ro):
    rc, _, err = run_cli(capsys, '--x1', files / 'x.npy', '--arch', 'fcn',
                         '--batch-size', 4, '--out', folder / 'k.h5')
    assert rc == 1
    assert_one_error_line(err, 'cannot write in .*choose another --out')
    make_rw()
    out = folder / 'k.h5'
    assert run_cli(capsys, '--x1', files / 'x.npy', '--arch', 'fcn',
                   '--batch-size', 8, '--out', out)[0] == 0
    make_ro()
    rc, _, err = run_cli(capsys, '--x1', files / 'x.npy', '--arch', 'fcn',
                         '--batch-size', 8, '--out', out, '--resume')
    assert rc == 1
    assert_one_error_line(err, 'cannot write in|read-only|cannot be opened '
                               'for writing')
    assert 'corrupt' not in err
    with KernelStore.open(out) as s:
      assert s.complete


def _blocks_in(text, word):
  return [tuple(int(v) for v in m) for m in
          re.findall(word + r' block \((\d+), (\d+)\)', text)]


def _start(args, **popen):
  return subprocess.Popen(CMD + [str(a) for a in args], cwd=ROOT, env=env(),
                          text=True, **popen)


def _wait_for_blocks(proc, n):
  """Reads `proc`'s stderr until `n` blocks are logged; returns the text."""
  seen, lines = 0, []
  for line in proc.stderr:
    lines.append(line)
    seen += line.startswith('computed block')
    if seen >= n:
      break
  return ''.join(lines)


def test_sigkill_and_resume_with_ragged_blocks(files, tmp_path):
  """A job killed mid-run and resumed gives the uninterrupted job's file,
  recomputes no block finished before the kill, and equals the in-memory
  kernel; 15 inputs in blocks of 2 (the last of 1)."""
  args = ['--x1', files / 'x15.npy', '--arch', files / 'slow_arch.py',
          '--get', 'nngp,ntk', '--batch-size', '2', '--log-blocks',
          '--no-progress']
  whole = _start(args + ['--out', tmp_path / 'whole.h5'],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  killed = _start(args + ['--out', tmp_path / 'killed.h5'],
                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
  _wait_for_blocks(killed, 8)
  os.kill(killed.pid, signal.SIGKILL)
  killed.wait()
  killed.stderr.close()
  assert killed.returncode == -signal.SIGKILL
  with KernelStore.open(tmp_path / 'killed.h5') as s:
    done_before = {(int(i), int(j)) for i, j in zip(*np.nonzero(s.done))}
    n_blocks = s.grid.n_blocks
    assert not s.complete and s.grid.ragged
  assert len(done_before) >= 8

  resumed = subprocess.run(
      CMD + [str(a) for a in args] + ['--out', str(tmp_path / 'killed.h5'),
                                      '--resume'],
      capture_output=True, text=True, env=env(), cwd=ROOT, timeout=600)
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
  x = np.load(files / 'x15.npy')
  want = stax.serial(stax.Dense(8, 1.5, 0.05), stax.Relu(),
                     stax.Dense(1, 1.5, 0.05))[2](x, None, ('nngp', 'ntk'))
  with KernelStore.open(tmp_path / 'killed.h5') as s:
    np.testing.assert_allclose(s.read('nngp'), want.nngp, rtol=1e-12)
    np.testing.assert_allclose(s.read('ntk'), want.ntk, rtol=1e-12)


def test_signals_say_how_to_resume_and_a_second_writer_is_refused(files,
                                                                  tmp_path):
  """Ctrl-C (SIGINT) and SIGTERM stop the job after its block with one line
  saying how to resume; while a job writes, another on the same output is
  refused (HDF5's file locking off, as on many shared file systems)."""
  out = tmp_path / 'k.h5'
  args = ['--x1', files / 'x.npy', '--arch', files / 'slow_arch.py',
          '--batch-size', '2', '--log-blocks', '--no-progress', '--out', out]
  for sig, code, what in ((signal.SIGINT, 130, 'interrupted'),
                          (signal.SIGTERM, 143, r'terminated \(SIGTERM\)')):
    proc = _start(args + (['--resume'] if out.exists() else []),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_blocks(proc, 3)
    if sig == signal.SIGTERM:   # meanwhile, a second writer
      second = subprocess.run(
          CMD + [str(a) for a in args] + ['--resume'], capture_output=True,
          text=True, cwd=ROOT, timeout=120,
          env=env(HDF5_USE_FILE_LOCKING='FALSE'))
      assert second.returncode == 1
      assert_one_error_line(second.stderr, 'being written by another job '
                                           '\\(process \\d+')
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err[-3000:]
    assert_one_error_line(err, f'{what}; \\d+ of 64 blocks are saved in '
                               f'.*k.h5: run the same command with --resume')
    assert not os.path.exists(f'{out}.lock')
  final = subprocess.run(CMD + [str(a) for a in args] + ['--resume'],
                         capture_output=True, text=True, cwd=ROOT, env=env(),
                         timeout=600)
  assert final.returncode == 0, final.stderr[-3000:]
  x = np.load(files / 'x.npy')
  want = stax.serial(stax.Dense(8, 1.5, 0.05), stax.Relu(),
                     stax.Dense(1, 1.5, 0.05))[2](x, None, 'nngp')
  with KernelStore.open(out) as s:
    np.testing.assert_allclose(s.read(), want, rtol=1e-12)


def test_tensorflow_logs_are_quiet_unless_verbose(files, tmp_path):
  base = CMD + ['--x1', str(files / 'x.npy'), '--arch', 'fcn',
                '--batch-size', '8', '--no-progress']
  quiet = subprocess.run(base + ['--out', str(tmp_path / 'a.h5')],
                         capture_output=True, text=True, cwd=ROOT, env=env(),
                         timeout=300)
  assert quiet.returncode == 0 and quiet.stderr == '', quiet.stderr
  verbose = subprocess.run(base + ['--out', str(tmp_path / 'b.h5'),
                                   '--verbose'],
                           capture_output=True, text=True, cwd=ROOT, env=env(),
                           timeout=300)
  assert verbose.returncode == 0
  assert re.search(r'absl|oneDNN|^[IWE]\d{4} ', verbose.stderr, re.M), (
      verbose.stderr)


def test_native_stderr_is_hidden_but_python_stderr_is_not():
  """What `nt-gp demo` uses to keep TensorFlow's C++ lines off the
  terminal."""
  code = textwrap.dedent('''
      import os, sys
      from nt_gp.cli import native_stderr_hidden
      with native_stderr_hidden():
        os.write(2, b'from C++\\n')
        print('from Python', file=sys.stderr, flush=True)
      os.write(2, b'after\\n')
  ''')
  proc = subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, cwd=ROOT, timeout=60)
  assert proc.stderr == 'from Python\nafter\n', proc.stderr


def _limit_memory(nbytes):
  def limit():
    resource.setrlimit(resource.RLIMIT_AS, (nbytes, nbytes))
  return limit


@pytest.mark.slow
def test_out_of_memory_is_one_line_with_a_smaller_batch_size(tmp_path):
  """Under a 3.5 GB address-space limit a block of 64 Myrtle-5 images of
  32x32 (about 9 GB per covariance) cannot be computed: one line saying to
  lower --batch-size, whether TensorFlow reports it or aborts."""
  x = np.random.RandomState(0).randn(64, 32, 32, 3).astype(np.float32)
  np.save(tmp_path / 'img.npy', x)
  proc = subprocess.run(
      CMD + ['--x1', str(tmp_path / 'img.npy'), '--arch', 'myrtle5',
             '--batch-size', '64', '--no-progress', '--out',
             str(tmp_path / 'k.h5')],
      capture_output=True, text=True, cwd=ROOT, env=env(), timeout=600,
      preexec_fn=_limit_memory(3500 * 2**20))
  assert proc.returncode == 1, proc.stderr[-3000:]
  assert_one_error_line(proc.stderr, 'out of memory computing blocks of 64 x '
                                     '64 inputs.*--batch-size 32')


@pytest.mark.slow
def test_full_disk_is_one_line_and_the_job_resumes(files, tmp_path):
  """On a 3 MB tmpfs that fills up while the job runs: one line (HDF5 used
  to print two tracebacks and segfault), then a resume completes."""
  folder = tmp_path / 'disk'
  folder.mkdir()
  if os.geteuid() != 0 or subprocess.run(
      ['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', str(folder)],
      capture_output=True).returncode:
    pytest.skip('needs root and permission to mount a tmpfs (the store tests '
                'cover a failing write with a mocked os.pwrite)')
  try:
    x = np.random.RandomState(0).randn(512, 3)
    np.save(tmp_path / 'x.npy', x)
    args = ['--x1', tmp_path / 'x.npy', '--arch', files / 'slow_arch.py',
            '--batch-size', '64', '--log-blocks', '--no-progress', '--out',
            folder / 'k.h5']
    proc = _start(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for_blocks(proc, 2)
    (folder / 'filler').write_bytes(b'\0' * 2_000_000)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err[-3000:]
    assert_one_error_line(err, 'No space left on device.*the disk is full')
    (folder / 'filler').unlink()
    resumed = subprocess.run(CMD + [str(a) for a in args] + ['--resume'],
                             capture_output=True, text=True, cwd=ROOT,
                             env=env(), timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    want = stax.serial(stax.Dense(8, 1.5, 0.05), stax.Relu(),
                       stax.Dense(1, 1.5, 0.05))[2](x, None, 'nngp')
    with KernelStore.open(folder / 'k.h5') as s:
      np.testing.assert_allclose(s.read(), want, rtol=1e-12)
  finally:
    subprocess.run(['umount', str(folder)], check=True)


def test_crash_of_the_computing_process_is_one_line():
  """What the supervisor says about a child that died from a signal."""
  from nt_gp.cli_supervisor import crash_message  # pylint: disable=g-import-not-at-top
  saved = '3 of 16 blocks are saved in k.h5'
  msg = crash_message(-signal.SIGABRT, "terminate called after throwing an "
                      "instance of 'std::bad_alloc'", 64, saved)
  assert msg.startswith('out of memory computing blocks of 64 x 64 inputs '
                        '(SIGABRT)') and '--batch-size 32' in msg
  # oneDNN out of (address-space) memory, aborting before TensorFlow has
  # reported the failed allocation (seen under test_out_of_memory_...'s
  # limit): the same advice.
  msg = crash_message(-signal.SIGABRT, "terminate called after throwing an "
                      "instance of 'dnnl::error'\n  what():  could not "
                      "create a primitive", 64, saved)
  assert msg.startswith('out of memory computing blocks of 64 x 64 inputs '
                        '(SIGABRT)') and '--batch-size 32' in msg
  msg = crash_message(-signal.SIGKILL, '', 8, saved)
  assert 'out-of-memory killer' in msg and '--batch-size 4' in msg
  msg = crash_message(-signal.SIGSEGV, 'whatever', 8, saved)
  assert msg == ('the computation crashed (SIGSEGV); 3 of 16 blocks are saved '
                 'in k.h5: rerun with --resume (add --verbose to see '
                 'TensorFlow\'s messages)')
  assert '\n' not in msg
