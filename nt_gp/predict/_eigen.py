"""Functions of a regularized train-train kernel in its eigenbasis.

Gradient flow on MSE with kernel `K` over `n = y_train.size` outputs evolves
the train residual as `exp(-K t / n)`. With `K = V diag(e) V^T` this is
`V diag(exp(-e t / n)) V^T`; eigenvalues are clipped at 0 (negative ones only
come from round-off of a positive semi-definite kernel).
"""
import tensorflow as tf

from nt_gp.predict import _utils


def expm1(evals, t, normalization):
  """`exp(-max(e, 0) * t / n) - 1` for `evals (1, n)` and times `t (T, 1)`."""
  return tf.math.expm1(-tf.maximum(evals, 0.) * t / normalization)


def inv_expm1(evals, t, normalization):
  """`expm1(e, t) / e`: the flow seen through `K^{-1}` (0 where `e <= 0`).

  For `e -> 0+` this tends to `-t / n`; for `e <= 0` the numerator is 0 and
  the result is set to 0 (neural-tangents gives 0 for `e < 0` and NaN for
  `e == 0`).
  """
  positive = evals > 0.
  safe = tf.where(positive, evals, tf.ones_like(evals))
  return tf.where(positive, expm1(evals, t, normalization) / safe,
                  tf.zeros_like(expm1(evals, t, normalization)))


class EigenBasis:
  """Lazily computed (and cached) `eigh` of `k2d + diag_reg * I`."""

  def __init__(self, k2d, diag_reg, diag_reg_absolute_scale):
    self.k2d = k2d
    self.diag_reg = diag_reg
    self.absolute = diag_reg_absolute_scale
    self._cache = _utils.GraphCache()

  def eigh(self):
    """`(evals (1, n), evecs (n, n))` of the regularized kernel."""
    def compute():
      k = _utils.add_diagonal_regularizer(self.k2d, self.diag_reg,
                                          self.absolute)
      evals, evecs = tf.linalg.eigh(k)
      return evals[tf.newaxis], evecs
    return self._cache.get('eigh', compute)

  def apply(self, diag, rhs):
    """`V diag(d_t) V^T rhs` for `diag (T, n)` and `rhs (n, m)` -> `(T, n, m)`."""
    _, evecs = self.eigh()
    z = tf.matmul(evecs, rhs, transpose_a=True)
    return tf.einsum('ij,tjm->tim', evecs, diag[:, :, tf.newaxis] * z)
