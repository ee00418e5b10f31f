"""Exact GP solves for a list of regularisers, the kernel held in memory.

Two ways to sweep ``reg`` over ``K + reg I``, both in place in one buffer
read straight from the store (float32 stores are widened to float64 while
reading, with no intermediate copy):

* ``'cholesky'``: LAPACK ``potrf`` per value. The factor overwrites only the
  lower triangle; the strict upper triangle still holds ``K``, so the next
  value restores the lower triangle from it instead of re-reading the
  kernel. Memory: one ``N x N`` matrix.
* ``'eigh'``: one eigendecomposition ``K = V diag(w) V^T`` (LAPACK
  ``syevr``), after which every value costs only ``O(N (T + C))``.
  Memory: two ``N x N`` matrices.

``method='auto'`` picks the cheaper by the flop model `sweep_costs`, whose
constant `EIGH_OVER_CHOLESKY` (the time of ``syevr`` with eigenvectors over
that of ``potrf`` on the same matrix) was measured by
``benchmarks/solve_reg_sweep.py`` (see docs/benchmarks/solve_reg_sweep.md):
the eigendecomposition pays only for long sweeps or many test points.

Example:
  >>> import numpy as np
  >>> from nt_gp.solve.records import EvalSet
  >>> from nt_gp.solve.sources import ArraySource
  >>> k = np.array([[2., 1.], [1., 2.]])
  >>> out = dense_sweep(ArraySource(k, 'k'), np.array([[1.], [-1.]]),
  ...                   np.array([0., 1.]), [], method='cholesky')
  >>> [r.alpha.ravel().round(4).tolist() for r in out]
  [[1.0, -1.0], [0.5, -0.5]]
"""
import math
from typing import List, Optional, Sequence

import numpy as np
import scipy.linalg

from nt_gp.solve import _linalg
from nt_gp.solve.memory import MemoryBudget
from nt_gp.solve.records import EvalSet, RegResult, lml_from_solve
from nt_gp.solve.sources import KernelSource

__all__ = ['dense_sweep', 'choose_dense_method', 'sweep_costs',
           'EIGH_OVER_CHOLESKY', 'dense_bytes']

# Time of an eigendecomposition with eigenvectors (LAPACK syevr) over that of
# a Cholesky factorisation (potrf) of the same float64 matrix. potrf is BLAS-3
# and compute bound; the tridiagonal reduction in syevr is half BLAS-2 and
# memory bound, so the ratio depends on the machine and its load: about 45 on
# the 2-core development machine at N = 3000 (load average 5), 6-20 when it
# was heavily shared (benchmarks/solve_reg_sweep.py,
# docs/benchmarks/solve_reg_sweep.md). 40 keeps the eigendecomposition for
# sweeps of a few dozen values or more.
EIGH_OVER_CHOLESKY = 40.
_READ_ROWS = 2048


def sweep_costs(n: int, n_test: int, n_outputs: int, n_regs: int) -> dict:
  """Estimated flops of both methods (in units of one ``potrf``'s flops).

  Example:
    >>> c = sweep_costs(1000, 0, 1, 1)
    >>> c['cholesky'] < c['eigh']
    True
  """
  chol = n ** 3 / 3.
  solves = n ** 2 * (n_test + 2 * n_outputs)   # trsm flops per value
  cholesky = n_regs * (chol + solves)
  eigh = (EIGH_OVER_CHOLESKY * chol + 2. * n ** 2 * (n_test + n_outputs)
          + n_regs * 4. * n * (n_test + n_outputs))
  return {'cholesky': cholesky / chol, 'eigh': eigh / chol}


def dense_bytes(n: int, itemsize: int, method: str) -> int:
  """Bytes of the ``N x N`` buffers of `method`.

  Example:
    >>> dense_bytes(1000, 8, 'eigh') == 2 * dense_bytes(1000, 8, 'cholesky')
    True
  """
  return (2 if method == 'eigh' else 1) * n * n * itemsize


