r"""The Nyström (DTC) GP's predictive variances and marginal likelihood.

With centres (inducing points) ``Z``, noise variance ``s2`` and
``Q_AB = K_AZ K_ZZ^{-1} K_ZB``, the deterministic training conditional
(DTC) model is ``y ~ N(0, Q_XX + s2 I)``. Its posterior at test points
``*`` is GPflow's `SGPR` prediction with inducing points ``Z`` (Titsias
2009; Quiñonero-Candela and Rasmussen 2005):

    mean      K_*Z (s2 K_ZZ + G)^{-1} K_ZX y,            G = K_ZX K_XZ,
    variance  k_** - Q_** + s2 K_*Z (s2 K_ZZ + G)^{-1} K_Z*,

and its log marginal likelihood, and the Titsias collapsed bound (`SGPR`'s
``elbo``), are

    log N(y | 0, Q_XX + s2 I),
    log N(y | 0, Q_XX + s2 I) - tr(K_XX - Q_XX) / (2 s2)   (per column).

Everything is computed from ``M x M`` quantities accumulated in one pass over
the row blocks of ``K(X, Z)``: ``G``, ``K_ZX y``, ``y^T y`` and
``tr K_XX`` (the kernel's diagonal). With ``L L^T = K_ZZ`` and
``P = L^{-1} G L^{-T}``, for each ``s2`` one Cholesky ``C C^T = s2 I + P``
gives (matrix determinant lemma and Woodbury)

    log det(Q_XX + s2 I) = (N - M) log s2 + log det(s2 I + P),
    y^T (Q_XX + s2 I)^{-1} y = (y^T y - |C^{-1} L^{-1} K_ZX y|^2) / s2,
    variance = k_** - |L^{-1} K_Z*|^2 + s2 |C^{-1} L^{-1} K_Z*|^2.

Example:
  >>> import numpy as np
  >>> x = np.linspace(-1, 1, 6)[:, None]
  >>> k = np.exp(-(x - x.T) ** 2)
  >>> z = [0, 5]
  >>> y = np.sin(3 * x)
  >>> dtc = DTCPosterior(k[np.ix_(z, z)], k[:, z].T @ k[:, z], k[:, z].T @ y,
  ...                    y.T @ y, n=6, regs=[0.1], trace=6.)
  >>> q = k[:, z] @ np.linalg.solve(k[np.ix_(z, z)], k[z])
  >>> cov = q + 0.1 * np.eye(6)
  >>> want = -0.5 * (y.T @ np.linalg.solve(cov, y)).item() - 0.5 * (
  ...     np.linalg.slogdet(cov)[1] + 6 * np.log(2 * np.pi))
  >>> bool(np.isclose(dtc.log_marginal_likelihood()[0], want, rtol=1e-10))
  True
"""
import math
from typing import Optional, Sequence

import numpy as np
import scipy.linalg

from nt_gp.solve.falkon import cholesky_with_jitter

__all__ = ['DTCPosterior']


