r"""Unbiased sketches of inner products and of tensor products.

With matrices of independent zero-mean, unit-variance entries (Gaussian or
±1), for vectors `a, a'` of dimension `d` and `b, b'` of dimension `e`:

* random projection ``P a = R a / sqrt(m)``, `R` of shape `(m, d)`:
  ``E[P a · P a'] = a · a'``;
* tensor-product sketch ``T(a, b) = (A a) ⊙ (B b) / sqrt(m)``, `A` `(m, d)`,
  `B` `(m, e)` independent: ``E[T(a, b) · T(a', b')] = (a · a') (b · b')``,
  a sketch of ``a ⊗ b`` (dimension `d e`) in dimension `m`. This is the
  tensor random projection behind TensorSRHT (Ahle et al. 2020; Zandieh et
  al. 2021), with dense ±1 matrices in place of randomized Hadamard
  transforms;
* powers ``T_k(u) = T(T_{k-1}(u), u)``, ``T_1(u) = u``:
  ``E[T_k(u) · T_k(v)] = (u · v)^k`` (the degree-k part of PolySketch, built
  as a chain of degree-2 sketches).

Feature tensors have the feature axis last; leading axes (batch, spatial
positions) are carried along. Matrices are stored transposed, `(d, m)`, so a
sketch is one matmul on the last axis.
"""
import numpy as np
import tensorflow as tf

from nt_gp.features.random import RandomMatrices

__all__ = ['project', 'tensor_sketch', 'projection_matrix',
           'tensor_sketch_matrices']


def projection_matrix(rng: RandomMatrices, in_dim: int, out_dim: int):
  """`(in_dim, out_dim)` float64 Gaussian matrix scaled by `1/sqrt(out_dim)`.

  Example:
    >>> projection_matrix(RandomMatrices(0), 3, 4).shape
    (3, 4)
  """
  return rng.gaussian((in_dim, out_dim)) / np.sqrt(out_dim)


def tensor_sketch_matrices(rng: RandomMatrices, dim_a: int, dim_b: int,
                           out_dim: int):
  """The two ±1 matrices of a tensor-product sketch, the first scaled by
  `1/sqrt(out_dim)`: `((dim_a, out_dim), (dim_b, out_dim))` float64.

  Example:
    >>> a, b = tensor_sketch_matrices(RandomMatrices(0), 3, 5, 4)
    >>> a.shape, b.shape
    ((3, 4), (5, 4))
  """
  return (rng.signs((dim_a, out_dim)) / np.sqrt(out_dim),
          rng.signs((dim_b, out_dim)))


def _last_axis_matmul(x, mat):
  """`x @ mat` on the last axis of `x` (any number of leading axes)."""
  if x.shape.rank == 2:
    return tf.matmul(x, mat)
  lead = tf.shape(x)[:-1]
  out = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), mat)
  return tf.reshape(out, tf.concat([lead, [mat.shape[-1]]], 0))


def project(x, mat):
  """Random projection of the last axis: `(..., d) -> (..., m)`.

  Args:
    x: `(..., d)` float tensor.
    mat: `(d, m)` tensor from `projection_matrix`, same dtype.

  Example:
    >>> import numpy as np
    >>> mat = projection_matrix(RandomMatrices(0), 3, 4)
    >>> project(tf.ones((2, 3), tf.float64), mat).shape
    TensorShape([2, 4])
  """
  return _last_axis_matmul(x, mat)


def tensor_sketch(a, b, mats):
  """Sketch of `a ⊗ b` on the last axis: `(..., d), (..., e) -> (..., m)`.

  Args:
    a: `(..., d)` float tensor.
    b: `(..., e)` float tensor with the same leading shape and dtype.
    mats: the pair from `tensor_sketch_matrices(rng, d, e, m)`.

  Example:
    >>> mats = tensor_sketch_matrices(RandomMatrices(0), 3, 2, 5)
    >>> a, b = tf.ones((4, 3), tf.float64), tf.ones((4, 2), tf.float64)
    >>> tensor_sketch(a, b, mats).shape
    TensorShape([4, 5])
  """
  return _last_axis_matmul(a, mats[0]) * _last_axis_matmul(b, mats[1])
