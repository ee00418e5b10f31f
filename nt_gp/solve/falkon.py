r"""Falkon: Nyström kernel ridge regression by preconditioned conjugate gradients.

With centres ``Z`` (``M`` of the ``N`` training points) and noise variance
``s2`` (the absolute ``diag_reg``), the Nyström / subset-of-regressors (DTC)
GP posterior mean is ``m(x) = K(x, Z) alpha`` with

    (K_ZX K_XZ + s2 K_ZZ) alpha = K_ZX Y,                             (1)

which is also Nyström kernel ridge regression with ``lambda = s2 / N``
(Rudi, Carratino and Rosasco 2017, "FALKON"; Meanti et al. 2020, "Kernel
methods through the roof"). Equation (1) is solved by conjugate gradients
on ``B^T H B beta = B^T K_ZX Y``, ``alpha = B beta``, with Falkon's
preconditioner

    B = N^{-1/2} T^{-1} A^{-1},  T^T T = K_ZZ,  A^T A = T T^T / M + (s2 / N) I,

for which ``B B^T`` approximates ``H^{-1}`` (exactly so when ``Z = X``).
Each CG step needs ``K_ZX K_XZ u``: one pass over the blocks of ``K(X, Z)``
(`nt_gp.solve.kernel_blocks`), shared by every right-hand side and every
``diag_reg`` value, which are iterated together column by column.

Early stopping: given a validation loss, the best iterate of each value is
kept and its iterations stop once the loss has not improved for `patience`
iterations (iterations regularise, as in Falkon).

Example:
  >>> import numpy as np
  >>> x = np.random.RandomState(0).randn(30, 2)
  >>> k = np.exp(-np.sum((x[:, None] - x[None]) ** 2, -1))
  >>> z = [0, 5, 10, 15, 20]
  >>> y = np.sin(x[:, :1])
  >>> out = falkon_solve(lambda u: k[:, z].T @ (k[:, z] @ u), k[np.ix_(z, z)],
  ...                    k[:, z].T @ y, 30, [0.1], tol=1e-12)
  >>> want = np.linalg.solve(k[:, z].T @ k[:, z] + 0.1 * k[np.ix_(z, z)],
  ...                        k[:, z].T @ y)
  >>> bool(np.allclose(out.alpha[0], want, rtol=1e-8))
  True
"""
import dataclasses
import math
from typing import Callable, List, Optional, Sequence

import numpy as np
import scipy.linalg

from nt_gp.solve import _linalg

__all__ = ['FalkonPreconditioner', 'falkon_solve', 'FalkonResult',
           'cholesky_with_jitter']


def cholesky_with_jitter(a: np.ndarray, what: str):
  """Lower Cholesky factor of `a` plus the smallest jitter that works.

  Args:
    a: a symmetric `(M, M)` float64 array.
    what: what `a` is, for the error message.

  Returns:
    `(lower, jitter)`: the `(M, M)` lower factor of `a + jitter * I` and the
    jitter (0 if `a` factors as it is; else a power of ten times its mean
    diagonal, up to 1e-3).

  Example:
    >>> lower, jitter = cholesky_with_jitter(np.ones((2, 2)), 'K(Z, Z)')
    >>> jitter > 0, np.allclose(lower @ lower.T, np.ones((2, 2)) + jitter * np.eye(2))
    (True, True)
  """
  scale = max(float(np.mean(np.diagonal(a))), 1e-300)
  for eps in [0.] + [10. ** p for p in range(-14, -2)]:
    try:
      return _linalg.cholesky(a + eps * scale * np.eye(len(a))), eps * scale
    except _linalg.NotPositiveDefiniteError:
      continue
  raise ValueError(f'{what} is far from positive definite (it failed with a '
                   f'jitter of 1e-3 of its mean diagonal); check for '
                   f'non-finite or duplicated centres.')


