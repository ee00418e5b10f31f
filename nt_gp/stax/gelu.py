"""The `Gelu` nonlinearity, ``x Φ(x)`` with Φ the standard normal CDF.

For z ~ GP with variances q11, q22 and covariance q12 (Tsuchida et al. 2020,
"Avoiding kernel fixed points"), with p = q11 q22,
p₁ = (1 + q11)(1 + q22), δ² = p₁ - q12² and α = atan2(q12, δ):

  q12' = q12 / 4 + [ (q12² + p δ²) / (p₁ δ) + q12 α ] / (2π)
  ntk' = ntk { 1/4 + α / (2π) + q12 [1/δ² + (1 - p)/p₁ + 1] / (2π δ) }.

δ² ≥ 1 + q11 + q22 > 0, so the map is smooth everywhere.
"""
import math

import tensorflow as tf

from nt_gp.stax.elementwise import elementwise, map_covariances
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking

__all__ = ['Gelu']


@layer
@supports_masking(remask_kernel=False)
def Gelu(approximate: bool = False):
  """Gaussian error linear unit, ``x Φ(x)``.

  Args:
    approximate: only changes the finite-width `apply_fn`: if True, uses the
      tanh approximation ``x/2 (1 + tanh(sqrt(2/π) (x + 0.044715 x³)))``. The
      kernel is always the one of the exact Gelu.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`; `apply_fn` maps `(..., C)` tensors of any
    float dtype elementwise.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Gelu())
    >>> k = kernel_fn(np.ones((1, 1)), get='nngp')  # E[gelu(z)²], z ~ N(0, 1)
    >>> round(float(k[0, 0]), 6)
    0.425221
  """
  if not isinstance(approximate, bool):
    raise TypeError(f'`approximate` must be a bool, got {approximate!r}.')

  def fn(x):
    if approximate:
      inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)
      return 0.5 * x * (1 + tf.tanh(inner))
    return 0.5 * x * tf.math.erfc(-x / math.sqrt(2))

  def q_map(q12, q11, q22, ntk):
    prod = q11 * q22
    prod_plus_1 = (q11 + 1) * (q22 + 1)
    delta_sq = prod_plus_1 - tf.square(q12)
    delta = tf.sqrt(delta_sq)
    angles = tf.atan2(q12, delta)
    out = ((tf.square(q12) + prod * delta_sq) / (prod_plus_1 * delta) +
           q12 * angles) / (2 * math.pi) + 0.25 * q12
    if ntk is not None:
      first = (1 / delta_sq + (1 - prod) / prod_plus_1 + 1) * q12 / (
          2 * math.pi * delta)
      ntk = ntk * (first + 0.25 + angles / (2 * math.pi))
    return out, ntk

  def diag(q):
    root = tf.sqrt(1 + 2 * q)
    return q * ((q / ((q + 1) * root) + tf.atan2(q, root) / 2) / math.pi +
                0.25)

  def rule(k):
    return map_covariances(k, q_map, diag_fn=diag)

  return elementwise(fn, 'Gelu', rule, packed=True)
