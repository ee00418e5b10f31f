"""Nyström + preconditioned CG (Falkon) for NNGP/NTK regression at large N.

  python benchmarks/solve_nystrom.py                  # N = 1,000,000, M = 5000
  python benchmarks/solve_nystrom.py --n 100000       # a shorter main run
  python benchmarks/solve_nystrom.py --quick          # smoke run

Data: N points ``x ~ N(0, I_8)``, targets ``f(x) = sin(2 x0) + x1 x2 / 2 +
cos(x3) / 2`` plus Gaussian noise of standard deviation 0.1 (the best
possible test RMSE is 0.1); 10,000 validation and 10,000 test points. Kernel:
the NTK (``--get``) of the ``fcn`` preset (3 ReLU layers), float32, computed
block by block by its ``kernel_fn``. Parts, each in its own process:

* ``main``: `nt_gp.solve.nystrom_sweep` with M uniform centres, ``diag_reg``
  in {1e-4, 1e-3, 1e-2} (relative), early stopping on the validation set,
  ``memory_limit`` 6 GiB and blocks that do not fit in memory cached on disk
  (``--cache-dir``); wall time (everything: diagonal, CG passes, test
  predictions) and peak RSS. Targets: under 30 minutes, under 8 GB.
* ``rmse_vs_m``: test RMSE against M at ``--n-small`` points (plot).
* ``vs_exact``: at ``--n-exact`` points (20,000), the exact GP
  (`nt_gp.solve.exact_sweep`, in memory) against Nyström for several M:
  the relative RMS difference of the test means and variances, both test
  RMSEs, and the log marginal likelihood of the Nyström (DTC) GP and its
  Titsias bound against the exact one (``posterior=True``).
* ``workers``: CG passes on 1 vs 2 local `tf.distribute` workers (one core
  and one thread each; `nt_gp.distributed.ClusterRunner`), a fixed number of
  iterations at ``--n-workers`` points; steady-state seconds per CG
  iteration.

Writes docs/benchmarks/solve_nystrom.md and its figure.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from machine import peak_rss_bytes  # pylint: disable=g-import-not-at-top,wrong-import-position
from report import DOCS, Report  # pylint: disable=g-import-not-at-top,wrong-import-position

REGS = [1e-4, 1e-3, 1e-2]


def data(n, n_val, n_test, seed=0):
  rng = np.random.RandomState(seed)
  x = rng.randn(n + n_val + n_test, 8).astype(np.float32)
  f = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.5 * np.cos(x[:, 3])
  y = (f + 0.1 * rng.randn(len(x))).astype(np.float64)
  a, b = n, n + n_val
  return (x[:a], y[:a]), (x[a:b], y[a:b]), (x[b:], y[b:])


def _kernel_fn():
  from nt_gp import presets  # pylint: disable=g-import-not-at-top
  return presets.build('fcn')[2]


def _rmse(pred, y):
  return float(np.sqrt(np.mean((pred[..., 0] - y) ** 2)))


# ----------------------------------------------------------------------------
# Children.
# ----------------------------------------------------------------------------
def child_main(a):
  from nt_gp.solve import nystrom_sweep  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  train, val, test = data(a.n, a.n_val, a.n_test)
  lines = []
  fit = nystrom_sweep(train[1], REGS, kernel_fn=_kernel_fn(), x_train=train[0],
                      get=a.get, n_centres=a.m, validation=val,
                      batch_size=a.batch_size, tol=1e-6, max_iter=a.max_iter,
                      patience=3, memory_limit=a.memory_limit,
                      cache_dir=a.cache_dir, log=lines.append)
  pred = fit.predict(test[0])
  seconds = time.perf_counter() - t0
  return {'seconds': seconds, 'peak_rss': peak_rss_bytes(),
          'rmse': [_rmse(p, test[1]) for p in pred],
          'iterations': fit.solve.iterations.tolist(),
          'best_iteration': fit.solve.best_iteration.tolist(),
          'val_rmse': [float(v) for v in np.min(np.array(
              fit.solve.validation), 0)] if fit.solve.validation else None}


def child_rmse_vs_m(a):
  from nt_gp.solve import nystrom_sweep  # pylint: disable=g-import-not-at-top
  train, val, test = data(a.n_small, a.n_val, a.n_test)
  out = []
  for m in a.ms:
    t = time.perf_counter()
    fit = nystrom_sweep(train[1], REGS, kernel_fn=_kernel_fn(),
                        x_train=train[0], get=a.get, n_centres=m,
                        validation=val, batch_size=a.batch_size, tol=1e-6,
                        max_iter=a.max_iter, cache_dir=a.cache_dir)
    pred = fit.predict(test[0])
    rmse = [_rmse(p, test[1]) for p in pred]
    best = int(np.argmin(np.min(np.array(fit.solve.validation), 0)))
    out.append({'m': m, 'rmse': rmse, 'best': best,
                'seconds': time.perf_counter() - t})
  return out


def child_vs_exact(a):
  from nt_gp.distributed import LocalRunner, compute_kernel  # pylint: disable=g-import-not-at-top
  from nt_gp.solve import exact_sweep, nystrom_sweep  # pylint: disable=g-import-not-at-top
  from nt_gp.solve.kernel_blocks import FunctionBlocks  # pylint: disable=g-import-not-at-top
  train, _, test = data(a.n_exact, 0, a.n_test)
  kernel_fn = _kernel_fn()
  gp = 'nngp' if a.get == 'nngp' else 'ntkgp'
  test_diag = FunctionBlocks(kernel_fn, test[0], test[0][:1], a.get,
                             256).diagonal()
  folder = tempfile.mkdtemp(dir=a.cache_dir)
  try:
    paths = {}
    bs = max(b for b in range(1, 501) if a.n_exact % b == 0 and
             a.n_test % b == 0)
    for name, x1, x2 in (('train', train[0], None),
                         ('test', test[0], train[0])):
      paths[name] = os.path.join(folder, f'{name}.h5')
      compute_kernel(kernel_fn, x1, x2, out=paths[name], arch='fcn',
                     get=a.get, batch_size=bs, runner=LocalRunner(1),
                     progress=False, fsync=False)
    t = time.perf_counter()
    exact = exact_sweep(paths['train'], train[1], REGS, get=gp,
                        eval_sets={'test': (paths['test'], test_diag)})
    exact_s = time.perf_counter() - t
  finally:
    shutil.rmtree(folder, ignore_errors=True)
  ref = exact.mean['test'][..., 0]
  ref_var = exact.variance['test']
  out = {'exact_rmse': [float(np.sqrt(np.mean((m - test[1]) ** 2)))
                        for m in ref], 'exact_seconds': exact_s,
         'method': exact.method, 'nystrom': [],
         'exact_lml': exact.log_marginal_likelihood.tolist()}
  for m in a.ms_exact:
    t = time.perf_counter()
    fit = nystrom_sweep(train[1], REGS, kernel_fn=kernel_fn,
                        x_train=train[0], get=gp, n_centres=m,
                        batch_size=a.batch_size, tol=1e-8,
                        max_iter=a.max_iter, posterior=True)
    pred = fit.predict(test[0])[..., 0]
    var = fit.predict_variance(test[0])
    out['nystrom'].append({
        'm': m, 'seconds': time.perf_counter() - t,
        'rmse': [float(np.sqrt(np.mean((p - test[1]) ** 2))) for p in pred],
        'diff': [float(np.sqrt(np.mean((p - r) ** 2) / np.mean(r ** 2)))
                 for p, r in zip(pred, ref)],
        'var_diff': [float(np.sqrt(np.mean((p - r) ** 2) / np.mean(r ** 2)))
                     for p, r in zip(var, ref_var)],
        'lml': fit.log_marginal_likelihood.tolist(),
        'elbo': fit.elbo.tolist(),
        'iterations': fit.solve.iterations.tolist()})
  return out


def child_workers(a):
  from nt_gp.solve import nystrom_sweep  # pylint: disable=g-import-not-at-top
  train, _, _ = data(a.n_workers, 0, 0)
  cluster = runner = None
  if a.workers:
    from nt_gp.distributed import ClusterRunner, LocalCluster  # pylint: disable=g-import-not-at-top
    cluster = LocalCluster(a.workers, threads=1, pin_cores=True)
    runner = ClusterRunner(cluster.spec)
  stamps = []

  def log(line):
    if line.startswith(('iteration', 'Nyström')):
      stamps.append(time.perf_counter())

  t = time.perf_counter()
  nystrom_sweep(train[1], 1e-3, kernel_fn=_kernel_fn(), x_train=train[0],
                get=a.get, n_centres=a.m_workers, batch_size=a.batch_size,
                tol=1e-30, max_iter=a.iters_workers, runner=runner, log=log)
  total = time.perf_counter() - t
  steady = float(np.median(np.diff(stamps[1:]))) if len(stamps) > 2 else 0.
  if runner is not None:
    runner.close()
    cluster.remove_logs()
  return {'workers': a.workers, 'total': total, 'per_iteration': steady}


CHILDREN = {'main': child_main, 'rmse_vs_m': child_rmse_vs_m,
            'vs_exact': child_vs_exact, 'workers': child_workers}


def run_child(part, argv, extra=()):
  cmd = [sys.executable, os.path.abspath(__file__), '--child', part] + \
      list(argv) + list(extra)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
  lines = proc.stdout.strip().splitlines()
  if proc.returncode or not lines:
    raise RuntimeError(f'{part} failed with exit code {proc.returncode}:\n'
                       f'{proc.stderr[-3000:]}')
  return json.loads(lines[-1])


def plot(path, rmse_vs_m, vs_exact):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  ms = [r['m'] for r in rmse_vs_m]
  best = [min(r['rmse']) for r in rmse_vs_m]
  axes[0].plot(ms, best, 'o-', label='Nyström (best diag_reg)')
  axes[0].axhline(0.1, color='gray', ls=':', label='noise level')
  axes[0].set_xscale('log')
  axes[0].set_xlabel('centres M')
  axes[0].set_ylabel('test RMSE')
  axes[0].legend()
  axes[0].set_title('test RMSE vs M')
  ms = [r['m'] for r in vs_exact['nystrom']]
  for i, reg in enumerate(REGS):
    axes[1].plot(ms, [r['diff'][i] for r in vs_exact['nystrom']], 'o-',
                 label=f'diag_reg {reg:g}')
  axes[1].set_xscale('log')
  axes[1].set_yscale('log')
  axes[1].set_xlabel('centres M')
  axes[1].set_ylabel('relative RMS difference to exact')
  axes[1].legend()
  axes[1].set_title('Nyström vs exact GP means')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--n', type=int, default=1_000_000)
  p.add_argument('--m', type=int, default=5000)
  p.add_argument('--get', choices=('nngp', 'ntk'), default='ntk')
  p.add_argument('--n-val', type=int, default=10000)
  p.add_argument('--n-test', type=int, default=10000)
  p.add_argument('--n-small', type=int, default=100000)
  p.add_argument('--ms', default='500,1000,2000,5000')
  p.add_argument('--n-exact', type=int, default=20000)
  p.add_argument('--ms-exact', default='500,1000,2000,5000')
  p.add_argument('--n-workers', type=int, default=50000)
  p.add_argument('--m-workers', type=int, default=1000)
  p.add_argument('--iters-workers', type=int, default=4)
  p.add_argument('--batch-size', type=int, default=2048)
  p.add_argument('--max-iter', type=int, default=50)
  p.add_argument('--memory-limit', default='6G')
  p.add_argument('--parts', default='main,rmse_vs_m,vs_exact,workers')
  p.add_argument('--cache-dir', help='folder for kernel-block caches '
                 '(default: a temporary folder)')
  p.add_argument('--quick', action='store_true')
  p.add_argument('--out', default=str(DOCS / 'solve_nystrom.md'))
  p.add_argument('--child', help=argparse.SUPPRESS)
  p.add_argument('--workers', type=int, default=0, help=argparse.SUPPRESS)
  a = p.parse_args(argv)
  if a.quick:
    a.n, a.m, a.n_val, a.n_test = 4000, 300, 300, 300
    a.n_small, a.ms, a.n_exact, a.ms_exact = 2000, '100,300', 800, '100,300'
    a.n_workers, a.m_workers, a.iters_workers = 600, 100, 2
    a.batch_size, a.max_iter, a.memory_limit = 256, 20, '3G'
  a.ms = [int(v) for v in str(a.ms).split(',')]
  a.ms_exact = [int(v) for v in str(a.ms_exact).split(',')]
  if a.child:
    print(json.dumps(CHILDREN[a.child](a)), flush=True)
    sys.stderr.flush()
    # Skip TensorFlow's teardown of the cluster connection at exit (it can
    # abort a process whose workers are gone); the result is printed.
    os._exit(0)  # pylint: disable=protected-access
  own = a.cache_dir is None
  cache = tempfile.mkdtemp(prefix='nt_gp_nystrom_bench_') if own else \
      a.cache_dir
  forward = ['--n', a.n, '--m', a.m, '--get', a.get, '--n-val', a.n_val,
             '--n-test', a.n_test, '--n-small', a.n_small, '--ms',
             ','.join(map(str, a.ms)), '--n-exact', a.n_exact, '--ms-exact',
             ','.join(map(str, a.ms_exact)), '--n-workers', a.n_workers,
             '--m-workers', a.m_workers, '--iters-workers', a.iters_workers,
             '--batch-size', a.batch_size, '--max-iter', a.max_iter,
             '--memory-limit', a.memory_limit, '--cache-dir', cache]
  forward = [str(v) for v in forward]
  parts = a.parts.split(',')
  r = Report(f'Nyström + preconditioned CG: {a.get.upper()} regression' +
             (f', N = {a.n:,}' if 'main' in parts else
              f' ({", ".join(parts)})'),
             f'See `benchmarks/solve_nystrom.py` for the data and the parts. '
             f'`diag_reg` in {REGS} (relative to the mean of diag K), '
             f'uniform centres, float32 kernel blocks of {a.batch_size} rows, '
             f'float64 CG.')
  results = {}
  try:
    for part in parts:
      r.say(f'{part}: load average {os.getloadavg()[0]:.1f}')
      if part == 'workers':
        results[part] = [run_child('workers', forward, ['--workers', str(k)])
                         for k in (0, 1, 2)]
      else:
        results[part] = run_child(part, forward)
      r.say(f'  {json.dumps(results[part])}')
  finally:
    if own:
      shutil.rmtree(cache, ignore_errors=True)
  if 'main' in results:
    m = results['main']
    r.table(['N', 'M', 'wall time', 'peak RSS', 'test RMSE per diag_reg',
             'CG iterations (best)'],
            [[f'{a.n:,}', a.m, f'{m["seconds"] / 60:.1f} min (target < 30)',
              f'{m["peak_rss"] / 1e9:.2f} GB (target < 8)',
              ', '.join(f'{v:.4f}' for v in m['rmse']),
              ', '.join(f'{i} ({b})' for i, b in zip(m['iterations'],
                                                     m['best_iteration']))]],
            f'Main run (memory limit {a.memory_limit}, blocks beyond it '
            f'cached on disk):')
  if 'rmse_vs_m' in results:
    r.table(['M', 'best test RMSE', 'RMSE per diag_reg', 'time'],
            [[x['m'], f'{min(x["rmse"]):.4f}',
              ', '.join(f'{v:.4f}' for v in x['rmse']),
              f'{x["seconds"]:.0f} s'] for x in results['rmse_vs_m']],
            f'Test RMSE vs M at N = {a.n_small:,} (noise level 0.1):')
  if 'vs_exact' in results:
    v = results['vs_exact']
    r.table(['M', 'relative RMS difference to exact, per diag_reg',
             'Nyström test RMSE', 'exact test RMSE', 'time (Nyström)'],
            [[x['m'], ', '.join(f'{d:.2e}' for d in x['diff']),
              ', '.join(f'{e:.4f}' for e in x['rmse']),
              ', '.join(f'{e:.4f}' for e in v['exact_rmse']),
              f'{x["seconds"]:.0f} s'] for x in v['nystrom']],
            f'Nyström vs the exact GP at N = {a.n_exact:,} (exact: '
            f'{v["method"]}, {v["exact_seconds"]:.0f} s):')
    r.table(['M', 'relative RMS difference of the test variances',
             'log marginal likelihood, Nyström (DTC)', 'Titsias bound',
             'exact log marginal likelihood'],
            [[x['m'], ', '.join(f'{d:.2e}' for d in x['var_diff']),
              ', '.join(f'{e:.6g}' for e in x['lml']),
              ', '.join(f'{e:.6g}' for e in x['elbo']),
              ', '.join(f'{e:.6g}' for e in v['exact_lml'])]
             for x in v['nystrom']],
            f'The Nyström GP\'s variances and evidence at N = '
            f'{a.n_exact:,}, per diag_reg (`posterior=True`; Titsias\' '
            f'bound is below both log marginal likelihoods, and approaches '
            f'the exact one as M grows):')
  if 'workers' in results:
    w = {x['workers']: x for x in results['workers']}
    rows = [[{0: 'in process (2 threads)', 1: '1 worker', 2: '2 workers'}[k],
             f'{w[k]["per_iteration"]:.2f} s', f'{w[k]["total"]:.0f} s']
            for k in (0, 1, 2)]
    eff = w[1]['per_iteration'] / max(2 * w[2]['per_iteration'], 1e-9)
    r.table(['where', 'seconds per CG iteration (steady)',
             'total incl. start-up'], rows,
            f'CG passes on local workers, N = {a.n_workers:,}, M = '
            f'{a.m_workers} (scaling efficiency 1 -> 2 workers: '
            f'{100 * eff:.0f}%):')
  if 'rmse_vs_m' in results and 'vs_exact' in results:
    img = os.path.join(os.path.dirname(os.path.abspath(a.out)), 'img')
    os.makedirs(img, exist_ok=True)
    plot(os.path.join(img, 'solve_nystrom.png'), results['rmse_vs_m'],
         results['vs_exact'])
    r.intro += '\n\n![Test RMSE vs M; Nyström vs exact](img/solve_nystrom.png)'
  r.write(a.out)


if __name__ == '__main__':
  main()