def _chunk_rows(n: int, n_test: int, itemsize: int, budget: MemoryBudget,
                used: int, copies: int) -> int:
  free = budget.available - used
  per_row = copies * n * itemsize
  return int(max(1, min(max(n_test, 1), free // per_row)))


def _min_extra(n: int, n_test: int, n_outputs: int, itemsize: int,
               copies: int) -> int:
  return (copies * min(max(n_test, 1), 64) * n + 4 * n * n_outputs
          + 2 * n) * itemsize


def choose_dense_method(n: int, n_test: int, n_outputs: int, n_regs: int,
                        itemsize: int, budget: MemoryBudget,
                        method: str = 'auto') -> Optional[str]:
  """``'cholesky'`` or ``'eigh'``, or None if the kernel does not fit.

  Example:
    >>> b = MemoryBudget('1G', baseline=0)
    >>> choose_dense_method(2000, 100, 1, 3, 8, b)
    'cholesky'
    >>> choose_dense_method(2000, 100, 1, 300, 8, b)
    'eigh'
    >>> choose_dense_method(20000, 100, 1, 3, 8, b) is None
    True
  """
  fits = {m: budget.fits(dense_bytes(n, itemsize, m) + _min_extra(
      n, n_test, n_outputs, itemsize, 3 if m == 'eigh' else 1))
          for m in ('cholesky', 'eigh')}
  if method != 'auto':
    return method if fits[method] else None
  costs = sweep_costs(n, n_test, n_outputs, n_regs)
  if fits['eigh'] and costs['eigh'] < costs['cholesky']:
    return 'eigh'
  return 'cholesky' if fits['cholesky'] else None


def load_matrix(source: KernelSource, dtype) -> np.ndarray:
  """The whole source in a new C-ordered `dtype` array, read in row blocks
  straight into it (a float32 store is widened while reading)."""
  n1, n2 = source.shape
  a = np.empty((n1, n2), dtype)
  for r0 in range(0, n1, _READ_ROWS):
    r1 = min(r0 + _READ_ROWS, n1)
    source.read(slice(r0, r1), slice(0, n2), out=a[r0:r1])
  return a


def _not_pd(reg, detail=''):
  return _linalg.NotPositiveDefiniteError(
      f'The training kernel plus {reg:.6g} on the diagonal is not positive '
      f'definite{detail}; increase `diag_reg` (or compute the kernel in '
      f'float64).')


def dense_sweep(train: KernelSource, y: np.ndarray, regs: Sequence[float],
                eval_sets: List[EvalSet], dtype=np.float64,
                method: str = 'auto', budget: Optional[MemoryBudget] = None,
                progress=None) -> List[RegResult]:
  """Exact GP solves for each absolute regulariser in `regs`, in memory.

  Args:
    train: ``(N, N)`` training kernel.
    y: ``(N, C)`` targets.
    regs: absolute values added to the diagonal.
    eval_sets: points to predict.
    dtype: float64 (default) or float32 arithmetic.
    method: ``'cholesky'``, ``'eigh'`` or ``'auto'`` (`choose_dense_method`).
    budget: memory budget for the chunks of test points (default: none).
    progress: a `WorkProgress` (flops) or None.

  Returns:
    One `RegResult` per value of `regs`, in order.

  Raises:
    NotPositiveDefiniteError: a value of `regs` leaves the matrix indefinite.
  """
  dtype = np.dtype(dtype)
  n = train.shape[0]
  n_test = sum(e.size for e in eval_sets)
  c = y.shape[1]
  budget = budget or MemoryBudget(None)
  if method == 'auto':
    method = choose_dense_method(n, n_test, c, len(regs), dtype.itemsize,
                                 budget) or 'cholesky'
  a = load_matrix(train, dtype)
  y = np.ascontiguousarray(y, dtype)
  if method == 'eigh':
    return _eigh_sweep(a, y, regs, eval_sets, budget, progress)
  return _cholesky_sweep(a, y, regs, eval_sets, budget, progress)


def _test_chunks(eval_set: EvalSet, n: int, dtype, budget, used, copies):
  rows = _chunk_rows(n, eval_set.size, dtype.itemsize, budget, used, copies)
  for t0 in range(0, eval_set.size, rows):
    t1 = min(t0 + rows, eval_set.size)
    yield t0, t1, eval_set.k_test_train.read(slice(t0, t1), slice(0, n),
                                             dtype=dtype)


def _cholesky_sweep(a, y, regs, eval_sets, budget, progress):
  n, c = y.shape
  diagonal = np.diagonal(a).astype(np.float64)
  used = a.nbytes + 3 * y.nbytes
  results = []
  for i, reg in enumerate(regs):
    if i:
      _linalg.restore_lower_from_upper(a, (diagonal + reg).astype(a.dtype))
    else:
      a[np.diag_indices(n)] = diagonal + reg
    try:
      _linalg.cholesky_lower(a)
    except _linalg.NotPositiveDefiniteError as e:
      raise _not_pd(reg, f' ({e})') from None
    if progress is not None:
      progress.add(n ** 3 / 3.)
    log_det = 2. * float(np.sum(np.log(np.diagonal(a).astype(np.float64))))
    z = y.copy()
    _linalg.solve_lower(a, z)
    alpha = z.copy()
    _linalg.solve_lower_transposed(a, alpha)
    if progress is not None:
      progress.add(2. * n * n * c)
    means, variances = {}, {}
    for e in eval_sets:
      mean = np.empty((e.size, c), np.float64)
      var = None if e.k_test_test_diag is None else np.empty(e.size)
      for t0, t1, kt in _test_chunks(e, n, a.dtype, budget, used, 1):
        _linalg.right_solve_lower_transposed(a, kt)    # kt <- (L^{-1} K_dt)^T
        mean[t0:t1] = kt @ z
        if var is not None:
          var[t0:t1] = e.k_test_test_diag[t0:t1] - np.einsum(
              'ij,ij->i', kt, kt, dtype=np.float64)
        if progress is not None:
          progress.add(float(n) * n * (t1 - t0))
      means[e.name] = mean
      if var is not None:
        variances[e.name] = var
    results.append(RegResult(float(reg), lml_from_solve(z, log_det),
                             alpha.astype(np.float64), means, variances))
  return results


def _eigh_sweep(a, y, regs, eval_sets, budget, progress):
  n, c = y.shape
  w, v = scipy.linalg.eigh(a, overwrite_a=True, check_finite=False,
                           driver='evr')
  del a
  if progress is not None:
    progress.add(EIGH_OVER_CHOLESKY * n ** 3 / 3.)
  w = w.astype(np.float64)
  for reg in regs:
    if not w[0] + reg > 0:
      raise _not_pd(reg, f' (smallest eigenvalue {w[0] + reg:.3g})')
  yt = (v.T @ y).astype(np.float64)                     # (N, C)
  results = [RegResult(float(reg), float(
      -0.5 * np.sum(yt ** 2 / (w + reg)[:, None]) -
      0.5 * c * np.sum(np.log(w + reg)) - 0.5 * n * c * math.log(2 * math.pi)),
                       (v @ (yt / (w + reg)[:, None]).astype(v.dtype)).astype(
                           np.float64), {}, {}) for reg in regs]
  used = v.nbytes + 3 * y.nbytes
  for e in eval_sets:
    for r in results:
      r.mean[e.name] = np.empty((e.size, c))
      if e.k_test_test_diag is not None:
        r.variance[e.name] = np.empty(e.size)
    for t0, t1, kt in _test_chunks(e, n, v.dtype, budget, used, 3):
      p = (kt @ v).astype(np.float64, copy=False)        # (t, N) = K_td V
      del kt
      if progress is not None:
        progress.add(2. * n * n * (t1 - t0))
      p2 = p ** 2 if e.k_test_test_diag is not None else None
      py = p
      for reg, r in zip(regs, results):
        inv = 1. / (w + reg)
        r.mean[e.name][t0:t1] = py @ (yt * inv[:, None])
        if p2 is not None:
          r.variance[e.name][t0:t1] = e.k_test_test_diag[t0:t1] - p2 @ inv
  return results
