"""Trigonometric nonlinearities: `Sin`, `Cos` and `Gabor`.

For z ~ GP with variances q11, q22, covariance q12 and s = q11 + q22:

* ``a sin(b x + c)`` (`Cos` is `Sin` with ``c + π/2``), with
  e± = exp(b² (±q12 - s/2)):

    q12' = a²/2 (e₊ - cos(2c) e₋),     ntk' = ntk a² b²/2 (e₊ + cos(2c) e₋);

* Gabor ``exp(-x²) sin(x)``, with p = q11 q22, Δ = 4 (p - q12²),
  D = 1 + 2s + Δ:

    q12' = exp(-(s + Δ + 2 q12) / (2D)) (exp(2 q12 / D) - 1) / (2 sqrt(D)).
"""
import math

import tensorflow as tf

from nt_gp.stax import hparams
from nt_gp.stax.elementwise import elementwise, map_covariances
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking

__all__ = ['Sin', 'Cos', 'Gabor']


def _sinusoid(a, b, c, phase: float, name: str):
  """The layer functions of `a sin(b x + c + phase)`; `phase` is 0 (`Sin`)
  or π/2 (`Cos`)."""
  for n, v in (('a', a), ('b', b), ('c', c)):
    hparams.check_hparam(n, v)

  def fn(x):
    dtype = x.dtype
    arg = hparams.cast(b, dtype) * x + hparams.cast(c, dtype)
    out = tf.cos(arg) if phase else tf.sin(arg)
    return hparams.cast(a, dtype) * out

  def rule(k):
    dtype = k.dtype
    a_, b_, c_ = (hparams.cast(v, dtype) for v in (a, b, c))
    half_a_sq = tf.square(a_) / 2
    b_sq = tf.square(b_)
    cos_2c = tf.cos(2 * (c_ + phase))

    def q_map(q12, q11, q22, ntk):
      half_sum = (q11 + q22) / 2
      plus = tf.exp(b_sq * (q12 - half_sum))
      minus = tf.exp(b_sq * (-q12 - half_sum)) * cos_2c
      out = half_a_sq * (plus - minus)
      if ntk is not None:
        ntk = ntk * (half_a_sq * b_sq * (plus + minus))
      return out, ntk

    def diag(q):
      return half_a_sq * (1 - tf.exp(-2 * b_sq * q) * cos_2c)

    return map_covariances(k, q_map, diag_fn=diag)

  name = f'{name}({hparams.fmt(a)}, {hparams.fmt(b)}, {hparams.fmt(c)})'
  return elementwise(fn, name, rule, packed=True)


@layer
@supports_masking(remask_kernel=True)
def Sin(a=1., b=1., c=0.):
  """``a sin(b x + c)``.

  Args:
    a: output scale (number, tensor or variable).
    b: input scale.
    c: phase shift.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Sin())
    >>> k = kernel_fn(np.ones((1, 1)), get='nngp')  # (1 - e⁻²) / 2
    >>> round(float(k[0, 0]), 6)
    0.432332
  """
  return _sinusoid(a, b, c, 0., 'Sin')


@layer
@supports_masking(remask_kernel=True)
def Cos(a=1., b=1., c=0.):
  """``a cos(b x + c)``, i.e. `Sin(a, b, c + π/2)`.

  Args:
    a: output scale (number, tensor or variable).
    b: input scale.
    c: phase shift.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Cos())
    >>> k = kernel_fn(np.ones((1, 1)), get='nngp')  # (1 + e⁻²) / 2
    >>> round(float(k[0, 0]), 6)
    0.567668
  """
  return _sinusoid(a, b, c, math.pi / 2, 'Cos')


@layer
@supports_masking(remask_kernel=False)
def Gabor():
  """Gabor function ``exp(-x²) sin(x)``.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, apply_fn, kernel_fn = stax.serial(stax.Dense(1), stax.Gabor())
    >>> k = kernel_fn(np.ones((1, 1)), get='nngp')
    >>> round(float(k[0, 0]), 6)   # (1 - e^(-2/5)) / (2 sqrt(5))
    0.073719
  """
  def fn(x):
    return tf.exp(-tf.square(x)) * tf.sin(x)

  def q_map(q12, q11, q22, ntk):
    prod = q11 * q22
    sum_ = q11 + q22
    q12_sq = tf.square(q12)
    diff = 4 * (prod - q12_sq)
    denom = 2 * sum_ + diff + 1
    exp_left = tf.exp(-(sum_ + diff + 2 * q12) / (2 * denom))
    exp_right = tf.exp(2 * q12 / denom)
    if ntk is not None:
      shared = 1 + 2 * sum_ + 4 * (q12_sq + prod)
      diff_term = 4 * q12 * (diff + 3 * sum_ + 2)
      t_dot = exp_left * ((shared - diff_term) + exp_right *
                          (shared + diff_term)) / denom ** 2.5
      ntk = ntk * (t_dot / 2)
    out = exp_left * (exp_right - 1) / (2 * tf.sqrt(denom))
    return out, ntk

  def diag(q):
    denom = 1 + 4 * q
    return (1 - tf.exp(-2 * q / denom)) / (2 * tf.sqrt(denom))

  def rule(k):
    return map_covariances(k, q_map, diag_fn=diag)

  return elementwise(fn, 'Gabor', rule, packed=True)
