"""The `Sign` nonlinearity.

For z ~ GP with variances q11, q22 and covariance q12, θ = arccos(q12 /
sqrt(q11 q22)):

  q12' = E[sign(z1) sign(z2)] = 1 - 2θ/π,      ntk' = 0

(the derivative of `sign` is zero almost everywhere). A zero variance gives
``sign(0) = 0`` and a zero covariance.

Covariances of a batch with itself follow the same formula. (neural-tangents
0.6.5 instead sets every non-zero entry of `cov1`/`cov2` to 1, which agrees on
variances but not on the off-diagonal entries kept with
``diagonal_batch=False`` or full spatial covariances.)
"""
import math

import tensorflow as tf

from nt_gp.ops.safe_math import safe_atan2, sqrt_gram_det
from nt_gp.stax.elementwise import (elementwise, map_covariances,
                                    pin_self_covariances)
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking

__all__ = ['Sign']


@layer
@supports_masking(remask_kernel=False)
def Sign():
  """Sign function, ``sign(x)`` (-1, 0 or 1).

  Returns:
    `(init_fn, apply_fn, kernel_fn)`. The NTK after `Sign` is zero.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Sign())
    >>> x = np.array([[1., 0.], [0., 1.]])
    >>> k = kernel_fn(x, get='nngp').numpy()   # orthogonal inputs: θ = π/2
    >>> (abs(k) + 0.).round(6).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
  """
  def q_map(q12, q11, q22, ntk):
    root = sqrt_gram_det(q12, q11, q22)
    angles = safe_atan2(root, q12, math.pi / 2)
    out = 1 - angles * (2 / math.pi)
    if ntk is not None:
      ntk = tf.zeros_like(ntk)
    return out, ntk

  def diag(q):
    return tf.where(tf.equal(q, 0), tf.zeros_like(q), tf.ones_like(q))

  def rule(k):
    return pin_self_covariances(map_covariances(k, q_map, diag_fn=diag))

  return elementwise(tf.sign, 'Sign', rule)