class FalkonPreconditioner:
  """Falkon's preconditioner for several noise variances.

  Args:
    k_zz: ``(M, M)`` kernel of the centres.
    n: number of training points.
    regs: ``(R,)`` absolute noise variances.

  Attributes:
    jitter: what was added to ``K_ZZ``'s diagonal for its factorisation
      (only the preconditioner sees it; the solved system uses ``K_ZZ``).

  Example:
    >>> p = FalkonPreconditioner(np.eye(3) * 2., 6, [0.5])
    >>> p.apply(np.ones((3, 1)), [0]).shape
    (3, 1)
  """

  def __init__(self, k_zz: np.ndarray, n: int, regs: Sequence[float]):
    m = k_zz.shape[0]
    self.n = n
    self.lower, self.jitter = cholesky_with_jitter(k_zz, 'K(Z, Z)')
    t_tt = self.lower.T @ self.lower / m          # T T^T / M with T = L^T
    self.a_lower = []
    for reg in regs:
      g = t_tt + (float(reg) / n) * np.eye(m)
      self.a_lower.append(cholesky_with_jitter(g, 'The preconditioner')[0])

  def _groups(self, reg_of):
    for r in np.unique(reg_of):
      yield r, reg_of == r

  def apply(self, p: np.ndarray, reg_of) -> np.ndarray:
    """``B p`` for columns whose noise variances are ``regs[reg_of]``."""
    reg_of = np.asarray(reg_of)
    out = np.empty_like(p)
    for r, sel in self._groups(reg_of):
      u = scipy.linalg.solve_triangular(self.a_lower[r], p[:, sel],
                                        lower=True, trans='T',
                                        check_finite=False)
      out[:, sel] = scipy.linalg.solve_triangular(
          self.lower, u, lower=True, trans='T', check_finite=False)
    return out / math.sqrt(self.n)

  def apply_transposed(self, v: np.ndarray, reg_of) -> np.ndarray:
    """``B^T v``."""
    reg_of = np.asarray(reg_of)
    out = np.empty_like(v)
    u = scipy.linalg.solve_triangular(self.lower, v, lower=True,
                                      check_finite=False)
    for r, sel in self._groups(reg_of):
      out[:, sel] = scipy.linalg.solve_triangular(
          self.a_lower[r], u[:, sel], lower=True, check_finite=False)
    return out / math.sqrt(self.n)


@dataclasses.dataclass
class FalkonResult:
  """Solution of (1) for each noise variance.

  Attributes:
    alpha: ``(R, M, C)``; the (best, with early stopping) coefficients.
    iterations: ``(R,)`` iterations run for each value.
    best_iteration: ``(R,)`` the iteration whose coefficients are returned.
    converged: ``(R,)`` whether every column reached `tol`.
    residuals: list over iterations of ``(R, C)`` relative residuals.
    validation: list over iterations of ``(R,)`` validation losses (empty
      without validation).
  """
  alpha: np.ndarray
  iterations: np.ndarray
  best_iteration: np.ndarray
  converged: np.ndarray
  residuals: List[np.ndarray]
  validation: List[np.ndarray]


