r"""The noise variance of a feature GP by maximum marginal likelihood.

With normal equations ``G = Φᵀ Φ``, ``b = Φᵀ y``, ``yᵀ y``, `N` and
``A = G + σ² I = L Lᵀ``, the log marginal likelihood per output column is

    ℓ(σ²) = -½ [(yᵀy - bᵀA⁻¹b) / σ² + log|A| + (N - m) log σ² + N log 2π]

and its derivative in ``t = log σ²``

    dℓ/dt = -½ [-(yᵀy - bᵀA⁻¹b) / σ² + |A⁻¹b|² + σ² tr(A⁻¹) + N - m],

all from one Cholesky factorisation and the inverse of `L`
(``tr(A⁻¹) = |L⁻¹|²_F``): two `O(m³/3)` LAPACK calls per value of `σ²`.
An eigendecomposition of `G` would make every later value `O(m)`, but on
two cores it took as long as about 20 Cholesky factorisations at
`m = 4097`
(LAPACK's tridiagonal reduction is bound by memory bandwidth), more than
the whole search below.

The search iterates the evidence fixed point of Bayesian linear regression
(MacKay 1992), ``σ² ← |y - Φ w̄|² / (N - γ)`` with the posterior mean `w̄`
and ``γ = m - σ² tr(A⁻¹)`` well-determined parameters, whose fixed points
are the zeros of ``dℓ/dt``; it converges fast when `N ≫ m` (4-5 values for
`N = 40,000`, `m = 4097`). A sign change of the derivative on the way is
bracketed and located by Brent's method; slow convergence switches to
steps of doubling length until the derivative changes sign.
"""
import math

import numpy as np
import scipy.linalg.lapack
import scipy.optimize

from nt_gp.solve import _linalg

__all__ = ['Evaluation', 'evaluate', 'maximise']


class NotPositiveDefinite(ValueError):
  """``G + σ² I`` failed its Cholesky factorisation."""


class Evaluation:
  """Log marginal likelihood (summed over outputs), its derivative in
  ``log σ²`` and the evidence fixed-point update at one noise variance.

  Attributes:
    value: ``ℓ(σ²)``, a float.
    slope: ``dℓ/d log σ²``, a float.
    update: the fixed-point update of `σ²`, a float.

  Example:
    >>> e = Evaluation(-3.5, 0.25, 0.1)
    >>> e.slope > 0       # the likelihood grows with the noise here
    True
  """

  def __init__(self, value: float, slope: float, update: float):
    self.value, self.slope, self.update = value, slope, update


def evaluate(gram: np.ndarray, rhs: np.ndarray, targets_sq: np.ndarray,
             count: int, noise: float) -> Evaluation:
  """`Evaluation` of the normal equations at noise variance `noise`.

  Args:
    gram: ``Φᵀ Φ``, `(m, m)` float64 (not modified).
    rhs: ``Φᵀ y``, `(m, t)` float64.
    targets_sq: ``yᵀ y`` per output, `(t,)`.
    count: `N`.
    noise: `σ² > 0`.

  Raises:
    NotPositiveDefinite: when ``Φᵀ Φ + σ² I`` is not positive definite.

  Example:
    >>> import numpy as np
    >>> rs = np.random.RandomState(0)
    >>> phi, y = rs.randn(30, 4), rs.randn(30, 1)
    >>> e = evaluate(phi.T @ phi, phi.T @ y, (y ** 2).sum(0), 30, 0.5)
    >>> k = phi @ phi.T + 0.5 * np.eye(30)
    >>> dense = -0.5 * (y[:, 0] @ np.linalg.solve(k, y[:, 0]) +
    ...                 np.linalg.slogdet(2 * np.pi * k)[1])
    >>> bool(np.isclose(e.value, dense, rtol=1e-12))
    True
  """
  m = gram.shape[0]
  a = np.array(gram, np.float64, order='C')
  a[np.diag_indices(m)] += noise
  try:     # block by block for large m (OpenBLAS's threaded potrf crashes)
    _linalg.cholesky_lower(a)
  except _linalg.NotPositiveDefiniteError:
    raise NotPositiveDefinite(f'Φᵀ Φ + σ² I is not positive definite at '
                              f'noise variance {noise:.3g}.') from None
  logdet = 2 * float(np.sum(np.log(np.diagonal(a))))
  # The C-ordered lower factor L is the Fortran-ordered upper Lᵀ: its
  # inverse L⁻ᵀ in place, read back C-ordered as L⁻¹.
  inv_t, info = scipy.linalg.lapack.dtrtri(a.T, lower=0, overwrite_c=1)
  if info != 0:
    raise NotPositiveDefinite(f'Φᵀ Φ + σ² I is singular at noise variance '
                              f'{noise:.3g}.')
  inv = np.tril(inv_t.T)
  half = inv @ rhs                           # L⁻¹ b
  weights = inv.T @ half                     # A⁻¹ b
  trace = float(np.einsum('ij,ij->', inv, inv))   # tr(A⁻¹) = |L⁻¹|²_F
  quad = np.sum(np.square(half), 0)          # bᵀ A⁻¹ b
  t = rhs.shape[1]
  fit = (targets_sq - quad) / noise
  value = -0.5 * float(np.sum(fit) + t * (logdet + (count - m) * math.log(
      noise) + count * math.log(2 * math.pi)))
  slope = -0.5 * float(np.sum(-fit + np.sum(np.square(weights), 0)) +
                       t * (noise * trace + count - m))
  # |y - Φ w̄|² = yᵀy - w̄ᵀb - σ²|w̄|² (from G w̄ = b - σ² w̄).
  residual = float(np.sum(targets_sq - np.sum(weights * rhs, 0) -
                          noise * np.sum(np.square(weights), 0)))
  determined = m - noise * trace
  update = (residual / (t * (count - determined))
            if count > determined and residual > 0 else noise)
  return Evaluation(value, slope, update)


