"""In-place LAPACK/BLAS steps on C-ordered arrays, without copies.

NumPy arrays here are C-ordered; LAPACK wants column-major (Fortran) ones. The
transpose of a C-ordered array is a Fortran-ordered view of the same memory,
so each step calls LAPACK/BLAS on transposed views with the triangle and
transpose flags swapped, and f2py works in place (checked: a copy would
double the memory). A lower-triangular factor ``L`` lives in the lower
triangle of a C-ordered array; LAPACK sees it as the upper triangle ``L^T`` of
the Fortran view.
"""
import numpy as np
from scipy.linalg import blas, lapack

__all__ = ['NotPositiveDefiniteError', 'cholesky', 'cholesky_lower',
           'solve_lower',
           'solve_lower_transposed', 'right_solve_lower_transposed',
           'subtract_product', 'subtract_product_transposed',
           'restore_lower_from_upper']


class NotPositiveDefiniteError(ValueError):
  """A matrix that should be positive definite is not (numerically).

  Example:
    >>> issubclass(NotPositiveDefiniteError, ValueError)
    True
  """


def _check(a, name='array'):
  if a.dtype not in (np.float32, np.float64) or not a.flags.c_contiguous:
    raise TypeError(f'{name} must be a C-contiguous float32/float64 array, '
                    f'got {a.dtype} (C-contiguous: {a.flags.c_contiguous}).')


def _in_place(result, target):
  if not np.shares_memory(result, target):  # pragma: no cover (f2py copied)
    target[...] = result


# Above this order `cholesky_lower` factors block by block: OpenBLAS's
# multithreaded potrf crashes (SIGSEGV in its threaded syrk) on large
# matrices on some CPUs -- here from n = 16000 with 2 threads -- while its
# potrf on smaller blocks and its gemm do not.
BLOCKED_ABOVE = 8192
BLOCK = 2048


def _potrf_in_place(a):
  potrf, = lapack.get_lapack_funcs(('potrf',), (a,))
  c, info = potrf(a.T, lower=0, overwrite_a=1, clean=0)
  if info < 0:  # pragma: no cover
    raise ValueError(f'potrf: illegal argument {-info}')
  _in_place(c.T, a)
  return info


def cholesky_lower(a: np.ndarray, block: int = None):
  """Overwrites the lower triangle of square `a` with its Cholesky factor.

  Only the lower triangle of `a` is read; the strict upper triangle is left
  as it was. Matrices of order above `BLOCKED_ABOVE` (or any order, when
  `block` is given) are factored by blocks of `block` (default `BLOCK`)
  rows: LAPACK's potrf on each diagonal block, triangular solves for the
  blocks below it and GEMM updates of the blocks to the right, each on
  copies of at most ``block x block`` entries.

  Raises:
    NotPositiveDefiniteError: with the index of the first failing pivot.

  Example:
    >>> a = np.array([[4., 9.], [2., 5.]])      # upper part ignored
    >>> cholesky_lower(a)
    >>> a
    array([[2., 9.],
           [1., 2.]])
  """
  _check(a)
  n = a.shape[0]
  if block is None:
    if n <= BLOCKED_ABOVE:
      info = _potrf_in_place(a)
      if info > 0:
        raise NotPositiveDefiniteError(
            f'not positive definite (pivot {info} of {n})')
      return
    block = BLOCK
  for j0 in range(0, n, block):
    j1 = min(j0 + block, n)
    d = np.ascontiguousarray(a[j0:j1, j0:j1])
    info = _potrf_in_place(d)
    if info > 0:
      raise NotPositiveDefiniteError(
          f'not positive definite (pivot {j0 + info} of {n})')
    a[j0:j1, j0:j1] = d          # potrf left d's strict upper part as it was
    for r0 in range(j1, n, block):
      r1 = min(r0 + block, n)
      panel = np.ascontiguousarray(a[r0:r1, j0:j1])
      right_solve_lower_transposed(d, panel)
      a[r0:r1, j0:j1] = panel
    # The trailing lower triangle: A[r, c] -= L[r, j] L[c, j]^T, c <= r.
    for r0 in range(j1, n, block):
      r1 = min(r0 + block, n)
      rows = np.ascontiguousarray(a[r0:r1, j0:j1])
      for c0 in range(j1, r1, block):
        c1 = min(c0 + block, r1)
        update = rows @ a[c0:c1, j0:j1].T
        if c0 == r0:        # a diagonal block: its lower triangle only
          low = np.tril_indices(r1 - r0)
          a[r0:r1, c0:c1][low] -= update[low]
        else:
          a[r0:r1, c0:c1] -= update


def cholesky(a: np.ndarray) -> np.ndarray:
  """The lower Cholesky factor of symmetric `a`, as a new C-ordered array
  with zeros above the diagonal (`a` is not changed).

  What ``scipy.linalg.cholesky(a, lower=True)`` gives, but factored block by
  block above order `BLOCKED_ABOVE` (see `cholesky_lower`), where OpenBLAS's
  threaded potrf can crash.

  Raises:
    NotPositiveDefiniteError: with the index of the first failing pivot.

  Example:
    >>> cholesky(np.array([[4., 2.], [2., 5.]]))
    array([[2., 0.],
           [1., 2.]])
  """
  low = np.array(a, dtype=np.result_type(a.dtype, np.float32), order='C')
  if low.ndim != 2 or low.shape[0] != low.shape[1]:
    raise ValueError(f'expected a square matrix, got shape {low.shape}')
  cholesky_lower(low)
  low[np.triu_indices(len(low), 1)] = 0.
  return low


