"""Nyström CG with its kernel passes on tf.distribute workers: the same
numbers as in one process, and a worker SIGKILLed mid-solve costs only its
blocks."""
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nt_gp import stax
from nt_gp.solve.nystrom import nystrom_sweep

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent('''
    import sys
    import numpy as np
    import tensorflow as tf
    from nt_gp import stax
    from nt_gp.distributed import ClusterRunner, LocalCluster
    from nt_gp.solve.nystrom import nystrom_sweep

    _, _, base = stax.serial(stax.Dense(1, 1.5, 0.05), stax.Relu(),
                             stax.Dense(1, 1.5, 0.05))

    @tf.function(autograph=False)
    def _spin(x):   # makes each block last long enough to kill a worker
      i, = tf.while_loop(lambda i: i < 20000, lambda i: (i + 1,),
                         (tf.constant(0),))
      return x + tf.cast(i - i, x.dtype)

    def kernel_fn(x1, x2=None, get=None, **kwargs):
      return base(_spin(x1), x2, get, **kwargs)

    rng = np.random.RandomState(0)
    x = rng.randn(200, 3)
    y = np.stack([np.sin(x[:, 0]), np.cos(x[:, 1])], 1)
    cluster = LocalCluster(2, threads=1)
    for i, proc in enumerate(cluster.workers):
      print(f'started worker {i} (pid {proc.pid})', file=sys.stderr,
            flush=True)
    runner = ClusterRunner(cluster.spec)
    fit = nystrom_sweep(y, [0.05, 0.5], kernel_fn=kernel_fn, x_train=x,
                        n_centres=30, centres='leverage', batch_size=20,
                        tol=1e-30, max_iter=6, runner=runner, posterior=True,
                        log=lambda s: print(s, file=sys.stderr, flush=True))
    pred = fit.predict(x[:50])
    var = fit.predict_variance(x[:50])
    # Into the file, not stderr: TensorFlow's C++ error lines about the lost
    # worker are written to the same stream concurrently and can split a line.
    np.savez(sys.argv[1], alpha=fit.alpha, centres=fit.centres, pred=pred,
             var=var, lml=fit.log_marginal_likelihood, elbo=fit.elbo,
             alive=cluster.alive_workers())
    runner.close()
    cluster.remove_logs()
''')


@pytest.mark.slow
def test_worker_killed_mid_solve(tmp_path):
  """Two local workers; worker 1 is SIGKILLed during the third CG pass.
  Six CG iterations (no tolerance stop) give the same iterate as in one
  process, and the same centres (leverage scores computed on the cluster)."""
  out = tmp_path / 'out.npz'
  proc = subprocess.Popen(
      [sys.executable, '-c', CHILD, str(out)], stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE, text=True, cwd=ROOT,
      # PYTHONFAULTHANDLER: a crash of the coordinator or a worker prints
      # every Python thread's stack into stderr, which the assertion shows.
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONFAULTHANDLER='1'))
  pids, lines, killed = {}, [], False
  try:
    for line in proc.stderr:
      lines.append(line)
      m = re.match(r'started worker (\d+) \(pid (\d+)\)', line)
      if m:
        pids[int(m.group(1))] = int(m.group(2))
      if line.startswith('iteration 2:') and not killed:
        os.kill(pids[1], signal.SIGKILL)      # in the pass of iteration 3
        killed = True
    proc.wait(timeout=900)
  finally:
    if proc.poll() is None:
      proc.kill()
  proc.stderr.close()
  stderr = ''.join(lines)
  assert proc.returncode == 0, (
      f'coordinator exited with {proc.returncode}:\n{stderr[-8000:]}')
  assert killed
  assert 'Worker /job:worker/replica:0/task:1 failed' in stderr, \
      stderr[-3000:]
  got = np.load(out)
  assert int(got['alive']) == 1

  _, _, kernel_fn = stax.serial(stax.Dense(1, 1.5, 0.05), stax.Relu(),
                                stax.Dense(1, 1.5, 0.05))
  rng = np.random.RandomState(0)
  x = rng.randn(200, 3)
  y = np.stack([np.sin(x[:, 0]), np.cos(x[:, 1])], 1)
  want = nystrom_sweep(y, [0.05, 0.5], kernel_fn=kernel_fn, x_train=x,
                       n_centres=30, centres='leverage', batch_size=20,
                       tol=1e-30, max_iter=6, posterior=True)
  np.testing.assert_array_equal(got['centres'], want.centres)
  np.testing.assert_allclose(got['pred'], want.predict(x[:50]), rtol=1e-8,
                             atol=1e-8)
  # K_ZX K_XZ accumulated on the two workers in the first pass.
  np.testing.assert_allclose(got['lml'], want.log_marginal_likelihood,
                             rtol=1e-10)
  np.testing.assert_allclose(got['elbo'], want.elbo, rtol=1e-10)
  np.testing.assert_allclose(got['var'], want.predict_variance(x[:50]),
                             rtol=1e-8, atol=1e-10)