def falkon_solve(gram_apply: Callable[[np.ndarray], np.ndarray],
                 k_zz: np.ndarray, rhs: np.ndarray, n: int,
                 regs: Sequence[float], tol: float = 1e-7,
                 max_iter: int = 100,
                 validation: Optional[Callable[[np.ndarray], np.ndarray]] = None,
                 patience: int = 3,
                 on_iteration: Optional[Callable[[int, np.ndarray], None]] = None
                 ) -> FalkonResult:
  """Solves (1) for every noise variance in `regs` by preconditioned CG.

  Args:
    gram_apply: ``u -> K_ZX K_XZ u`` for ``u`` of shape ``(M, k)`` (one
      pass over the data).
    k_zz: ``(M, M)`` ``K(Z, Z)``.
    rhs: ``(M, C)`` ``K_ZX Y``.
    n: number of training points.
    regs: ``(R,)`` absolute noise variances (``>= 0``).
    tol: stop a column when its preconditioned residual has fallen by this
      factor.
    max_iter: most CG iterations.
    validation: optional ``alpha (R, M, C) -> (R,)`` losses (lower is
      better), evaluated after every iteration.
    patience: with `validation`, stop a value after this many iterations
      without improvement.
    on_iteration: called as ``on_iteration(iteration, relative_residuals)``
      with ``(R, C)`` residuals.

  Returns:
    A `FalkonResult`.
  """
  regs = np.asarray(regs, np.float64)
  m, c = rhs.shape
  n_regs = len(regs)
  cols = n_regs * c
  reg_of = np.repeat(np.arange(n_regs), c)
  noise = regs[reg_of]
  pre = FalkonPreconditioner(k_zz, n, regs)
  g = pre.apply_transposed(np.tile(rhs, (1, n_regs)), reg_of)
  beta = np.zeros((m, cols))
  r = g.copy()
  p = r.copy()
  rs = np.einsum('ij,ij->j', r, r)
  rs0 = rs.copy()
  active = rs0 > 0
  iterations = np.zeros(n_regs, np.int64)
  best_iteration = np.zeros(n_regs, np.int64)
  best_alpha = np.zeros((n_regs, m, c))
  best_loss = np.full(n_regs, np.inf)
  since_best = np.zeros(n_regs, np.int64)
  residuals, losses = [], []
  for it in range(1, max_iter + 1):
    if not active.any():
      break
    on = np.flatnonzero(active)
    u = pre.apply(p[:, on], reg_of[on])
    w = gram_apply(u) + noise[on] * (k_zz @ u)
    wp = pre.apply_transposed(w, reg_of[on])
    curvature = np.einsum('ij,ij->j', p[:, on], wp)
    step = np.where(curvature > 0, rs[on] / np.where(curvature > 0,
                                                     curvature, 1.), 0.)
    beta[:, on] += step * p[:, on]
    r[:, on] -= step * wp
    rs_new = np.einsum('ij,ij->j', r[:, on], r[:, on])
    p[:, on] = r[:, on] + (rs_new / np.where(rs[on] > 0, rs[on], 1.)) * \
        p[:, on]
    rs[on] = rs_new
    for reg_index in np.unique(reg_of[on]):
      iterations[reg_index] = it
    rel = np.sqrt(rs / np.where(rs0 > 0, rs0, 1.)).reshape(n_regs, c)
    residuals.append(rel)
    active &= ~((np.sqrt(rs) <= tol * np.sqrt(rs0)) | (_scatter_curvature(
        curvature, on, cols) <= 0))
    alpha = pre.apply(beta, reg_of).T.reshape(n_regs, c, m).transpose(0, 2, 1)
    if validation is not None:
      loss = np.asarray(validation(alpha), np.float64)
      losses.append(loss)
      for reg_index in range(n_regs):
        if iterations[reg_index] != it:
          continue                            # already stopped
        if loss[reg_index] < best_loss[reg_index]:
          best_loss[reg_index] = loss[reg_index]
          best_alpha[reg_index] = alpha[reg_index]
          best_iteration[reg_index] = it
          since_best[reg_index] = 0
        else:
          since_best[reg_index] += 1
          if since_best[reg_index] >= patience:
            active[reg_of == reg_index] = False
    else:
      for reg_index in range(n_regs):
        if iterations[reg_index] == it:
          best_alpha[reg_index] = alpha[reg_index]
          best_iteration[reg_index] = it
    if on_iteration is not None:
      on_iteration(it, rel)
  converged = (np.sqrt(rs) <= tol * np.sqrt(rs0)) | (rs0 == 0)
  if not residuals:                           # zero right-hand sides
    best_alpha[:] = 0.
  return FalkonResult(best_alpha, iterations, best_iteration,
                      converged.reshape(n_regs, c).all(1), residuals, losses)


def _scatter_curvature(curvature, on, cols):
  """``p^T W p`` of the active columns scattered to all columns (inactive:
  +inf, i.e. no breakdown)."""
  out = np.full(cols, np.inf)
  out[on] = curvature
  return out