class DTCPosterior:
  """Variances and marginal likelihoods of the DTC model, per noise variance.

  Args:
    k_zz: ``(M, M)`` ``K(Z, Z)``.
    gram: ``(M, M)`` ``G = K_ZX K_XZ``.
    rhs: ``(M, C)`` ``K_ZX y``.
    yty: ``(C, C)`` ``y^T y`` (only its diagonal is used) or ``(C,)``.
    n: number of training points ``N``.
    regs: ``(R,)`` absolute noise variances, all positive.
    trace: ``tr K(X, X)`` (the sum of the kernel's diagonal), or None: no
      Titsias bound.

  Attributes:
    jitter: what was added to ``K_ZZ``'s diagonal to factor it (0 unless it
      is numerically singular; GPflow adds its own ``jitter`` the same way).

  Example:
    >>> import numpy as np
    >>> d = DTCPosterior(np.eye(2), 3. * np.eye(2), np.ones((2, 1)),
    ...                  np.array([2.]), n=4, regs=[1.], trace=4.)
    >>> d.log_marginal_likelihood().shape, d.elbo().shape
    ((1,), (1,))
  """

  def __init__(self, k_zz: np.ndarray, gram: np.ndarray, rhs: np.ndarray,
               yty, n: int, regs: Sequence[float],
               trace: Optional[float] = None):
    self.regs = np.asarray(regs, np.float64)
    if self.regs.ndim != 1 or not np.all(self.regs > 0):
      raise ValueError(
          f'The Nyström (DTC) variances and marginal likelihood need positive '
          f'noise variances (with reg = 0 the model\'s covariance Q_XX has '
          f'rank M < N); got {self.regs.tolist()}. Drop 0 from `diag_reg`.')
    self.m = k_zz.shape[0]
    self.n = int(n)
    self.lower, self.jitter = cholesky_with_jitter(
        np.asarray(k_zz, np.float64), 'K(Z, Z)')
    tri = lambda a: scipy.linalg.solve_triangular(  # L^{-1} a
        self.lower, a, lower=True, check_finite=False)
    p = tri(tri(np.asarray(gram, np.float64)).T)           # L^{-1} G L^{-T}
    p = 0.5 * (p + p.T)
    self._v = tri(np.asarray(rhs, np.float64))             # L^{-1} K_ZX y
    yty = np.asarray(yty, np.float64)
    self.yty = np.diagonal(yty).copy() if yty.ndim == 2 else yty.reshape(-1)
    self.trace_q = float(np.trace(p))                      # tr Q_XX
    self.trace = None if trace is None else float(trace)
    self.chol = []
    for reg in self.regs:
      c, _ = cholesky_with_jitter(p + reg * np.eye(self.m),
                                   's2 I + L^-1 G L^-T')
      self.chol.append(c)

  def log_marginal_likelihood(self) -> np.ndarray:
    """``(R,)`` ``log N(y | 0, Q_XX + s2 I)`` summed over target columns."""
    out = np.empty(len(self.regs))
    c = len(self.yty)
    for r, (reg, chol) in enumerate(zip(self.regs, self.chol)):
      w = scipy.linalg.solve_triangular(chol, self._v, lower=True,
                                        check_finite=False)
      quad = (self.yty - np.einsum('ij,ij->j', w, w)) / reg
      logdet = (self.n - self.m) * math.log(reg) + 2. * np.sum(
          np.log(np.diagonal(chol)))
      out[r] = -0.5 * (np.sum(quad) + c * (logdet + self.n * math.log(
          2. * math.pi)))
    return _finite(out, 'log marginal likelihood')

  def elbo(self) -> Optional[np.ndarray]:
    """``(R,)`` Titsias' bound (GPflow `SGPR.elbo`), or None without the
    training kernel's trace."""
    if self.trace is None:
      return None
    c = len(self.yty)
    gap = max(self.trace - self.trace_q, 0.)          # tr(K_XX - Q_XX) >= 0
    return _finite(self.log_marginal_likelihood() - 0.5 * c * gap / self.regs,
                   'Titsias bound')

  def variance_terms(self, k_tz: np.ndarray) -> np.ndarray:
    """``(R, T)`` ``-Q_** + s2 K_*Z (s2 K_ZZ + G)^{-1} K_Z*`` for a block of
    ``K(*, Z)`` rows (add ``k_**`` for the variances)."""
    t1 = scipy.linalg.solve_triangular(self.lower, np.asarray(
        k_tz, np.float64).T, lower=True, check_finite=False)
    q = np.einsum('ij,ij->j', t1, t1)
    out = np.empty((len(self.regs), t1.shape[1]))
    for r, (reg, chol) in enumerate(zip(self.regs, self.chol)):
      t2 = scipy.linalg.solve_triangular(chol, t1, lower=True,
                                         check_finite=False)
      out[r] = reg * np.einsum('ij,ij->j', t2, t2) - q
    return out


def _finite(a: np.ndarray, what: str) -> np.ndarray:
  if not np.all(np.isfinite(a)):
    raise ValueError(f'The Nyström {what} is not finite ({a.tolist()}); '
                     f'the kernel is too ill-conditioned for these noise '
                     f'variances: use larger `diag_reg` values or float64.')
  return a
