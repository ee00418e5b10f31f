"""Kernels over several devices and several worker processes equal the
single-device kernel (also with ragged blocks); a worker killed mid-job does
not stop the job, and the local cluster leaves no log folders behind."""
import glob
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

from nt_gp import stax
from nt_gp.store import KernelStore

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Two virtual CPU devices must be configured before TensorFlow initialises,
# hence a fresh process.
TWO_DEVICES = textwrap.dedent('''
    import functools, json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices('CPU')[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from nt_gp import stax
    from nt_gp.batching import batch
    from nt_gp.distributed import LocalRunner, compute_kernel
    from nt_gp.store import KernelStore

    _, _, base = stax.serial(stax.Conv(4, (2, 2), padding='SAME'), stax.Relu(),
                             stax.Flatten(), stax.Dense(1))
    used = set()

    @functools.wraps(base)
    def kernel_fn(x1, x2=None, *args, **kwargs):
      used.add(tf.zeros(()).device)     # the device this block runs on
      return base(x1, x2, *args, **kwargs)

    rng = np.random.RandomState(0)
    x1, x2 = rng.randn(7, 3, 3, 2), rng.randn(4, 3, 3, 2)   # 7 = 2+2+2+1
    out = {'devices': len(tf.config.list_logical_devices('CPU'))}
    for name, a, b in (('sym', x1, None), ('asym', x1, x2)):
      one = batch(kernel_fn, 2, device_count=1)(a, b, ('nngp', 'ntk'))
      used.clear()
      two = batch(kernel_fn, 2, device_count=2)(a, b, ('nngp', 'ntk'))
      out[name + '_used'] = len(used)
      rows = batch(kernel_fn, 0, device_count=2)(a, b, ('nngp', 'ntk'))
      ref = base(a, b, ('nngp', 'ntk'))
      for q in ('nngp', 'ntk'):
        out[f'{name}_{q}_two_equals_one'] = bool(np.array_equal(
            getattr(two, q), getattr(one, q)))
        out[f'{name}_{q}_err'] = float(np.max(np.abs(
            getattr(two, q) - getattr(ref, q))))
        out[f'{name}_{q}_rows_err'] = float(np.max(np.abs(
            getattr(rows, q) - getattr(ref, q))))
    stores = {}
    for n in (1, 2):
      path = f'{sys.argv[1]}/store{n}.h5'
      used.clear()
      compute_kernel(kernel_fn, x1, out=path, arch='cnn', get=('nngp', 'ntk'),
                     batch_size=2, runner=LocalRunner(n), progress=False)
      out[f'store{n}_used'] = len(used)
      with KernelStore.open(path) as s:
        stores[n] = s.read('nngp'), s.read('ntk')
    out['store_two_equals_one'] = all(
        np.array_equal(a, b) for a, b in zip(stores[1], stores[2]))
    out['store_err'] = float(np.max(np.abs(
        stores[2][0] - base(x1, None, 'nngp'))))
    print(json.dumps(out))
''')


