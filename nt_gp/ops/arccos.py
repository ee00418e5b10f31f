"""Arc-cosine kernel functions with gradients that stay finite at |c| = 1.

For the (AB)ReLU family the normalised NNGP map is, with θ = arccos(c),

    J1(c) = sqrt(1 - c²) + (π - θ) c,     J1'(c) = π - θ,
    J0(c) = π - θ,                          J0'(c) = 1 / sqrt(1 - c²).

Written naively, automatic differentiation of J1 multiplies the infinite
derivatives of `sqrt` and `acos` at c = 1 (every diagonal entry) by zero and
returns NaN. Here the derivatives are given in closed form: J1' is finite
everywhere, and J0' is set to zero where 1 - c² underflows (on the diagonal,
where c is identically 1 and its derivative with respect to any
hyperparameter is zero).
"""
import math

import tensorflow as tf

__all__ = ['j0', 'j1', 'clip_cos', 'safe_rsqrt']


def clip_cos(c: tf.Tensor) -> tf.Tensor:
  """Clips a cosine to [-1, 1] (rounding can push it slightly outside)."""
  return tf.clip_by_value(c, tf.cast(-1., c.dtype), tf.cast(1., c.dtype))


def safe_rsqrt(v: tf.Tensor) -> tf.Tensor:
  """1/sqrt(v) for v > 0 and 0 where v <= 0, with a finite gradient."""
  positive = v > 0
  safe = tf.where(positive, v, tf.ones_like(v))
  return tf.where(positive, tf.math.rsqrt(safe), tf.zeros_like(v))


@tf.custom_gradient
def j1(c):
  """sqrt(1 - c²) + (π - arccos c) c, elementwise; `c` in [-1, 1].

  Example:
    >>> import numpy as np
    >>> float(j1(np.float64(1.)))  # = π
    3.141592653589793
  """
  c = tf.convert_to_tensor(c)
  pi_minus_theta = math.pi - tf.acos(c)
  value = tf.sqrt(tf.maximum(1 - c * c, 0)) + pi_minus_theta * c

  def grad(dy):
    return dy * pi_minus_theta
  return value, grad


@tf.custom_gradient
def j0(c):
  """π - arccos(c), elementwise; `c` in [-1, 1].

  Example:
    >>> import numpy as np
    >>> float(j0(np.float64(0.)))  # = π / 2
    1.5707963267948966
  """
  c = tf.convert_to_tensor(c)
  value = math.pi - tf.acos(c)

  def grad(dy):
    one_minus = 1 - c * c
    ok = one_minus > 0
    return dy * tf.where(ok, tf.math.rsqrt(tf.where(ok, one_minus,
                                                    tf.ones_like(c))),
                         tf.zeros_like(c))
  return value, grad
