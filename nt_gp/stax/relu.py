"""Piecewise-linear nonlinearities: `ABRelu`, `Relu`, `LeakyRelu`, `Abs`.

For z ~ GP with variances q11, q22 and covariance q12, c = q12 / sqrt(q11 q22),
θ = arccos(c), the map of `a min(x, 0) + b max(x, 0)` is (Cho & Saul 2009;
Tsuchida et al. 2018)

  q12' = sqrt(q11 q22) [ (a - b)² / (2π) (sqrt(1 - c²) - θ c) + (a² + b²) / 2 c ]
  ntk' = ntk [ (a² + b²) / 2 - (a - b)² / (2π) θ ].
"""
import math

import tensorflow as tf

from nt_gp.ops import arccos
from nt_gp.stax import hparams
from nt_gp.stax.elementwise import elementwise, map_covariances
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking

__all__ = ['ABRelu', 'Relu', 'LeakyRelu', 'Abs']


@layer
@supports_masking(remask_kernel=False)
def ABRelu(a, b, do_stabilize: bool = False):
  """`a * min(x, 0) + b * max(x, 0)`.

  Args:
    a: slope for x < 0 (number or tensor).
    b: slope for x > 0 (number or tensor).
    do_stabilize: rescale covariances by their maximum before the map (helps
      very deep networks in low precision).

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.ABRelu(-1., 1.))
    >>> float(kernel_fn(np.ones((1, 1)), get='nngp')[0, 0])  # E[|z|²], z~N(0,1)
    1.0
  """
  return _ab_relu(a, b, do_stabilize)


@layer
@supports_masking(remask_kernel=False)
def Relu(do_stabilize: bool = False):
  """ReLU, `max(x, 0)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu())
    >>> float(kernel_fn(np.ones((1, 1)), get='nngp')[0, 0])  # E[relu(z)²]
    0.5
  """
  return _ab_relu(0., 1., do_stabilize)


@layer
@supports_masking(remask_kernel=False)
def LeakyRelu(alpha, do_stabilize: bool = False):
  """Leaky ReLU, `alpha * min(x, 0) + max(x, 0)`.

  Example:
    >>> from nt_gp import stax
    >>> layer = stax.LeakyRelu(0.1)
  """
  return _ab_relu(alpha, 1., do_stabilize)


@layer
@supports_masking(remask_kernel=False)
def Abs(do_stabilize: bool = False):
  """Absolute value, `|x|`.

  Example:
    >>> from nt_gp import stax
    >>> layer = stax.Abs()
  """
  return _ab_relu(-1., 1., do_stabilize)


def _ab_relu(a, b, do_stabilize):
  """The layer functions of `ABRelu`."""
  def fn(x):
    dtype = x.dtype
    return (hparams.cast(a, dtype) * tf.minimum(x, 0) +
            hparams.cast(b, dtype) * tf.maximum(x, 0))

  def rule(k):
    dtype = k.dtype
    if hparams.is_number(a) and hparams.is_number(b):
      # Plain numbers: two constants, not a dozen operations to trace.
      a_, b_ = float(a), float(b)
      factor = tf.constant((a_ - b_) ** 2 / (2 * math.pi), dtype)
      mean_sq = tf.constant((a_ ** 2 + b_ ** 2) / 2, dtype)
    else:
      a_, b_ = hparams.cast(a, dtype), hparams.cast(b, dtype)
      factor = tf.square(a_ - b_) / (2 * math.pi)
      mean_sq = (tf.square(a_) + tf.square(b_)) / 2
    scale = None
    if do_stabilize:
      scale = tf.maximum(tf.reduce_max(tf.abs(k.nngp)),
                         tf.cast(1e-12, dtype))
      k = k.map_covs(lambda t, _: t / scale, ntk=False)

    def q_map(q12, q11, q22, ntk):
      # q11, q22: (variance, sqrt, rsqrt), see `arccos.variance_roots`.
      j, theta = arccos.arc_terms(q12, q11[0], q22[0],
                                  roots=q11[1:] + q22[1:])
      out = factor * j + mean_sq * q12
      if ntk is not None:
        ntk = ntk * (mean_sq - factor * theta)
      return out, ntk

    k = map_covariances(k, q_map, diag_fn=lambda q: mean_sq * q,
                        factors=arccos.variance_roots)
    if do_stabilize:
      k = k.map_covs(lambda t, _: t * scale, ntk=False)
    return k
  return elementwise(fn, f'ABRelu({a}, {b})', rule, packed=True)