def test_two_virtual_cpu_devices_equal_one(tmp_path):
  script = tmp_path / 'two_devices.py'
  script.write_text(TWO_DEVICES)
  proc = subprocess.run([sys.executable, str(script), str(tmp_path)],
                        capture_output=True, text=True, cwd=ROOT, timeout=600,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out['devices'] == 2
  for name in ('sym', 'asym'):
    assert out[name + '_used'] == 2, out       # both devices computed blocks
    for q in ('nngp', 'ntk'):
      assert out[f'{name}_{q}_two_equals_one'], out
      assert out[f'{name}_{q}_err'] < 1e-10, out
      assert out[f'{name}_{q}_rows_err'] < 1e-10, out
  assert out['store1_used'] == 1 and out['store2_used'] == 2, out
  assert out['store_two_equals_one'] and out['store_err'] < 1e-10, out


SLOW_ARCH = textwrap.dedent('''
    import tensorflow as tf
    from nt_gp import stax
    _, _, _kernel_fn = stax.serial(stax.Dense(8, 1.5, 0.05), stax.Relu(),
                                   stax.Dense(1, 1.5, 0.05))

    @tf.function(autograph=False)
    def _spin(x):   # makes each block last long enough to kill a worker
      i, = tf.while_loop(lambda i: i < 20000, lambda i: (i + 1,),
                         (tf.constant(0),))
      return x + tf.cast(i - i, x.dtype)

    def kernel_fn(x1, x2=None, get=None, **kwargs):
      return _kernel_fn(_spin(x1), x2, get, **kwargs)
''')


def test_worker_killed_mid_job(tmp_path):
  """`nt-gp kernel --workers 2` on 127.0.0.1 with 30 inputs in blocks of 4
  (the last of 2); worker 1 is SIGKILLed after a few blocks; its closures
  are re-run on worker 0, the kernel is right, the worker's death is one
  line (not a flood of gRPC errors) and no log folder is left."""
  rng = np.random.RandomState(0)
  x = rng.randn(30, 5)
  np.save(tmp_path / 'x.npy', x)
  (tmp_path / 'slow_arch.py').write_text(SLOW_ARCH)
  tmp = tmp_path / 'tmp'      # the job's temporary directory
  tmp.mkdir()
  stale = tempfile.mkdtemp(prefix=f'nt_gp_cluster_{_dead_pid()}_', dir=tmp)
  out = tmp_path / 'k.h5'
  cmd = [sys.executable, '-m', 'nt_gp.cli', 'kernel', '--x1',
         str(tmp_path / 'x.npy'), '--arch', str(tmp_path / 'slow_arch.py'),
         '--get', 'nngp,ntk', '--batch-size', '4', '--out', str(out),
         '--workers', '2', '--threads-per-worker', '1', '--log-blocks',
         '--no-progress']
  env = dict(os.environ, TMPDIR=str(tmp))
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)
  proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, cwd=ROOT, env=env)
  pids, lines, blocks = {}, [], 0
  try:
    for line in proc.stderr:
      lines.append(line)
      m = re.match(r'started worker (\d+) \(pid (\d+)\)', line)
      if m:
        pids[int(m.group(1))] = int(m.group(2))
      if line.startswith('computed block'):
        blocks += 1
        if blocks == 4:
          os.kill(pids[1], signal.SIGKILL)
    proc.wait(timeout=600)
  finally:
    if proc.poll() is None:
      proc.kill()
  stderr = ''.join(lines)
  stdout = proc.stdout.read()
  proc.stdout.close()
  assert proc.returncode == 0, stderr[-3000:]
  assert sorted(pids) == [0, 1]
  assert re.search(r'^worker 1 \(pid \d+\) stopped \(killed by SIGKILL\); '
                   r'its blocks go to the 1 other worker', stderr, re.M), (
                       stderr[-3000:])
  noise = [l for l in lines if not l.startswith(
      ('computed block', 'mirrored block', 'started worker', 'worker 1'))]
  assert noise == [], noise
  assert 'blocks written by this run' in stdout
  assert blocks == 36     # each of the 8 x 9 / 2 block tasks written once
  assert not os.path.exists(stale)
  assert glob.glob(str(tmp / 'nt_gp_cluster_*')) == []
  _, _, kernel_fn = stax.serial(stax.Dense(8, 1.5, 0.05), stax.Relu(),
                                stax.Dense(1, 1.5, 0.05))
  want = kernel_fn(x, None, ('nngp', 'ntk'))
  with KernelStore.open(out) as s:
    assert s.complete and s.grid.ragged
    np.testing.assert_allclose(s.read('nngp'), want.nngp, rtol=1e-10)
    np.testing.assert_allclose(s.read('ntk'), want.ntk, rtol=1e-7)


def _dead_pid():
  child = subprocess.Popen([sys.executable, '-c', 'pass'])
  child.wait()
  return child.pid
