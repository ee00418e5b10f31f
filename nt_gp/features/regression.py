r"""GP regression with a feature kernel as Bayesian linear regression.

With features `Φ` (`N x m`) the kernel ``K = Φ Φᵀ`` makes the GP
``f = Φ w``, ``w ~ N(0, I_m)``, and GP regression with Gaussian noise `σ²`
is Bayesian linear regression. Everything it needs is in the normal
equations ``G = Φᵀ Φ``, ``b = Φᵀ y``, ``yᵀ y`` and `N`, which can be summed
over blocks of data (`NormalEquations.add`), so `N` is limited by the time to
compute features, not by memory. With ``A = G + σ² I = L Lᵀ``:

* posterior of the weights ``N(A⁻¹ b, σ² A⁻¹)``;
* predictive mean ``φ* · A⁻¹ b`` and variance ``σ² |L⁻¹ φ*|²`` (of `f`);
* log marginal likelihood
  ``-½ [(yᵀy - bᵀA⁻¹b) / σ² + log|A| + (N - m) log σ² + N log 2π]``
  (Woodbury and the matrix determinant lemma), per output column.

All in float64, `O(m³)` after the `O(N m²)` accumulation.
"""
import math
from typing import Optional

import numpy as np
import scipy.linalg.blas
import tensorflow as tf

from nt_gp.features import noise_fit

__all__ = ['NormalEquations', 'FeatureRegression']


def _as_targets(y, n):
  y = tf.convert_to_tensor(y)
  if y.shape.rank == 1:
    y = y[:, None]
  if y.shape.rank != 2 or y.shape[0] != n:
    raise ValueError(f'`y` must have shape ({n},) or ({n}, outputs) to match '
                     f'the features, got {tuple(y.shape)}.')
  return y


def _float64(value):
  """A number, tensor or variable as a float64 tensor (Python floats are not
  rounded to float32 on the way)."""
  if isinstance(value, (int, float, np.number)):
    return tf.constant(value, tf.float64)
  return tf.cast(tf.convert_to_tensor(value), tf.float64)


class NormalEquations:
  """Normal equations ``Φᵀ Φ``, ``Φᵀ y``, ``yᵀ y`` and `N`, summed by blocks.

  Args:
    dim: feature dimension `m`.
    outputs: number of target columns `t`.

  Blocks are added with `add(phi, y)`; each block's ``Φᵀ Φ`` is one BLAS
  `syrk` (half the work of a matmul) in the features' dtype, summed in
  float64.

  Example:
    >>> import numpy as np
    >>> phi = np.random.RandomState(0).randn(10, 3)
    >>> y = np.ones(10)
    >>> ne = NormalEquations(3)
    >>> ne.add(phi[:6], y[:6]).add(phi[6:], y[6:]).count
    10
    >>> bool(np.allclose(ne.gram, phi.T @ phi))
    True
  """

  def __init__(self, dim: int, outputs: int = 1):
    self._upper = np.zeros((dim, dim))      # upper triangle of Φᵀ Φ
    self.rhs = np.zeros((dim, outputs))
    self.targets_sq = np.zeros(outputs)
    self.count = 0
    self.precision = 0.     # unit roundoff of the features' dtype
    self._block = None      # one block's Φᵀ Φ (upper triangle), reused

  @property
  def dim(self) -> int:
    return self._upper.shape[0]

  @property
  def gram(self) -> np.ndarray:
    """``Φᵀ Φ``, `(m, m)` float64."""
    return np.triu(self._upper) + np.triu(self._upper, 1).T

  def add(self, phi, y) -> 'NormalEquations':
    """Adds a block: `phi` `(n, m)`, `y` `(n,)` or `(n, t)`. Returns self."""
    phi = tf.convert_to_tensor(phi)
    if phi.shape.rank != 2 or phi.shape[1] != self.dim:
      raise ValueError(f'Features must have shape (n, {self.dim}), got '
                       f'{tuple(phi.shape)}; flatten spatial feature axes or '
                       f'end the network in a readout.')
    y = tf.cast(_as_targets(y, phi.shape[0]), phi.dtype)
    if y.shape[1] != self.rhs.shape[1]:
      raise ValueError(f'`y` has {y.shape[1]} outputs, the normal equations '
                       f'{self.rhs.shape[1]}.')
    a = np.ascontiguousarray(phi.numpy())
    syrk = (scipy.linalg.blas.dsyrk if a.dtype == np.float64 else
            scipy.linalg.blas.ssyrk)
    self.precision = max(self.precision, float(np.finfo(a.dtype).eps))
    if self._block is None or self._block.dtype != a.dtype:
      self._block = np.zeros((self.dim, self.dim), a.dtype, order='F')
    # Φᵀ is Fortran-ordered when Φ is C-ordered: no copy; the block's upper
    # triangle is overwritten in place (no new m x m array per block).
    syrk(1.0, a.T, beta=0.0, c=self._block, trans=0, lower=0, overwrite_c=1)
    self._upper += self._block
    y = y.numpy()
    self.rhs += a.T @ y
    self.targets_sq += np.sum(np.square(y.astype(np.float64)), 0)
    self.count += int(phi.shape[0])
    return self

  @classmethod
  def of(cls, phi, y) -> 'NormalEquations':
    """The normal equations of one block of features and targets."""
    phi = tf.convert_to_tensor(phi)
    y = _as_targets(y, phi.shape[0])
    return cls(phi.shape[-1], y.shape[1]).add(phi, y)


