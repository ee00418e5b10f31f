"""A process SIGKILLed during the out-of-core factorisation resumes from its
work folder and gives the same numbers as scipy on the same kernel."""
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import scipy.linalg

ROOT = pathlib.Path(__file__).resolve().parents[1]
N, T = 800, 50
REGS = [1e-3, 1e-1]

CHILD = textwrap.dedent('''
    import sys, time
    import numpy as np
    from nt_gp.solve import exact_sweep
    from nt_gp.solve.memory import MARGIN_BYTES, current_rss
    d = sys.argv[1]
    k, kt, ktt, y = (np.load(f'{d}/{n}.npy') for n in ('k', 'kt', 'ktt', 'y'))

    def log(line):
      print(line, file=sys.stderr, flush=True)
      if line.startswith('panel'):
        time.sleep(0.03)      # slow enough for the parent to kill mid-run

    out = exact_sweep(k, y, %s, diag_reg_absolute_scale=True,
                      eval_sets={'test': (kt, ktt)}, method='tiled',
                      memory_limit=current_rss() + MARGIN_BYTES + k.nbytes // 10,
                      work_dir=f'{d}/work', log=log)
    np.savez(f'{d}/out.npz', mean=out.mean['test'],
             var=out.variance['test'], lml=out.log_marginal_likelihood)
''' % REGS)


def _run(tmp_path, kill_after=None, delay=0.):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.Popen([sys.executable, '-c', CHILD, str(tmp_path)],
                          stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                          text=True, cwd=ROOT, env=env)
  lines, panels = [], 0
  try:
    for line in proc.stderr:
      lines.append(line.rstrip())
      if line.startswith('panel'):
        panels += 1
        if kill_after is not None and panels == kill_after:
          if delay:
            import time  # pylint: disable=g-import-not-at-top
            time.sleep(delay)
          os.kill(proc.pid, signal.SIGKILL)
          break
    proc.wait(timeout=600)
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
    proc.stderr.close()
  return proc.returncode, lines


def test_sigkill_during_factorisation_then_resume(tmp_path):
  rng = np.random.RandomState(0)
  x = rng.randn(N + T, 3)
  sq = np.sum((x[:, None] - x[None]) ** 2, -1)
  full = np.exp(-sq / 6.) + 0.5 * (1 + x @ x.T / 3) ** 2     # RBF + quadratic
  k, kt, ktt = full[:N, :N], full[N:, :N], np.diag(full)[N:]
  y = np.stack([np.sin(x[:N, 0]), np.cos(x[:N, 1])], 1)
  for name, a in (('k', k), ('kt', kt), ('ktt', ktt), ('y', y)):
    np.save(tmp_path / f'{name}.npy', a)

  # Killed twice at different moments (after the 3rd panel's record, and a
  # moment after the 7th: inside a later panel's computation or write).
  code, lines = _run(tmp_path, kill_after=3)
  assert code == -signal.SIGKILL, lines[-5:]
  plan = next(l for l in lines if 'out-of-core Cholesky' in l)
  n_panels = int(re.search(r', (\d+) panels of', plan).group(1))
  assert n_panels >= 10, plan
  code, lines = _run(tmp_path, kill_after=4, delay=0.02)
  assert code == -signal.SIGKILL, lines[-5:]
  resumed = [l for l in lines if l.startswith('resuming')]
  assert re.search(rf'3 of {n_panels} panels done', resumed[0]), lines[:5]
  code, lines = _run(tmp_path)
  assert code == 0, '\n'.join(lines[-20:])
  resumed = [l for l in lines if l.startswith('resuming')]
  done = int(re.search(r': (\d+) of', resumed[0]).group(1))
  assert 7 <= done < n_panels, resumed
  # Only the missing panels of the first value were computed in the last run.
  first = lines.index(resumed[0])
  second = next(i for i, l in enumerate(lines) if 'reg 0.1 (2/2)' in l)
  assert sum(l.startswith('panel') for l in lines[first:second]) == \
      n_panels - done

  out = np.load(tmp_path / 'out.npz')
  for i, reg in enumerate(REGS):
    a = k + reg * np.eye(N)
    lower = scipy.linalg.cholesky(a, lower=True)
    alpha = scipy.linalg.cho_solve((lower, True), y)
    v = scipy.linalg.solve_triangular(lower, kt.T, lower=True)
    lml = (-0.5 * np.sum(y * alpha)
           - 0.5 * y.shape[1] * 2 * np.sum(np.log(np.diag(lower)))
           - 0.5 * y.size * np.log(2 * np.pi))
    np.testing.assert_allclose(out['mean'][i], kt @ alpha, rtol=1e-10,
                               atol=1e-10 * np.abs(kt @ alpha).max())
    np.testing.assert_allclose(out['var'][i], ktt - np.sum(v ** 2, 0),
                               rtol=0, atol=1e-10 * ktt.max())
    np.testing.assert_allclose(out['lml'][i], lml, rtol=1e-10)
  assert sorted(f[:7] for f in os.listdir(tmp_path / 'work')) == \
      ['result-'] * 2
