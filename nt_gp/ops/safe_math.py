"""Square roots, arctangents and powers with finite gradients at the boundary.

Kernel maps of nonlinearities contain terms such as ``sqrt(q11 q22 - q12²)``
that vanish on the diagonal (``x1 == x2``), where the derivative of ``sqrt``
is infinite. There the argument is identically zero as a function of the
hyperparameters, so its true derivative contribution is zero; these helpers
return that zero instead of ``inf * 0 = NaN``.
"""
import tensorflow as tf

__all__ = ['safe_sqrt', 'safe_atan2', 'sqrt_gram_det', 'int_power']


def safe_sqrt(x, tol: float = 0.):
  """``sqrt(max(x, tol))`` with gradient ``1 / (2 sqrt(x))`` where
  ``x > max(tol, 1e-30)`` and zero elsewhere.

  Args:
    x: float tensor of any shape (float32 or float64).
    tol: clamp below which the value is ``sqrt(tol)`` and the gradient zero.

  Returns:
    A tensor of the shape and dtype of `x`.

  Example:
    >>> import tensorflow as tf
    >>> x = tf.constant([-1., 0., 4.], tf.float64)
    >>> with tf.GradientTape() as tape:
    ...   tape.watch(x)
    ...   y = safe_sqrt(x)
    >>> y.numpy().tolist(), tape.gradient(y, x).numpy().tolist()
    ([0.0, 0.0, 2.0], [0.0, 0.0, 0.25])
  """
  x = tf.convert_to_tensor(x)
  ok = x > max(tol, 1e-30)
  smooth = tf.sqrt(tf.where(ok, x, tf.ones_like(x)))
  clamped = tf.sqrt(tf.stop_gradient(tf.maximum(x, tf.constant(tol, x.dtype))))
  return tf.where(ok, smooth, clamped)


def safe_atan2(y, x, fill_zero: float = 0.):
  """``atan2(y, x)``, equal to `fill_zero` (with zero gradient) where both
  `y` and `x` are zero.

  Args:
    y, x: float tensors that broadcast against each other.
    fill_zero: value at ``y == x == 0``.

  Returns:
    The broadcast shape, dtype of the inputs.

  Example:
    >>> import numpy as np
    >>> float(safe_atan2(np.float64(0.), np.float64(0.), np.pi / 2))
    1.5707963267948966
  """
  y = tf.convert_to_tensor(y)
  x = tf.convert_to_tensor(x, y.dtype)
  both_zero = tf.logical_and(tf.equal(y, 0), tf.equal(x, 0))
  ys = tf.where(both_zero, tf.ones_like(y), y)
  xs = tf.where(both_zero, tf.ones_like(x), x)
  return tf.where(both_zero, tf.constant(fill_zero, y.dtype), tf.atan2(ys, xs))


def sqrt_gram_det(q12, q11, q22):
  """``sqrt(q11 q22 - q12²)`` (clamped at 0), exactly 0 where ``q12² ==
  q11 q22``.

  Computed as ``sqrt(q11 q22) sqrt(1 - q12² / (q11 q22))``: XLA contracts the
  direct difference into a fused multiply-add, which returns the rounding
  error of a product (~1e-16 relative) instead of 0 on variances, and its
  square root (~1e-8) then shows in kernels with a square-root singularity at
  correlation 1. The ratio of two identically rounded products is exactly 1.
  Gradients are finite (zero where the result is 0).

  Args:
    q12: covariances; q11, q22: variances broadcasting against `q12`.

  Returns:
    A tensor of the broadcast shape, dtype of `q12`.

  Example:
    >>> import numpy as np
    >>> float(sqrt_gram_det(np.float64(0.3), np.float64(0.3), np.float64(0.3)))
    0.0
    >>> float(sqrt_gram_det(np.float64(0.), np.float64(4.), np.float64(1.)))
    2.0
  """
  q12 = tf.convert_to_tensor(q12)
  prod = q11 * q22
  positive = prod > 0
  safe_prod = tf.where(positive, prod, tf.ones_like(prod))
  cos_sq = tf.where(positive, tf.square(q12) / safe_prod, tf.ones_like(prod))
  return safe_sqrt(prod) * safe_sqrt(1 - cos_sq)


def int_power(x, n: int):
  """``x ** n`` for a non-negative Python int `n` by repeated squaring
  (exact for negative `x`; gradient ``n x^(n-1)`` everywhere).

  Example:
    >>> import numpy as np
    >>> float(int_power(np.float64(-2.), 3))
    -8.0
  """
  x = tf.convert_to_tensor(x)
  if n < 0:
    raise ValueError(f'`n` must be a non-negative int, got {n}.')
  result = None
  base = x
  while n:
    if n & 1:
      result = base if result is None else result * base
    n >>= 1
    if n:
      base = base * base
  return tf.ones_like(x) if result is None else result
