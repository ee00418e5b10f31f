"""Elementwise inverse trigonometric functions that compile well with XLA.

XLA:CPU evaluates `acos`/`atan2`/`asin` in float32 about ten times slower
than TensorFlow's own kernels (see `benchmarks/op_speed.py`), while plain
arithmetic fuses into one fast loop. In float32 these functions are therefore
computed from short minimax polynomials (Abramowitz & Stegun 4.4.46 and a
degree-15 odd polynomial for arctan on [0, 1]), accurate to a few 1e-7
absolute — the precision of float32 itself. In float64, arccos and arcsin
are reduced to arcsin on [0, 1/2] (arccos x = 2 arcsin sqrt((1 - x) / 2) for
x > 1/2) and evaluated from a degree-13 polynomial in y² fitted to arcsin
on that interval: accurate to float64 rounding (at most 1 ulp, as
`numpy.arcsin`). Short polynomials also keep the traced graphs small: every
coefficient is an operation to create when a kernel is traced.
"""
import math

import tensorflow as tf

__all__ = ['acos', 'atan2', 'asin']

# Abramowitz & Stegun 4.4.46: acos(x) = sqrt(1 - x) P(x) on [0, 1], |err| <= 2e-8.
_ACOS = (1.5707963050, -0.2145988016, 0.0889789874, -0.0501743046,
         0.0308918810, -0.0170881256, 0.0066700901, -0.0012624911)
# arctan(t) ≈ t Q(t²) on [0, 1], |err| <= 5e-8 in exact arithmetic (a
# least-squares fit on Chebyshev nodes, degree 7 in t²).
_ATAN = (0.9999994368, -0.3333010668, 0.1994850899, -0.1391580226,
         0.0965625647, -0.0560631767, 0.021946611, -0.0040733095)


# arcsin(y) = y + y z P(z), z = y², for 0 <= y <= 1/2: P interpolates
# (arcsin(y) - y) / (y z) at the 14 Chebyshev nodes of z in [0, 1/4] (computed
# in 50-digit arithmetic, then rounded to float64). Its error there is below
# float64 rounding: the result is within 1 ulp of arcsin, as numpy's
# (tests/test_fast_math.py).
_ASIN64 = (0.16666666666666666, 0.07500000000000118, 0.044642857142551895,
           0.03038194447553234, 0.02237215744350722, 0.017352816540325496,
           0.01396378001220357, 0.011566459612121669, 0.009621842970100282,
           0.009319560794767446, 0.0030448799094556773, 0.019554513336123378,
           -0.01924167174674304, 0.02961201126495512)


def _asin_small64(y):
  """arcsin(y) for 0 <= y <= 1/2 in float64."""
  z = y * y
  return y + y * z * _horner(_ASIN64, z)


def _acos64(x):
  ax = tf.minimum(tf.abs(x), 1.)
  big = ax > 0.5
  y = tf.where(big, tf.sqrt((1. - ax) * 0.5), ax)
  a = _asin_small64(y)
  r = tf.where(big, 2. * a, math.pi / 2 - a)
  return tf.where(x < 0, math.pi - r, r)


def _horner(coefs, x):
  # The coefficients as one constant, unstacked: a traced graph gets two
  # operations for them instead of one per coefficient (XLA folds the
  # slices back into scalars).
  c = tf.unstack(tf.constant(coefs, x.dtype))
  out = c[-1]
  for ci in reversed(c[:-1]):
    out = out * x + ci
  return out


def acos(x: tf.Tensor) -> tf.Tensor:
  """arccos for x in [-1, 1] (values outside are clipped).

  Example:
    >>> import numpy as np
    >>> float(acos(np.float32(0.5)))  # doctest: +ELLIPSIS
    1.047197...
  """
  x = tf.convert_to_tensor(x)
  if x.dtype == tf.float64:
    return _acos64(x)
  if x.dtype != tf.float32:
    return tf.acos(tf.clip_by_value(x, -1., 1.))
  ax = tf.minimum(tf.abs(x), 1.)
  r = tf.sqrt(1. - ax) * _horner(_ACOS, ax)
  return tf.where(x < 0, math.pi - r, r)


def asin(x: tf.Tensor) -> tf.Tensor:
  """arcsin for x in [-1, 1] (values outside are clipped).

  Example:
    >>> import numpy as np
    >>> round(float(asin(np.float32(1.))), 6)
    1.570796
  """
  x = tf.convert_to_tensor(x)
  if x.dtype == tf.float64:
    ax = tf.minimum(tf.abs(x), 1.)
    big = ax > 0.5
    y = tf.where(big, tf.sqrt((1. - ax) * 0.5), ax)
    a = _asin_small64(y)
    r = tf.where(big, math.pi / 2 - 2. * a, a)
    return tf.where(x < 0, -r, r)
  if x.dtype != tf.float32:
    return tf.asin(tf.clip_by_value(x, -1., 1.))
  return math.pi / 2 - acos(x)


def atan2(y: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
  """atan2(y, x) with atan2(0, 0) = 0.

  Example:
    >>> import numpy as np
    >>> round(float(atan2(np.float32(1.), np.float32(-1.))), 6)
    2.356194
  """
  y = tf.convert_to_tensor(y)
  x = tf.convert_to_tensor(x, y.dtype)
  if y.dtype != tf.float32:
    return tf.atan2(y, x)
  ay, ax = tf.abs(y), tf.abs(x)
  big = tf.maximum(ay, ax)
  small = tf.minimum(ay, ax)
  t = small / tf.where(big > 0, big, tf.ones_like(big))
  r = t * _horner(_ATAN, t * t)
  r = tf.where(ay > ax, math.pi / 2 - r, r)
  r = tf.where(x < 0, math.pi - r, r)
  return tf.where(y < 0, -r, r)
