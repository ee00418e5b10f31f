"""Runs the ways `nt-gp kernel` is known to have been abused, and says how
each one ended.

Usage: python tools/kernel_abuse.py [--keep DIR] [CASE ...]

Every case must end either in the right kernel (compared with `kernel_fn`
computed in memory) or in exactly one ``nt-gp kernel: error:`` line, with no
traceback and none of TensorFlow's log lines; the last column says which,
or what went wrong. Cases that need root (a tmpfs for a full disk, a
read-only mount) are skipped otherwise. The command run is ``python -m
nt_gp.cli kernel`` of the interpreter running this script, so pointing
PYTHONPATH at another checkout compares versions. Takes a few minutes.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

# This script's own TensorFlow (to compute kernels in memory) stays quiet;
# the commands it runs get the user's environment without this setting.
_USER_LOG_LEVEL = os.environ.get('TF_CPP_MIN_LOG_LEVEL')
os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'

CMD = [sys.executable, '-m', 'nt_gp.cli', 'kernel', '--no-progress']

HELPER_ARCH = textwrap.dedent('''
    import helper
    from nt_gp import stax
    _, _, kernel_fn = stax.serial(stax.Dense(8, helper.W_STD, 0.05),
                                  stax.Relu(), stax.Dense(1, 1.5, 0.05))
''')
NO_BIAS_ARCH = textwrap.dedent('''
    from nt_gp import stax
    _, _, kernel_fn = stax.serial(stax.Dense(8, 1.5), stax.Relu(),
                                  stax.Dense(1, 1.5))
''')
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


def _env(**kw):
  env = dict(os.environ, **kw)
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  if _USER_LOG_LEVEL is not None:
    env['TF_CPP_MIN_LOG_LEVEL'] = _USER_LOG_LEVEL
  return env


_TF_LOG = re.compile(r'^([IWEF]\d{4} .*|WARNING: All log messages before absl.*|'
                     r'To enable the following instructions.*)$', re.M)


def verdict(rc, stderr, kernel_ok=None, ignore_tf_logs=False):
  """'correct kernel', 'one error line: ...' or what is wrong."""
  if ignore_tf_logs:
    stderr = _TF_LOG.sub('', stderr)
  errors = [l for l in stderr.splitlines() if 'error:' in l]
  noise = re.search(r'^[IWEF]\d{4} |oneDNN|absl|Traceback|Segmentation',
                    stderr, re.M)
  if rc < 0 or rc in (134, 139):
    return f'CRASH (exit {rc})'
  if noise:
    return f'NOISE/TRACEBACK ({noise.group(0)!r}), exit {rc}'
  if rc == 0:
    if errors:
      return 'exit 0 with an error line'
    if kernel_ok is None:
      return 'exit 0'
    return 'correct kernel' if kernel_ok else 'WRONG KERNEL (exit 0)'
  if len(errors) != 1 or not errors[0].startswith('nt-gp kernel: error: '):
    return f'{len(errors)} error lines, exit {rc}'
  return 'one error line: ' + errors[0][len('nt-gp kernel: error: '):][:110]


class Cases:
  """The abuse cases; each returns (rc, stderr, kernel_ok or None)."""

  def __init__(self, folder):
    self.d = folder
    rng = np.random.RandomState(0)
    self.x = rng.randn(48, 5)       # blocks of 4 and 16 divide it
    np.save(self._p('x.npy'), self.x)
    (self.d / 'slow_arch.py').write_text(SLOW_ARCH)

  def _p(self, name):
    return str(self.d / name)

  def run(self, args, env=None, **kw):
    proc = subprocess.run(CMD + [str(a) for a in args], capture_output=True,
                          text=True, env=env or _env(), timeout=900, **kw)
    return proc.returncode, proc.stderr

  def kernel_ok(self, out, x, x2=None, arch_w=1.5, bias=0.05, get='nngp'):
    from nt_gp import stax  # pylint: disable=g-import-not-at-top
    from nt_gp.store import KernelStore  # pylint: disable=g-import-not-at-top
    kernel_fn = stax.serial(stax.Dense(8, arch_w, bias), stax.Relu(),
                            stax.Dense(1, 1.5, bias))[2]
    try:
      with KernelStore.open(out) as s:
        got = s.read(get)
    except Exception:  # pylint: disable=broad-except
      return False
    want = np.asarray(kernel_fn(x, x2, get))
    return bool(np.all(np.isfinite(got)) and
                np.allclose(got, want, rtol=1e-4, atol=0))

  # -- the cases ---------------------------------------------------------------
  def changed_helper(self):
    sub = self.d / 'helper_case'
    sub.mkdir()
    (sub / 'arch.py').write_text(HELPER_ARCH)
    (sub / 'helper.py').write_text('W_STD = 1.5\n')
    out = sub / 'k.h5'
    args = ['--x1', self._p('x.npy'), '--arch', sub / 'arch.py',
            '--batch-size', 16, '--out', out]
    proc = subprocess.Popen(CMD + [str(a) for a in args] + ['--log-blocks'],
                            stderr=subprocess.PIPE, text=True, env=_env())
    seen = 0
    for line in proc.stderr:
      seen += line.startswith('computed')
      if seen == 3:
        os.kill(proc.pid, signal.SIGKILL)
        break
    proc.wait()
    proc.stderr.close()
    (sub / 'helper.py').write_text('W_STD = 1.7\n')
    rc, err = self.run(args + ['--resume'])
    return rc, err, (self.kernel_ok(out, self.x, arch_w=1.7) if rc == 0
                     else None)

  def overflow_float32(self):
    np.save(self._p('big32.npy'), np.full((8, 3), 1e30, np.float32))
    return self.run(['--x1', self._p('big32.npy'), '--arch', 'fcn',
                     '--batch-size', 4, '--out', self._p('o32.h5')]) + (None,)

  def overflow_float64_no_bias(self):
    (self.d / 'nobias.py').write_text(NO_BIAS_ARCH)
    np.save(self._p('big64.npy'), np.full((8, 3), 1e200))
    return self.run(['--x1', self._p('big64.npy'), '--arch',
                     self._p('nobias.py'), '--batch-size', 4, '--out',
                     self._p('o64.h5')]) + (None,)

  def float16_std_20(self):
    x = (20 * np.random.RandomState(1).randn(8, 3)).astype(np.float16)
    np.save(self._p('x16.npy'), x)
    out = self._p('o16.h5')
    rc, err = self.run(['--x1', self._p('x16.npy'), '--arch', 'fcn',
                        '--arch-args', '{"depth": 1}', '--batch-size', 4,
                        '--out', out])
    return rc, err, (self.kernel_ok(out, x.astype(np.float32)) if rc == 0
                     else None)

  def full_disk(self):
    mnt = self.d / 'disk'
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(
        ['mount', '-t', 'tmpfs', '-o', 'size=3m', 'tmpfs', str(mnt)],
        capture_output=True).returncode:
      return None
    try:
      np.save(self._p('x512.npy'), np.random.RandomState(2).randn(512, 3))
      proc = subprocess.Popen(
          CMD + ['--x1', self._p('x512.npy'), '--arch', self._p(
              'slow_arch.py'), '--batch-size', '64', '--out',
                 str(mnt / 'k.h5'), '--log-blocks'],
          stderr=subprocess.PIPE, text=True, env=_env())
      lines = []
      for line in proc.stderr:
        lines.append(line)
        if line.startswith('computed'):
          (mnt / 'filler').write_bytes(b'\0' * 2_000_000)
          break
      lines += proc.stderr.readlines()
      proc.wait()
      proc.stderr.close()
      err = ''.join(l for l in lines if not l.startswith('computed'))
      return proc.returncode, err, None
    finally:
      subprocess.run(['umount', str(mnt)])

  def byte_flips(self):
    """400 random single-byte flips of a finished store, opened by the API
    (not the command): anything but StoreCorruptError or the right data is
    reported as a traceback line."""
    from nt_gp.store import KernelStore, StoreCorruptError  # pylint: disable=g-import-not-at-top
    out = self._p('flip.h5')
    rc, err = self.run(['--x1', self._p('x.npy'), '--arch', 'fcn',
                        '--batch-size', 16, '--out', out])
    if rc:
      return rc, err, None
    with KernelStore.open(out) as s:
      want = s.read()
    data = open(out, 'rb').read()
    rng = np.random.RandomState(3)
    bad = []
    for k in rng.choice(len(data), 400, replace=False):
      flipped = bytearray(data)
      flipped[k] ^= 1 << rng.randint(8)
      with open(self._p('f.h5'), 'wb') as f:
        f.write(flipped)
      code = ('import sys, numpy as np\nfrom nt_gp.store import KernelStore\n'
              'with KernelStore.open(sys.argv[1]) as s: np.save(sys.argv[2], '
              's.read())')
      proc = subprocess.run([sys.executable, '-c', code, self._p('f.h5'),
                             self._p('f.npy')], capture_output=True, text=True)
      if proc.returncode == 0:
        if not np.array_equal(np.load(self._p('f.npy')), want):
          bad.append(f'byte {k}: wrong data')
      elif proc.returncode < 0 or 'StoreCorruptError' not in proc.stderr:
        bad.append(f'byte {k}: {proc.returncode} '
                   f'{proc.stderr.strip().splitlines()[-1:]}')
    del StoreCorruptError
    if bad:
      return f'WRONG: {len(bad)} of 400 flips: ' + '; '.join(bad[:2])
    return 'every flip: StoreCorruptError or the right data (400 flips)'

  def unwritable_out(self):
    return self.run(['--x1', self._p('x.npy'), '--arch', 'fcn',
                     '--batch-size', 16, '--out', '/proc/k.h5']) + (None,)

  def out_of_memory(self):
    np.save(self._p('img32.npy'), np.random.RandomState(4).randn(
        64, 32, 32, 3).astype(np.float32))

    def limit():
      resource.setrlimit(resource.RLIMIT_AS, (3500 * 2**20,) * 2)
    return self.run(['--x1', self._p('img32.npy'), '--arch', 'myrtle5',
                     '--batch-size', 64, '--out', self._p('oom.h5')],
                    preexec_fn=limit) + (None,)

  def _signal(self, sig):
    out = self._p(f'sig{int(sig)}.h5')
    proc = subprocess.Popen(
        CMD + ['--x1', self._p('x.npy'), '--arch', self._p('slow_arch.py'),
               '--batch-size', '4', '--out', out, '--log-blocks'],
        stderr=subprocess.PIPE, text=True, env=_env())
    seen = 0
    for line in proc.stderr:
      seen += line.startswith('computed')
      if seen == 3:
        break
    proc.send_signal(sig)
    rest = proc.stderr.read()
    proc.wait()
    proc.stderr.close()
    return proc.returncode, rest, None

  def ctrl_c(self):
    return self._signal(signal.SIGINT)

  def sigterm(self):
    return self._signal(signal.SIGTERM)

  def zero_byte_out_resume(self):
    out = self._p('zero.h5')
    open(out, 'wb').close()
    rc, err = self.run(['--x1', self._p('x.npy'), '--arch', 'fcn',
                        '--batch-size', 16, '--out', out, '--resume'])
    if os.path.getsize(out) != 0:
      err += '\nTraceback: the 0-byte file was rewritten'
    return rc, err, None

  def read_only_store(self):
    mnt = self.d / 'ro'
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(
        ['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', str(mnt)],
        capture_output=True).returncode:
      return None
    try:
      out = mnt / 'k.h5'
      self.run(['--x1', self._p('x.npy'), '--arch', 'fcn', '--batch-size', 16,
                '--out', out])
      subprocess.run(['mount', '-o', 'remount,ro', str(mnt)], check=True)
      return self.run(['--x1', self._p('x.npy'), '--arch', 'fcn',
                       '--batch-size', 16, '--out', out, '--resume']) + (None,)
    finally:
      subprocess.run(['umount', str(mnt)])

  def _bad_input(self, name, array):
    np.save(self._p(f'{name}.npy'), array)
    return self.run(['--x1', self._p(f'{name}.npy'), '--arch', 'fcn',
                     '--batch-size', 4, '--out', self._p(f'{name}.h5')]) + (
                         None,)

  def nan_input(self):
    x = self.x.copy()
    x[3, 1] = np.nan
    return self._bad_input('nan', x)

  def inf_input(self):
    x = self.x.copy()
    x[0, 0] = np.inf
    return self._bad_input('inf', x)

  def empty_input(self):
    return self._bad_input('empty', np.zeros((0, 5)))

  def complex_input(self):
    return self._bad_input('complex', self.x + 1j)

  def killed_during_creation(self):
    """A temporary file as a kill during creation leaves it: the next job
    must remove it and compute the right kernel."""
    out = self._p('tmpcase.h5')
    leftover = f'{out}.tmp-{os.uname().nodename}-999999999'
    open(leftover, 'wb').write(b'partial')
    rc, err = self.run(['--x1', self._p('x.npy'), '--arch', 'fcn',
                        '--arch-args', '{"depth": 1}', '--batch-size', 16,
                        '--out', out])
    if os.path.exists(leftover):
      err += '\nTraceback: the temporary file was left behind'
    return rc, err, self.kernel_ok(out, self.x) if rc == 0 else None

  def cluster_log_folders(self):
    tmp = self.d / 'tmpdir'
    tmp.mkdir()
    out = self._p('workers.h5')
    rc, err = self.run(['--x1', self._p('x.npy'), '--arch', 'fcn',
                        '--arch-args', '{"depth": 1}', '--batch-size', 25,
                        '--out', out, '--workers', '1'],
                       env=_env(TMPDIR=str(tmp)))
    left = [f for f in os.listdir(tmp) if f.startswith('nt_gp_cluster_')]
    if left:
      err += f'\nTraceback: log folders left: {left}'
    err = '\n'.join(l for l in err.splitlines()
                    if not l.startswith('started worker'))
    return rc, err, self.kernel_ok(out, self.x) if rc == 0 else None

  def two_writers(self):
    out = self._p('two.h5')
    args = ['--x1', self._p('x.npy'), '--arch', self._p('slow_arch.py'),
            '--batch-size', '4', '--out', out]
    env = _env(HDF5_USE_FILE_LOCKING='FALSE')
    first = subprocess.Popen(CMD + args + ['--log-blocks'],
                             stderr=subprocess.PIPE, text=True, env=env)
    for line in first.stderr:
      if line.startswith('computed'):
        break
    rc, err = self.run(args + ['--resume'], env=env)
    first.kill()
    first.wait()
    first.stderr.close()
    return rc, err, None

  def ragged_n(self):
    x = np.random.RandomState(5).randn(50, 5)      # 16 + 16 + 16 + 2
    np.save(self._p('x50.npy'), x)
    out = self._p('ragged.h5')
    rc, err = self.run(['--x1', self._p('x50.npy'), '--arch', 'fcn',
                        '--arch-args', '{"depth": 1}', '--batch-size', 16,
                        '--out', out])
    return rc, err, self.kernel_ok(out, x) if rc == 0 else None


CASES = [n for n in vars(Cases) if not n.startswith('_') and
         n not in ('run', 'kernel_ok')]


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('cases', nargs='*', default=CASES)
  p.add_argument('--keep', help='work in this folder and keep it')
  p.add_argument('--ignore-tensorflow-logs', action='store_true',
                 help='judge without TensorFlow\'s own log lines (to compare '
                      'versions that print them)')
  args = p.parse_args(argv)
  folder = args.keep or tempfile.mkdtemp(prefix='nt_gp_abuse_')
  os.makedirs(folder, exist_ok=True)
  import pathlib  # pylint: disable=g-import-not-at-top
  cases = Cases(pathlib.Path(folder))
  results = {}
  try:
    for name in args.cases:
      t = time.time()
      res = getattr(cases, name)()
      if res is None:
        line = 'skipped (needs root and tmpfs)'
      else:
        line = res if isinstance(res, str) else verdict(
            *res, ignore_tf_logs=args.ignore_tensorflow_logs)
      results[name] = line
      print(f'{name:26s} {time.time() - t:6.1f} s  {line}', flush=True)
  finally:
    if not args.keep:
      shutil.rmtree(folder, ignore_errors=True)
  bad = [n for n, v in results.items() if not v.startswith(
      ('correct kernel', 'one error line', 'skipped', 'every flip'))]
  print(json.dumps({'cases': len(results), 'not ok': bad}))
  return 1 if bad else 0


if __name__ == '__main__':
  sys.exit(main())