def _trsm(a):
  trsm, = blas.get_blas_funcs(('trsm',), (a,))
  return trsm


def solve_lower(l: np.ndarray, b: np.ndarray, transposed: bool = False):
  """``b <- L^{-1} b`` (or ``L^{-T} b``) for `L` in the lower triangle of `l`.

  Args:
    l: ``(n, n)`` C-ordered; only its lower triangle is read.
    b: ``(n, k)`` C-ordered, overwritten.
    transposed: solve with ``L^T`` instead.

  Example:
    >>> l = np.array([[2., 0.], [1., 2.]])
    >>> b = np.array([[2.], [3.]])
    >>> solve_lower(l, b); b
    array([[1.],
           [1.]])
    >>> solve_lower(l, b, transposed=True); b
    array([[0.25],
           [0.5 ]])
  """
  _check(l, 'the factor')
  _check(b)
  # Fortran view: b.T (k, n) <- b.T (L^T)^{-1} (or b.T L^{-1}); L^T is the
  # upper triangle of l.T.
  out = _trsm(l)(1.0, l.T, b.T, side=1, lower=0, trans_a=int(transposed),
                 overwrite_b=1)
  _in_place(out, b.T)


def solve_lower_transposed(l: np.ndarray, b: np.ndarray):
  """``b <- L^{-T} b``: `solve_lower` with ``transposed=True``.

  Example:
    >>> b = np.array([[3.], [2.]])
    >>> solve_lower_transposed(np.array([[2., 0.], [1., 2.]]), b); b
    array([[1.],
           [1.]])
  """
  solve_lower(l, b, transposed=True)


def right_solve_lower_transposed(l: np.ndarray, b: np.ndarray):
  """``b <- b L^{-T}`` for `L` in the lower triangle of `l` (`b`: (m, n)).

  This is the panel step of a Cholesky factorisation.

  Example:
    >>> l = np.array([[2., 0.], [1., 2.]])
    >>> b = np.array([[2., 3.]])
    >>> right_solve_lower_transposed(l, b); b
    array([[1., 1.]])
  """
  _check(l, 'the factor')
  _check(b)
  # Fortran view: b.T (n, m) <- L^{-1} b.T; L = (upper triangle of l.T)^T.
  out = _trsm(l)(1.0, l.T, b.T, side=0, lower=0, trans_a=1, overwrite_b=1)
  _in_place(out, b.T)


def _gemm(a):
  gemm, = blas.get_blas_funcs(('gemm',), (a,))
  return gemm


def subtract_product(c: np.ndarray, a: np.ndarray, b: np.ndarray,
                     transpose_b: bool = False):
  """``c <- c - a @ b`` (or ``c - a @ b.T``) in place, one GEMM.

  Args:
    c: ``(m, n)`` C-ordered, overwritten.
    a: ``(m, k)``.
    b: ``(k, n)``, or ``(n, k)`` with `transpose_b`.
    transpose_b: use ``b.T``.

  Example:
    >>> c = np.ones((1, 2)); a = np.array([[2.]]); b = np.array([[1., 3.]])
    >>> subtract_product(c, a, b); c
    array([[-1., -5.]])
    >>> subtract_product(c, a, b.T, transpose_b=True); c
    array([[ -3., -11.]])
  """
  _check(c)
  a = np.ascontiguousarray(a, c.dtype)
  b = np.ascontiguousarray(b, c.dtype)
  # Fortran view: c.T (n, m) <- c.T - op(b.T) a.T, where b.T is b's
  # Fortran view and op transposes it back when b was given transposed.
  out = _gemm(c)(-1.0, b.T, a.T, beta=1.0, c=c.T, trans_a=int(transpose_b),
                 trans_b=0, overwrite_c=1)
  _in_place(out, c.T)


def subtract_product_transposed(c: np.ndarray, a: np.ndarray, b: np.ndarray):
  """``c <- c - a @ b.T``: `subtract_product` with ``transpose_b=True``.

  Example:
    >>> c = np.ones((2, 2)); a = np.eye(2); b = np.array([[1., 0.], [0., 2.]])
    >>> subtract_product_transposed(c, a, b); c
    array([[ 0.,  1.],
           [ 1., -1.]])
  """
  subtract_product(c, a, b, transpose_b=True)


def restore_lower_from_upper(a: np.ndarray, diagonal: np.ndarray,
                             block: int = 1024):
  """Makes square `a` symmetric again from its strict upper triangle.

  After `cholesky_lower`, the strict upper triangle still holds the matrix;
  this copies it into the lower triangle and sets the diagonal, block by
  block (no full-size temporary).

  Example:
    >>> a = np.array([[9., 2.], [7., 9.]])
    >>> restore_lower_from_upper(a, np.array([1., 3.])); a
    array([[1., 2.],
           [2., 3.]])
  """
  n = a.shape[0]
  for i0 in range(0, n, block):
    i1 = min(i0 + block, n)
    a[i0:i1, :i0] = a[:i0, i0:i1].T
    d = a[i0:i1, i0:i1]
    low = np.tril_indices(i1 - i0, -1)
    d[low] = d.T[low]
  a[np.diag_indices(n)] = diagonal
