"""Exponential-type nonlinearities: `Exp`, `Gaussian`, `Rbf`, `ExpNormalized`.

For z ~ GP with variances q11, q22 and covariance q12 (s = q11 + q22):

* `Exp` ``a exp(b x)``:      q12' = a² exp(b² (s/2 + q12)),
                              ntk' = ntk a² b² exp(b² (s/2 + q12));
* `Gaussian` ``a exp(b x²)``: with det² = (1 - 2b q11)(1 - 2b q22) - 4b² q12²,
                              q12' = a² / det,  ntk' = ntk a² 4b² q12 / det³
  (for b > 0 the expectation diverges once 4 b q ≥ 1; the kernel is then
  +inf, as in neural-tangents);
* `Rbf`: q12' = exp(-γ (q11 + q22 - 2 q12)), ntk' = ntk 2γ q12';
* `ExpNormalized` (no finite-width function), with r = sqrt(q11 q22):
  q12' = r exp(γ (q12 / r + shift)), ntk' = ntk γ exp(γ (q12 / r + shift)).
"""
import math

import tensorflow as tf

from nt_gp.ops.safe_math import safe_sqrt
from nt_gp.stax import hparams
from nt_gp.stax.elementwise import elementwise, map_covariances
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking

__all__ = ['Exp', 'Gaussian', 'Rbf', 'ExpNormalized']


@layer
@supports_masking(remask_kernel=True)
def Exp(a=1., b=1.):
  """``a exp(b x)``.

  Args:
    a: output scale (number, tensor or variable).
    b: input scale.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Exp())
    >>> k = kernel_fn(np.ones((1, 1)), get='nngp')  # E[exp(2z)] = e²
    >>> round(float(k[0, 0]), 6)
    7.389056
  """
  hparams.check_hparam('a', a)
  hparams.check_hparam('b', b)

  def fn(x):
    dtype = x.dtype
    return hparams.cast(a, dtype) * tf.exp(hparams.cast(b, dtype) * x)

  def rule(k):
    dtype = k.dtype
    a_sq = tf.square(hparams.cast(a, dtype))
    b_sq = tf.square(hparams.cast(b, dtype))

    def q_map(q12, q11, q22, ntk):
      out = tf.exp(b_sq * ((q11 + q22) / 2 + q12))
      if ntk is not None:
        ntk = ntk * (b_sq * out)
      return out, ntk

    def diag(q):
      return tf.exp(2 * b_sq * q)

    return map_covariances(k, q_map, diag_fn=diag).scale(a_sq)

  return elementwise(fn, f'Exp({hparams.fmt(a)}, {hparams.fmt(b)})', rule,
                     packed=True)


@layer
@supports_masking(remask_kernel=True)
def Gaussian(a=1., b=-1.):
  """``a exp(b x²)``.

  Args:
    a: output scale (number, tensor or variable).
    b: exponent coefficient; ``b <= 0`` keeps the kernel finite for all
      variances (for ``b > 0`` entries with ``4 b q >= 1`` are +inf).

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Gaussian())
    >>> k = kernel_fn(np.ones((1, 1)), get='nngp')  # E[exp(-2z²)] = 1/sqrt(5)
    >>> round(float(k[0, 0]), 6)
    0.447214
  """
  hparams.check_hparam('a', a)
  hparams.check_hparam('b', b)

  def fn(x):
    dtype = x.dtype
    return hparams.cast(a, dtype) * tf.exp(hparams.cast(b, dtype) *
                                           tf.square(x))

  def rule(k):
    dtype = k.dtype
    a_sq = tf.square(hparams.cast(a, dtype))
    b_ = hparams.cast(b, dtype)
    factor = 4 * tf.square(b_)

    def q_map(q12, q11, q22, ntk):
      det = safe_sqrt((1 - 2 * b_ * q11) * (1 - 2 * b_ * q22) -
                      factor * tf.square(q12))
      if ntk is not None:
        ntk = ntk * (factor * q12 / (det * det * det))
      return 1 / det, ntk

    def diag(q):
      return 1 / safe_sqrt(1 - 4 * b_ * q)

    return map_covariances(k, q_map, diag_fn=diag).scale(a_sq)

  name = f'Gaussian({hparams.fmt(a)}, {hparams.fmt(b)})'
  return elementwise(fn, name, rule, packed=True)


@layer
@supports_masking(remask_kernel=True)
def Rbf(gamma=1.):
  """Dual activation of the RBF kernel: ``sqrt(2) sin(sqrt(2γ) x + π/4)``.

  After ``Dense(W_std=1)`` on `d`-dimensional inputs the NNGP is
  ``exp(-γ |x - x'|² / d)``.

  Args:
    gamma: inverse squared length scale, ``γ = 1 / (2 l²)`` (``>= 0``).

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Rbf(0.5))
    >>> x = np.array([[0., 0.], [1., 1.]])
    >>> round(float(kernel_fn(x, get='nngp')[0, 1]), 6)  # exp(-0.5 · 2 / 2)
    0.606531
  """
  hparams.check_hparam('gamma', gamma, lower=0.)

  def fn(x):
    dtype = x.dtype
    g = hparams.cast(gamma, dtype)
    return math.sqrt(2) * tf.sin(tf.sqrt(2 * g) * x + math.pi / 4)

  def rule(k):
    g = hparams.cast(gamma, k.dtype)

    def q_map(q12, q11, q22, ntk):
      out = tf.exp(g * (2 * q12 - (q11 + q22)))
      if ntk is not None:
        ntk = ntk * (2 * g * out)
      return out, ntk

    return map_covariances(k, q_map, diag_fn=tf.ones_like)

  return elementwise(fn, f'Rbf({hparams.fmt(gamma)})', rule, packed=True)


@layer
@supports_masking(remask_kernel=True)
def ExpNormalized(gamma=1., shift=-1., do_clip: bool = False):
  """The "Gaussian normalized kernel" (Shankar et al. 2020, p. 6).

  Maps covariances to ``r exp(γ (q12 / r + shift))`` with ``r = sqrt(q11 q22)``.
  It has no finite-width counterpart: `apply_fn` raises `NotImplementedError`.

  Args:
    gamma: exponent scale (number, tensor or variable).
    shift: shift of the normalised covariance.
    do_clip: clip the normalised covariance to ``[-1, 1]`` first.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.ExpNormalized())
    >>> x = np.array([[1., 0.], [0., 1.]])
    >>> kernel_fn(x, get='nngp').numpy().round(6).tolist()   # [[1/2, e⁻¹/2], ..]
    [[0.5, 0.18394], [0.18394, 0.5]]
  """
  hparams.check_hparam('gamma', gamma)
  hparams.check_hparam('shift', shift)
  if not isinstance(do_clip, bool):
    raise TypeError(f'`do_clip` must be a bool, got {do_clip!r}.')

  def rule(k):
    dtype = k.dtype
    g = hparams.cast(gamma, dtype)
    sh = hparams.cast(shift, dtype)

    def q_map(q12, q11, q22, ntk):
      root = safe_sqrt(q11 * q22, 1e-30)
      cos = q12 / root
      if do_clip:
        cos = tf.clip_by_value(cos, tf.cast(-1., dtype), tf.cast(1., dtype))
      e = tf.exp(g * (cos + sh))
      if ntk is not None:
        ntk = g * ntk * e
      return root * e, ntk

    return map_covariances(k, q_map)

  return elementwise(None, 'ExpNormalized', rule, packed=True)
