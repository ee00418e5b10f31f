"""`Erf` and `Sigmoid_like` nonlinearities (Williams 1997).

For `a erf(b x) + c` and z ~ GP(q), with q̃ = b² q,

  q12' = a² (2/π) arcsin(2 q̃12 / sqrt((1 + 2 q̃11)(1 + 2 q̃22))) + c²
  ntk' = a² b² ntk (4/π) / sqrt((1 + 2 q̃11)(1 + 2 q̃22) - 4 q̃12²).
"""
import math

import tensorflow as tf

from nt_gp.ops import fast_math
from nt_gp.stax import hparams
from nt_gp.stax.elementwise import elementwise, map_covariances
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking

__all__ = ['Erf', 'Sigmoid_like']


@layer
@supports_masking(remask_kernel=True)
def Erf(a=1., b=1., c=0.):
  """`a * erf(b * x) + c`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Erf())
    >>> k = float(kernel_fn(np.ones((1, 1)), get='nngp')[0, 0])
    >>> round(k, 6), round(float(2 / np.pi * np.arcsin(2 / 3)), 6)  # q = 1
    (0.464559, 0.464559)
  """
  return _erf(a, b, c)


@layer
@supports_masking(remask_kernel=True)
def Sigmoid_like():
  """`0.5 erf(x / 2.4020563531719796) + 0.5`, an erf fitted to the sigmoid.

  Example:
    >>> from nt_gp import stax
    >>> layer = stax.Sigmoid_like()
  """
  return _erf(0.5, 1 / 2.4020563531719796, 0.5)


def _erf(a, b, c):
  """The layer functions of `Erf`."""
  def fn(x):
    dtype = x.dtype
    return (hparams.cast(a, dtype) * tf.math.erf(hparams.cast(b, dtype) * x) +
            hparams.cast(c, dtype))

  def rule(k):
    dtype = k.dtype
    a_, b_, c_ = (hparams.cast(v, dtype) for v in (a, b, c))
    k = k.scale(tf.square(b_))

    def q_map(q12, q11, q22, ntk):
      prod = (1 + 2 * q11) * (1 + 2 * q22)
      rest = tf.maximum(prod - 4 * tf.square(q12), 0)
      out = (2 / math.pi) * fast_math.atan2(2 * q12, tf.sqrt(rest))
      if ntk is not None:
        safe = tf.where(rest > 0, rest, tf.ones_like(rest))
        ntk = ntk * tf.where(rest > 0, (4 / math.pi) * tf.math.rsqrt(safe),
                             tf.zeros_like(rest))
      return out, ntk

    def diag(q):
      return (2 / math.pi) * fast_math.atan2(q, tf.sqrt(q + 0.25))

    k = map_covariances(k, q_map, diag_fn=diag)
    return k.scale(tf.square(a_), tf.square(c_))
  return elementwise(fn, f'Erf({a}, {b}, {c})', rule, packed=True)