def maximise(evaluate_at, lower: float, upper: float, start: float,
             xtol: float = 1e-4, fixed_point_steps: int = 8):
  """Maximiser of the log marginal likelihood over ``[lower, upper]``.

  Evidence fixed-point steps from `start` until a step is shorter than
  `xtol` (in ``log σ²``), and so is the secant step through the last two
  derivatives, or the derivative changes sign (then Brent's method
  on the bracket); after `fixed_point_steps` steps (slow convergence, when
  few parameters are well determined) or when the fixed point does not go
  uphill, steps double until the derivative changes sign.

  Args:
    evaluate_at: `σ² -> Evaluation`.
    lower, upper: bounds of the noise variance.
    start: first noise variance (clipped to the bounds).
    xtol: tolerance on ``log σ²`` (relative tolerance on `σ²`).
    fixed_point_steps: fixed-point steps before doubling steps.

  Returns:
    `(noise_variance, evaluations)`.

  Example:
    >>> import numpy as np
    >>> rs = np.random.RandomState(0)
    >>> phi = rs.randn(200, 3)
    >>> y = phi @ np.ones((3, 1)) + 0.3 * rs.randn(200, 1)
    >>> args = (phi.T @ phi, phi.T @ y, (y ** 2).sum(0), 200)
    >>> noise, _ = maximise(lambda s: evaluate(*args, s), 1e-6, 10., 1.)
    >>> bool(abs(evaluate(*args, noise).slope) < 1e-2)
    True
  """
  lo, hi = math.log(lower), math.log(upper)
  cache = {}

  def at(t):
    if t not in cache:
      cache[t] = evaluate_at(math.exp(t))
    return cache[t]

  t = min(max(math.log(start), lo), hi)
  previous, step = None, 0.
  for k in range(200):
    e = at(t)
    up = e.slope > 0
    if e.slope == 0 or (up and t >= hi) or (not up and t <= lo):
      return math.exp(t), len(cache)      # a stationary point or a bound
    if previous is not None and (at(previous).slope > 0) != up:
      a, b = sorted((previous, t))
      root = scipy.optimize.brentq(lambda s: at(s).slope, a, b, xtol=xtol)
      return math.exp(root), len(cache)
    proposal = math.log(e.update) - t if e.update > 0 else 0.
    if k < fixed_point_steps and proposal != 0 and (proposal > 0) == up:
      if abs(proposal) < xtol and previous is not None:
        # Converged when the secant through the last two derivatives agrees.
        g0 = at(previous).slope
        secant = abs(e.slope * (t - previous) / (e.slope - g0))
        if secant < xtol:
          return math.exp(min(max(t + proposal, lo), hi)), len(cache)
      step = abs(proposal)
    else:
      step = max(2 * abs(proposal), 2 * step, 1e-3)
    previous, t = t, min(max(t + (step if up else -step), lo), hi)
  raise RuntimeError('The noise fit did not bracket a maximum.')
