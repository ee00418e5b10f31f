r"""Hermite coefficients of an activation as functions of the input variance.

With the normalised probabilists' Hermite polynomials
``h_k = He_k / sqrt(k!)`` (orthonormal under ``z ~ N(0, 1)``), an activation
at variance `q` expands as ``σ(sqrt(q) z) = Σ_k a_k(q) h_k(z)`` with
``a_k(q) = E[σ(sqrt(q) z) h_k(z)]``, and Mehler's formula gives the dual
kernel of two jointly Gaussian inputs with variances `q1`, `q2` and
correlation `ρ` (Han et al. 2022):

    E[σ(u) σ(v)] = Σ_k a_k(q1) a_k(q2) ρ^k.

The coefficients are computed by Gauss-Hermite quadrature with `nodes`
points; the series is truncated after `degree`. `truncation` reports the
fraction of ``E[σ(sqrt(q) z)²] = Σ_k a_k(q)²`` that the truncated terms
carry, which bounds the relative truncation error of the kernel on the
diagonal.
"""
import functools
import math

import numpy as np
import tensorflow as tf

__all__ = ['HermiteExpansion', 'derivative']


def derivative(fn):
  """`x -> fn'(x)` elementwise, by TensorFlow autodiff of an elementwise `fn`.

  Example:
    >>> float(derivative(tf.sin)(tf.constant(0.)))
    1.0
  """
  def dfn(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = fn(x)
    return tape.gradient(y, x,
                         unconnected_gradients=tf.UnconnectedGradients.ZERO)
  return dfn


@functools.lru_cache(maxsize=16)
def _quadrature(nodes: int):
  z, w = np.polynomial.hermite_e.hermegauss(nodes)
  return z, w / math.sqrt(2 * math.pi)


class HermiteExpansion:
  """Hermite coefficients `a_k(q)`, `k = 0..degree`, of an activation.

  Args:
    fn: elementwise activation on tensors.
    degree: last degree kept (>= 0).
    nodes: Gauss-Hermite nodes of the quadrature.

  Example:
    >>> import numpy as np
    >>> exp = HermiteExpansion(tf.sin, degree=5, nodes=64)
    >>> a = exp.coefficients(tf.constant([1.], tf.float64)).numpy()[0]
    >>> # sin(z) = e^{-1/2} Σ_{k odd} (-1)^{(k-1)/2} h_k(z) / sqrt(k!)
    >>> exact = [0, 1, 0, -1 / np.sqrt(6), 0, 1 / np.sqrt(120)]
    >>> bool(np.allclose(a, np.exp(-0.5) * np.array(exact), atol=1e-12))
    True
  """

  def __init__(self, fn, degree: int, nodes: int):
    self.fn = fn
    self.degree = int(degree)
    z, w = _quadrature(int(nodes))
    h = np.zeros((len(z), self.degree + 1))
    h[:, 0] = 1.
    if self.degree >= 1:
      h[:, 1] = z
    for k in range(1, self.degree):
      h[:, k + 1] = (z * h[:, k] - math.sqrt(k) * h[:, k - 1]) / math.sqrt(
          k + 1)
    self.nodes = z
    self.weighted = w[:, None] * h          # (nodes, degree + 1)
    self.weights = w

  def _values(self, fn, q):
    z = tf.constant(self.nodes, q.dtype)
    return fn(tf.sqrt(tf.maximum(q, 0))[..., None] * z)

  def coefficients(self, q, fn=None):
    """`a_k(q)` for variances `q` of shape `(...)`: `(..., degree + 1)`."""
    values = self._values(self.fn if fn is None else fn, q)
    return tf.tensordot(values, tf.constant(self.weighted, q.dtype), 1)

  def second_moment(self, q, fn=None):
    """``E[σ(sqrt(q) z)²]`` by the same quadrature, shape `(...)`."""
    values = self._values(self.fn if fn is None else fn, q)
    return tf.tensordot(tf.square(values), tf.constant(self.weights, q.dtype),
                        1)

  def truncation(self, q, fn=None):
    """Share of ``E[σ(sqrt(q) z)²]`` in degrees above `degree`, shape `(...)`.

    Example:
      >>> exp = HermiteExpansion(tf.sin, degree=9, nodes=64)
      >>> float(exp.truncation(tf.constant(1., tf.float64))) < 1e-7
      True
    """
    a = self.coefficients(q, fn)
    total = self.second_moment(q, fn)
    kept = tf.reduce_sum(tf.square(a), -1)
    safe = tf.where(total > 0, total, tf.ones_like(total))
    return tf.where(total > 0, tf.maximum(total - kept, 0) / safe,
                    tf.zeros_like(total))
