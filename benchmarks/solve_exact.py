"""Exact GP solve out of core vs scipy's in-memory Cholesky, same kernel.

  python benchmarks/solve_exact.py --n 40000     # 6.4 GB float32 kernel
  python benchmarks/solve_exact.py --n 10000     # a shorter run
  python benchmarks/solve_exact.py --quick       # smoke run (N = 1500)

The kernel is the NNGP of the ``fcn`` preset (3 ReLU layers) on N
8-dimensional Gaussian inputs, float32, computed once into a `KernelStore`
(``nt-gp kernel``'s format, blocks of up to 1000), with 1000 test points.
Targets: ``sin(x0) + x1 x2`` plus noise; ``diag_reg = 1e-2``. Each
measurement runs in its own process (peak RSS is that process's
``VmHWM``), interleaved:

* ``scipy``: read the store into one float64 array, then
  ``scipy.linalg.cholesky(overwrite_a=True)``, ``cho_solve`` for ``alpha``
  and ``solve_triangular`` for the test means and variances. Reported with
  and without the read. Where it crashes (OpenBLAS's threaded potrf, see
  ``CORETYPE``), it is run again with one BLAS thread.
* ``blocked``: the same in memory with nt_gp's blocked factorisation
  (`nt_gp.solve._linalg.cholesky_lower`, LAPACK potrf on 2048-blocks, trsm
  and gemm), which does not crash with two threads.
* ``nt_gp``: `nt_gp.solve.exact_sweep` with ``memory_limit`` = 25% of the
  float32 kernel's bytes (the whole process, Python and TensorFlow
  included), which forces the out-of-core panel factorisation; the time
  includes reading the kernel. Where 25% of the kernel is less than what the
  process holds before solving (small N), the limit is that baseline plus
  the solver's 48 MiB margin plus 25% of the kernel, and the table says so.
* ``nt_gp, 1 BLAS thread`` vs 2: the factorisation is BLAS-3 bound, and BLAS
  threads are how it uses a machine's cores (see docs/scale_out.md).

Every child runs with ``OPENBLAS_CORETYPE=Haswell`` (unless set): OpenBLAS's
default kernels on this CPU crash scipy's Cholesky at N >= 16000 with two
threads (see ``CORETYPE``).

Targets (from the issue): wall time <= 1.5 x the faster in-memory run, peak
RSS <= the limit + 10%. The means of both are compared (relative difference).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from machine import peak_rss_bytes  # pylint: disable=g-import-not-at-top,wrong-import-position
from report import DOCS, Report  # pylint: disable=g-import-not-at-top,wrong-import-position

REG = 1e-2
N_TEST = 1000
# OpenBLAS's own choice of kernels here (SkylakeX) crashes LAPACK potrf with
# two threads at order >= 16000 (nt_gp factors large matrices block by block
# and is not affected; scipy and numpy are). Every child uses the Haswell
# kernels, which do not crash and are within 3% of SkylakeX's dgemm and
# dpotrf speed on this machine: the same BLAS for both sides.
CORETYPE = 'Haswell'
# ... but even with those scipy's potrf (and numpy's A @ A.T) crash at
# N = 40000, with two threads and with one: where scipy's child crashes, it
# runs again with one BLAS thread, and then the table says it crashed and
# the baseline is nt_gp's in-memory blocked factorisation alone.


def _block(n):
  for b in range(min(1000, n), 0, -1):
    if n % b == 0 and N_TEST % b == 0 or (n % b == 0 and b <= 100 and
                                         N_TEST % b == 0):
      return b
  return 1


def make_stores(n, folder):
  from nt_gp import presets  # pylint: disable=g-import-not-at-top
  from nt_gp.distributed import compute_kernel  # pylint: disable=g-import-not-at-top
  rng = np.random.RandomState(0)
  x = rng.randn(n + N_TEST, 8).astype(np.float32)
  y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + 0.1 * rng.randn(n + N_TEST)
  np.save(os.path.join(folder, 'y.npy'), y[:n].astype(np.float64))
  np.save(os.path.join(folder, 'y_test.npy'), y[n:].astype(np.float64))
  _, _, kernel_fn = presets.build('fcn')
  arch = presets.identity('fcn', {})
  b = _block(n)
  t = time.time()
  compute_kernel(kernel_fn, x[:n], out=os.path.join(folder, 'train.h5'),
                 arch=arch, batch_size=b, progress=False, fsync=False)
  compute_kernel(kernel_fn, x[n:], x[:n], out=os.path.join(folder, 'test.h5'),
                 arch=arch, batch_size=b, progress=False, fsync=False)
  diag = np.diag(kernel_fn(x[n:], None, 'nngp').numpy()).astype(np.float64)
  np.save(os.path.join(folder, 'diag.npy'), diag)
  return time.time() - t


def child(args):
  """One measurement in this process; prints a JSON line."""
  if args.threads:
    import threadpoolctl  # pylint: disable=g-import-not-at-top
    threadpoolctl.threadpool_limits(args.threads)
  from nt_gp.solve.memory import MARGIN_BYTES, current_rss  # pylint: disable=g-import-not-at-top
  from nt_gp.store import KernelStore  # pylint: disable=g-import-not-at-top
  folder = args.folder
  y = np.load(os.path.join(folder, 'y.npy'))[:, None]
  diag = np.load(os.path.join(folder, 'diag.npy'))
  out = {'mode': args.child, 'threads': args.threads,
         'baseline_rss': current_rss()}
  if args.child in ('scipy', 'blocked'):
    import scipy.linalg  # pylint: disable=g-import-not-at-top
    from nt_gp.solve import _linalg  # pylint: disable=g-import-not-at-top
    t0 = time.perf_counter()
    arrays = []
    for name in ('train', 'test'):     # read straight into float64 arrays
      with KernelStore.open(os.path.join(folder, f'{name}.h5'),
                            verify=False) as s:
        ds = s.dataset('nngp')
        a = np.empty(ds.shape, np.float64)
        ds.read_direct(a)
        arrays.append(a)
    k, kt = arrays
    t1 = time.perf_counter()
    n = len(k)
    k[np.diag_indices(n)] += REG * np.mean(np.diag(k))
    if args.child == 'scipy':
      # k is symmetric: its transpose is the same matrix in Fortran order,
      # which LAPACK factors in place (k itself would be copied: 2x memory).
      low = scipy.linalg.cholesky(k.T, lower=True, overwrite_a=True,
                                  check_finite=False)
      alpha = scipy.linalg.cho_solve((low, True), y, check_finite=False)
      v = scipy.linalg.solve_triangular(low, kt.T, lower=True,
                                        check_finite=False)
    else:     # nt_gp's in-memory blocked factorisation, same BLAS
      _linalg.cholesky_lower(k)
      alpha = y.copy()
      _linalg.solve_lower(k, alpha)
      _linalg.solve_lower(k, alpha, transposed=True)
      v = np.ascontiguousarray(kt.T)
      _linalg.solve_lower(k, v)
    mean, var = kt @ alpha, diag - np.sum(v ** 2, 0)
    t2 = time.perf_counter()
    out.update(seconds=t2 - t0, solve_seconds=t2 - t1)
  else:
    from nt_gp.solve import exact_sweep  # pylint: disable=g-import-not-at-top
    kernel_bytes = os.path.getsize(os.path.join(folder, 'train.h5'))
    limit = int(args.fraction * kernel_bytes)
    out['limit_mode'] = 'process'
    if limit < out['baseline_rss'] + MARGIN_BYTES + 64 * 2 ** 20:
      limit = out['baseline_rss'] + MARGIN_BYTES + limit
      out['limit_mode'] = 'baseline + 48 MiB + fraction'
    work = tempfile.mkdtemp(dir=folder)
    lines = []
    t0 = time.perf_counter()
    res = exact_sweep(os.path.join(folder, 'train.h5'), y, REG,
                      eval_sets={'test': (os.path.join(folder, 'test.h5'),
                                          diag)},
                      memory_limit=limit, work_dir=work, fsync=False,
                      log=lines.append)
    out['seconds'] = time.perf_counter() - t0
    out['limit'] = limit
    out['method'] = res.method
    out['plan'] = next((l for l in lines if 'panels of' in l), '')
    mean, var = res.mean['test'][0], res.variance['test'][0]
    shutil.rmtree(work, ignore_errors=True)
  out['peak_rss'] = peak_rss_bytes()
  np.savez(os.path.join(folder, f'{args.tag}.npz'), mean=mean, var=var)
  print(json.dumps(out))


class ChildCrashed(RuntimeError):
  """A measurement's process died from a signal."""


