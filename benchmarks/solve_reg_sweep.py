"""A diag_reg sweep in memory: one Cholesky per value vs one shared
eigendecomposition, and the constant `EIGH_OVER_CHOLESKY` of the choice.

  python benchmarks/solve_reg_sweep.py                  # N = 2000, 3000
  python benchmarks/solve_reg_sweep.py --quick          # a smoke run

For each N, on a synthetic positive-definite kernel (RBF of 8-dimensional
Gaussian inputs plus a linear part) in float64:

* LAPACK alone: ``potrf`` (Cholesky, in place) vs ``syevr`` (eigenvalues and
  eigenvectors, what `scipy.linalg.eigh(driver='evr')` calls), median of
  ``--reps`` interleaved runs; their ratio is the constant
  `nt_gp.solve.dense.EIGH_OVER_CHOLESKY` of the flop model.
* Whole sweeps (`nt_gp.solve.dense.dense_sweep`): means, variances, log
  marginal likelihood and alpha for R values and ``--test`` test points, by
  ``cholesky`` and by ``eigh``, and what ``method='auto'`` picks.

Writes docs/benchmarks/solve_reg_sweep.md.
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import scipy.linalg
from scipy.linalg import lapack

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import DOCS, Report  # pylint: disable=g-import-not-at-top,wrong-import-position


def synthetic_kernel(n, n_test, seed=0):
  rng = np.random.RandomState(seed)
  x = rng.randn(n + n_test, 8)
  sq = np.sum(x ** 2, 1)
  d2 = np.maximum(sq[:, None] + sq[None] - 2 * x @ x.T, 0)
  k = np.exp(-d2 / 16.) + x @ x.T / 8.
  return (np.ascontiguousarray(k[:n, :n]), np.ascontiguousarray(k[n:, :n]),
          np.diag(k)[n:].copy(), np.sin(x[:n, :2]))


def _time(fn):
  t = time.perf_counter()
  fn()
  return time.perf_counter() - t


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--sizes', default='2000,3000')
  p.add_argument('--regs', default='1,10,30,100',
                 help='numbers of diag_reg values in a sweep')
  p.add_argument('--test', type=int, default=1000)
  p.add_argument('--reps', type=int, default=3)
  p.add_argument('--quick', action='store_true', help='N = 300, 600')
  p.add_argument('--out', default=str(DOCS / 'solve_reg_sweep.md'))
  args = p.parse_args(argv)
  if args.quick:
    args.sizes, args.regs, args.test, args.reps = '300,600', '1,10', 100, 1
  from nt_gp.solve import dense  # pylint: disable=g-import-not-at-top
  from nt_gp.solve.records import EvalSet  # pylint: disable=g-import-not-at-top
  from nt_gp.solve.sources import ArraySource  # pylint: disable=g-import-not-at-top
  r = Report('Exact solves: Cholesky per diag_reg value vs one '
             'eigendecomposition',
             'Float64, synthetic kernel, in memory (`nt_gp.solve.dense`). '
             'Times are medians of interleaved runs on a shared machine.')
  sizes = [int(s) for s in args.sizes.split(',')]
  counts = [int(s) for s in args.regs.split(',')]
  lapack_rows, sweep_rows = [], []
  r.say(f'load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores')
  for n in sizes:
    k, kt, ktt, y = synthetic_kernel(n, args.test)
    t_chol, t_eig = [], []
    for _ in range(args.reps):
      a = k.copy(order='F')
      t_chol.append(_time(lambda: lapack.dpotrf(a, lower=1, overwrite_a=1,
                                                clean=0)))
      a = k.copy()
      t_eig.append(_time(lambda: scipy.linalg.eigh(
          a, overwrite_a=True, check_finite=False, driver='evr')))
    tc, te = statistics.median(t_chol), statistics.median(t_eig)
    gflops = n ** 3 / 3 / tc / 1e9
    lapack_rows.append([n, f'{tc:.3f} s', f'{gflops:.0f}', f'{te:.3f} s',
                        f'{te / tc:.1f}'])
    r.say(f'N={n}: potrf {tc:.3f} s ({gflops:.0f} GFLOP/s), syevr {te:.3f} s,'
          f' ratio {te / tc:.1f}')
    for count in counts:
      regs = np.logspace(-4, 0, count)
      times = {'cholesky': [], 'eigh': []}
      for _ in range(args.reps):
        for method in times:
          sets = [EvalSet('test', ArraySource(kt, 'kt'), ktt)]
          times[method].append(_time(lambda: dense.dense_sweep(
              ArraySource(k, 'k'), y, regs, sets, method=method)))
      tc_s = statistics.median(times['cholesky'])
      te_s = statistics.median(times['eigh'])
      from nt_gp.solve.memory import MemoryBudget  # pylint: disable=g-import-not-at-top
      auto = dense.choose_dense_method(n, args.test, 2, count, 8,
                                       MemoryBudget(None))
      faster = 'cholesky' if tc_s <= te_s else 'eigh'
      sweep_rows.append([n, count, f'{tc_s:.2f} s', f'{te_s:.2f} s', faster,
                         auto])
      r.say(f'  {count:4d} values: cholesky {tc_s:.2f} s, eigh {te_s:.2f} s; '
            f'faster: {faster}; auto picks {auto}')
  r.table(['N', 'potrf', 'GFLOP/s', 'syevr', 'syevr / potrf'], lapack_rows,
          'LAPACK alone (float64, in place):')
  r.table(['N', 'values', 'Cholesky per value', 'one eigendecomposition',
           'faster', "method='auto' picks"], sweep_rows,
          f'Whole sweeps with {args.test} test points (means, variances, log '
          f'marginal likelihood, alpha):')
  r.say(f'EIGH_OVER_CHOLESKY in nt_gp.solve.dense: {dense.EIGH_OVER_CHOLESKY}'
        f'; load average {os.getloadavg()[0]:.1f} at the end')
  r.write(args.out)


if __name__ == '__main__':
  main()