class FeatureRegression:
  """Bayesian linear regression on features = GP regression with ``Φ Φᵀ``.

  Args:
    normal_equations: `NormalEquations` of the training data.
    noise_variance: observation noise `σ²` (> 0; a number, tensor or
      `tf.Variable`, read at every call so it can be learned).

  Example:
    >>> import numpy as np
    >>> rs = np.random.RandomState(0)
    >>> phi, y = rs.randn(50, 4), rs.randn(50)
    >>> reg = FeatureRegression(NormalEquations.of(phi, y), noise_variance=0.1)
    >>> mean, var = reg.predict(phi[:2])
    >>> tuple(mean.shape), tuple(var.shape)
    ((2, 1), (2,))
    >>> K = phi @ phi.T   # the same numbers as a GP with kernel Φ Φᵀ:
    >>> gp_mean = K[:2] @ np.linalg.solve(K + 0.1 * np.eye(50), y)
    >>> bool(np.allclose(mean[:, 0], gp_mean))
    True
  """

  def __init__(self, normal_equations: NormalEquations, noise_variance=1.):
    self.normal_equations = normal_equations
    self.noise_variance = noise_variance
    self._check_noise(self._noise())

  def _noise(self):
    return _float64(self.noise_variance)

  @staticmethod
  def _check_noise(noise):
    if tf.executing_eagerly() and not float(noise) > 0:
      raise ValueError(f'`noise_variance` must be > 0, got {float(noise)}.')

  def _factor(self, noise):
    ne = self.normal_equations
    a = tf.constant(ne.gram) + noise * tf.eye(ne.dim, dtype=tf.float64)
    chol = tf.linalg.cholesky(a)
    if tf.executing_eagerly() and not np.isfinite(
        tf.linalg.diag_part(chol).numpy()).all():
      dtype = 'float32' if ne.precision > 1e-10 else 'float64'
      raise ValueError(
          f'Φᵀ Φ + σ² I is not positive definite at noise variance '
          f'{float(noise):.3g}: the noise is below the precision of the '
          f'normal equations (features in {dtype}). Use a larger noise '
          f'variance, or float64 features when there are fewer data than '
          f'features.')
    return chol

  def _solve_rhs(self, chol):
    return tf.linalg.cholesky_solve(chol, tf.constant(self.normal_equations.rhs))

  def weights_mean(self):
    """Posterior mean of the weights ``A⁻¹ Φᵀ y``, `(m, t)` float64."""
    return self._solve_rhs(self._factor(self._noise()))

  def _features(self, phi):
    phi = tf.cast(tf.convert_to_tensor(phi), tf.float64)
    if phi.shape.rank != 2 or phi.shape[1] != self.normal_equations.dim:
      raise ValueError(f'Features must have shape (n, '
                       f'{self.normal_equations.dim}), got '
                       f'{tuple(phi.shape)}.')
    return phi

  def predict(self, phi, full_cov: bool = False):
    """Posterior of `f` at test features `phi` `(n, m)`.

    Returns:
      `(mean, var)`: mean `(n, t)`; variance `(n,)` (the same for every
      output), or `(n, n)` with `full_cov` — of the latent `f`, without the
      noise. float64.
    """
    phi = self._features(phi)
    noise = self._noise()
    chol = self._factor(noise)
    mean = phi @ self._solve_rhs(chol)
    half = tf.linalg.triangular_solve(chol, tf.transpose(phi), lower=True)
    if full_cov:
      return mean, noise * tf.matmul(half, half, transpose_a=True)
    return mean, noise * tf.reduce_sum(tf.square(half), 0)

  def log_marginal_likelihood(self, noise_variance=None):
    """``log N(y | 0, Φ Φᵀ + σ² I)`` summed over outputs (float64 scalar)."""
    ne = self.normal_equations
    noise = (self._noise() if noise_variance is None else
             _float64(noise_variance))
    chol = self._factor(noise)
    half = tf.linalg.triangular_solve(chol, tf.constant(ne.rhs), lower=True)
    fit = (tf.constant(ne.targets_sq) - tf.reduce_sum(tf.square(half), 0)
           ) / noise
    logdet = 2 * tf.reduce_sum(tf.math.log(tf.linalg.diag_part(chol)))
    n, m = float(ne.count), float(ne.dim)
    per_output = -0.5 * (fit + logdet + (n - m) * tf.math.log(noise) +
                         n * math.log(2 * math.pi))
    return tf.reduce_sum(per_output)

  def fit_noise(self, lower: Optional[float] = None,
                upper: Optional[float] = None) -> float:
    """Sets `noise_variance` to its marginal-likelihood maximiser.

    The statistics are fixed, so each value of the log marginal likelihood
    and its derivative in ``log σ²`` costs one `m x m` Cholesky
    factorisation and one triangular inverse (`nt_gp.features.noise_fit`):
    the search iterates the evidence fixed point of Bayesian linear
    regression to a relative `1e-4` in `σ²` (a few values when there are
    many more data than features), with Brent's method on the derivative as
    a safeguard. Bounds default to `10` times the mean squared target and the larger of `1e-8` times it and ten roundoffs
    (of the features' dtype) of the largest diagonal entry of ``Φᵀ Φ``:
    below that the accumulated Gram matrix cannot resolve the noise. A
    maximum at a bound returns the bound. The search starts from the
    current `noise_variance`.

    Returns:
      The new noise variance (also assigned to a `tf.Variable`
      `noise_variance`, or stored as a float otherwise).
    """
    ne = self.normal_equations
    scale = float(ne.targets_sq.mean() / max(ne.count, 1)) or 1.
    if lower is None:
      # Below this the Gram matrix's rounding errors (in the features' dtype)
      # are larger than the noise.
      lower = max(1e-8 * scale, 10 * ne.precision *
                  float(ne.gram.diagonal().max(initial=0.)))
    if upper is None:
      upper = 10 * scale
    if not 0 < lower < upper:
      raise ValueError(f'Need 0 < lower < upper, got {lower} and {upper}.')
    gram = ne.gram

    def evaluate_at(value):
      try:
        return noise_fit.evaluate(gram, ne.rhs, ne.targets_sq, ne.count,
                                  value)
      except noise_fit.NotPositiveDefinite:
        self._factor(tf.constant(value, tf.float64))   # raises the error
        raise
    # Starts from the current noise variance (clipped to the bounds).
    value, _ = noise_fit.maximise(evaluate_at, lower, upper,
                                  start=float(self._noise()))
    if isinstance(self.noise_variance, tf.Variable):
      self.noise_variance.assign(value)
    else:
      self.noise_variance = value
    return value

  def sample_weights(self, num_samples: int, seed: int = 0):
    """Weights from the posterior, `(num_samples, m, t)` float64.

    ``w = A⁻¹ b + σ L⁻ᵀ z``, `z` standard normal; a sampled function is
    ``f(x) = φ(x) @ w``, consistent across any test points.
    """
    noise = self._noise()
    chol = self._factor(noise)
    mean = self._solve_rhs(chol)
    t = mean.shape[1]
    z = tf.random.stateless_normal(
        [self.normal_equations.dim, num_samples * t], [int(seed), 0],
        dtype=tf.float64)
    noise_part = tf.linalg.triangular_solve(
        chol, z, lower=True, adjoint=True) * tf.sqrt(noise)
    noise_part = tf.transpose(tf.reshape(
        noise_part, [self.normal_equations.dim, num_samples, t]), [1, 0, 2])
    return mean[None] + noise_part