def run_child(folder, mode, tag, fraction, threads=None):
  cmd = [sys.executable, os.path.abspath(__file__), '--child', mode,
         '--folder', folder, '--tag', tag, '--fraction', str(fraction)]
  if threads:
    cmd += ['--threads', str(threads)]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  env.setdefault('OPENBLAS_CORETYPE', CORETYPE)
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
  if proc.returncode < 0:
    raise ChildCrashed(f'crashed with signal {-proc.returncode}')
  if proc.returncode:
    raise RuntimeError(proc.stderr[-3000:])
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--n', type=int, default=40000)
  p.add_argument('--fraction', type=float, default=0.25,
                 help='memory limit as a fraction of the kernel\'s bytes')
  p.add_argument('--reps', type=int, default=1)
  p.add_argument('--folder', help='where the stores go (default: a '
                 'temporary folder, deleted at the end)')
  p.add_argument('--no-threads', action='store_true',
                 help='skip the 1 vs 2 BLAS threads runs')
  p.add_argument('--quick', action='store_true', help='N = 1500')
  p.add_argument('--out', default=str(DOCS / 'solve_exact.md'))
  p.add_argument('--child', help=argparse.SUPPRESS)
  p.add_argument('--tag', help=argparse.SUPPRESS)
  p.add_argument('--threads', type=int, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child:
    return child(args)
  if args.quick:
    args.n = 1500
  own = args.folder is None
  folder = tempfile.mkdtemp(prefix='nt_gp_solve_bench_') if own else \
      args.folder
  os.makedirs(folder, exist_ok=True)
  r = Report(f'Exact solve out of core: N = {args.n}',
             f'NNGP of the `fcn` preset, float32 kernel store, float64 '
             f'solve, {N_TEST} test points (means and variances), '
             f'`diag_reg` = {REG}. Each measurement in its own process, '
             f'all with OpenBLAS\'s {os.environ.get("OPENBLAS_CORETYPE", CORETYPE)} '
             f'kernels (with its default ones scipy\'s Cholesky crashes '
             f'here from N = 16000 with two threads; at N = 40000 it crashes '
             f'with these too, even with one thread). See '
             f'`benchmarks/solve_exact.py`.')
  try:
    r.say(f'computing the kernels ({args.n} x {args.n} float32, '
          f'{args.n ** 2 * 4 / 2 ** 30:.2f} GiB) ...')
    r.say(f'  {make_stores(args.n, folder):.0f} s; load average '
          f'{os.getloadavg()[0]:.1f}')
    scipy_threads = None
    runs = {m: [] for m in ('scipy', 'blocked', 'nt_gp')}
    crashed = []
    for rep in range(args.reps):
      for mode in runs:
        if mode in crashed:
          continue
        threads = scipy_threads if mode == 'scipy' else None
        try:
          res = run_child(folder, mode, f'{mode}{rep}', args.fraction,
                          threads=threads)
        except ChildCrashed as e:
          if mode != 'scipy':
            raise
          if threads == 1:
            r.say(f'  {mode}: {e} again; no scipy baseline')
            crashed.append(mode)
            continue
          r.say(f'  {mode}: {e}; again with 1 BLAS thread')
          scipy_threads = 1
          try:
            res = run_child(folder, mode, f'{mode}{rep}', args.fraction,
                            threads=1)
          except ChildCrashed as e1:
            r.say(f'  {mode}, 1 BLAS thread: {e1} too; no scipy baseline')
            crashed.append(mode)
            continue
        runs[mode].append(res)
        r.say(f'  {mode}: {res["seconds"]:.1f} s, peak RSS '
              f'{res["peak_rss"] / 2 ** 30:.2f} GiB' +
              (f', limit {res["limit"] / 2 ** 30:.2f} GiB ({res["limit_mode"]})'
               f', {res["plan"]}' if mode == 'nt_gp' else
               f', of which solve {res["solve_seconds"]:.1f} s'))
    base = 'blocked' if crashed else 'scipy'
    ref, ours = (np.load(os.path.join(folder, f'{m}0.npz'))
                 for m in (base, 'nt_gp'))
    diff = float(np.max(np.abs(ours['mean'] - ref['mean'])) /
                 np.max(np.abs(ref['mean'])))
    vdiff = float(np.max(np.abs(ours['var'] - ref['var'])) /
                  np.max(np.abs(ref['var'])))
    med = {m: statistics.median(x['seconds'] for x in runs[m])
           for m in runs if runs[m]}
    med_solve = {m: statistics.median(x['solve_seconds'] for x in runs[m])
                 for m in ('scipy', 'blocked') if runs[m]}
    t_ref = min(med[m] for m in med_solve)      # the faster in memory
    o = runs['nt_gp'][0]
    scipy_name = ('scipy in memory, 1 BLAS thread (2 threads crashed)'
                  if scipy_threads else 'scipy in memory')
    rows = []
    if crashed:
      rows.append(['scipy in memory', 'crashed (SIGSEGV in OpenBLAS potrf) '
                   'with 2 and with 1 BLAS thread', '—', '—', '—'])
    for mode, name in (('scipy', scipy_name),
                       ('blocked', 'in memory, nt_gp blocked Cholesky')):
      if not runs[mode]:
        continue
      rows.append([f'{name} (read + solve)', f'{med[mode]:.1f} s',
                   f'{med[mode] / t_ref:.2f}',
                   f'{runs[mode][0]["peak_rss"] / 2 ** 30:.2f} GiB', '—'])
      rows.append([f'{name} (solve only)', f'{med_solve[mode]:.1f} s',
                   f'{med_solve[mode] / t_ref:.2f}', '—', '—'])
    rows.append([f'nt_gp out of core ({o["method"]})', f'{med["nt_gp"]:.1f} s',
                 f'{med["nt_gp"] / t_ref:.2f} (target <= 1.5)',
                 f'{o["peak_rss"] / 2 ** 30:.2f} GiB',
                 f'{o["limit"] / 2 ** 30:.2f} GiB; peak / limit '
                 f'{o["peak_rss"] / o["limit"]:.2f} (target <= 1.10)'])
    if not args.no_threads:
      t1 = run_child(folder, 'nt_gp', 'threads1', args.fraction, threads=1)
      t2 = run_child(folder, 'nt_gp', 'threads2', args.fraction, threads=2)
      r.say(f'  nt_gp, 1 BLAS thread: {t1["seconds"]:.1f} s; 2 threads: '
            f'{t2["seconds"]:.1f} s; speed-up {t1["seconds"] / t2["seconds"]:.2f}')
      rows.append(['nt_gp out of core, 1 -> 2 BLAS threads',
                   f'{t1["seconds"]:.1f} -> {t2["seconds"]:.1f} s',
                   f'speed-up {t1["seconds"] / t2["seconds"]:.2f}', '—', '—'])
    r.table(['run', 'wall time', 'ratio to the faster in memory',
             'peak RSS', 'memory limit'],
            rows, f'N = {args.n}; means agree with {base}\'s to '
            f'{diff:.1e}, variances to '
            f'{vdiff:.1e} (max relative difference); load average '
            f'{os.getloadavg()[0]:.1f} at the end.')
    r.say(f'means: max relative difference {diff:.2e}; variances {vdiff:.2e}')
  finally:
    if own:
      shutil.rmtree(folder, ignore_errors=True)
  r.write(args.out)


if __name__ == '__main__':
  main()
