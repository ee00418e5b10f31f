r"""Unbiased sketches of inner products and tensor products (SRHT).

The subsampled randomized Hadamard transform of `x` (dimension `d`, padded
with zeros to `n = 2^k >= d`) is ``s(x) = (H D x)[rows]`` with `D` random
signs, `H` the `n x n` Hadamard matrix (entries ±1) and `m` rows drawn
uniformly. For every row, ``E_D[s(x)_i s(y)_i] = x · y``, so

* projection ``P x = s(x) / sqrt(m)``: ``E[P x · P y] = x · y``;
* TensorSRHT ``T(a, b) = s_1(a) ⊙ s_2(b) / sqrt(m)`` with independent signs:
  ``E[T(a, b) · T(a', b')] = (a · a') (b · b')`` — a sketch of ``a ⊗ b``
  (dimension `d e`) in dimension `m` (Ahle et al. 2020; Zandieh et al. 2021);
* powers ``T_k(u) = T(T_{k-1}(u), u)``, ``T_1(u) = P u``:
  ``E[T_k(u) · T_k(v)] = (u · v)^k``, and for `j < k` ``E[T_j(u) · T_k(v)]
  = 0`` (the fresh signs of the last factor), so a weighted sum of powers
  sketches a power series (the degree-by-degree part of PolySketch).

A transform costs `O(n log n)` per vector (Kronecker factors of `H`
applied as small dense matmuls) and stores `O(n + m)` numbers, against
`O(d m)` for a dense random matrix; small transforms, where a dense ±1
matrix costs fewer multiply-adds, use one (same law per coordinate). Feature tensors have the feature axis
last; leading axes (batch, spatial positions) are carried along.
"""
import math

import numpy as np
import scipy.linalg
import tensorflow as tf

from nt_gp.features.random import RandomMatrices

__all__ = ['srht_params', 'srht', 'project', 'tensor_sketch',
           'tensor_sketch_params', 'projection_params', 'hadamard',
           'matmul_last']

# Largest dense Hadamard factor applied as one matmul.
_FACTOR = 128


def _factors(n: int):
  """Powers of two multiplying to `n`, each at most `_FACTOR`."""
  out = []
  while n > 1:
    f = min(n, _FACTOR)
    out.append(f)
    n //= f
  return out or [1]


def hadamard(x):
  """`x @ H` on the last axis (length a power of two), `H` unnormalised.

  Example:
    >>> import numpy as np
    >>> x = tf.constant(np.eye(4))
    >>> hadamard(x).numpy().astype(int).tolist()[1]
    [1, -1, 1, -1]
  """
  n = x.shape[-1]
  factors = _factors(n)
  lead = tf.shape(x)[:-1]
  y = tf.reshape(x, [-1] + factors)
  for axis, f in enumerate(factors):
    h = tf.constant(scipy.linalg.hadamard(f), x.dtype)
    y = tf.tensordot(y, h, [[axis + 1], [0]])
    # tensordot moves the transformed axis last; restore the order.
    perm = ([0] + list(range(1, axis + 1)) + [len(factors)] +
            list(range(axis + 1, len(factors))))
    y = tf.transpose(y, perm)
  return tf.reshape(y, tf.concat([lead, [n]], 0))


# Dense ±1 matrices up to this many entries replace an SRHT when they cost
# fewer multiply-adds (small transforms: the Hadamard factors cost
# `n (f_1 + f_2 + ...)` per vector whatever the output size).
_DENSE_MAX = 1 << 24


def srht_params(rng: RandomMatrices, in_dim: int, out_dim: int):
  """Parameters of one random sign transform `s` from `in_dim` to `out_dim`.

  An SRHT `(signs (n,) float64, rows (out_dim,) int64)`, or, when cheaper, a
  dense `(in_dim, out_dim)` matrix of independent ±1 entries `(R,)` — the
  same law per coordinate: ``E[s(x)_i s(y)_i] = x · y``.

  Example:
    >>> signs, rows = srht_params(RandomMatrices(0), 1000, 5000)
    >>> signs.shape, rows.shape
    ((1024,), (5000,))
    >>> srht_params(RandomMatrices(0), 3, 5)[0].shape   # small: dense
    (3, 5)
  """
  n = 1 << max(0, math.ceil(math.log2(max(in_dim, 1))))
  dense_cost = in_dim * out_dim
  if dense_cost <= _DENSE_MAX and dense_cost <= n * (sum(_factors(n)) + 1):
    return (rng.signs((in_dim, out_dim)),)
  return rng.signs((n,)), rng.integers(n, (out_dim,))


def matmul_last(x, mat):
  """`x @ mat` on the last axis of `x` (any number of leading axes).

  Example:
    >>> matmul_last(tf.ones((2, 3, 4)), tf.ones((4, 5))).shape
    TensorShape([2, 3, 5])
  """
  if x.shape.rank == 2:
    return tf.matmul(x, mat)
  lead = tf.shape(x)[:-1]
  out = tf.matmul(tf.reshape(x, [-1, x.shape[-1]]), mat)
  return tf.reshape(out, tf.concat([lead, [mat.shape[-1]]], 0))


def srht(x, params):
  """``(H D x)[rows]`` (or ``x R``) on the last axis: `(..., d) -> (..., m)`."""
  if len(params) == 1:
    return matmul_last(x, params[0])
  signs, rows = params
  n = signs.shape[0]
  d = x.shape[-1]
  if d < n:
    pad = [[0, 0]] * (x.shape.rank - 1) + [[0, n - d]]
    x = tf.pad(x, pad)
  return tf.gather(hadamard(x * signs), rows, axis=-1)


def projection_params(rng: RandomMatrices, in_dim: int, out_dim: int):
  """Parameters of `project` from `in_dim` to `out_dim`."""
  return srht_params(rng, in_dim, out_dim)


def project(x, params):
  """Random projection of the last axis, `(..., d) -> (..., m)`, with
  ``E[P x · P y] = x · y``.

  Example:
    >>> params = projection_params(RandomMatrices(0), 3, 4)
    >>> params = tf.nest.map_structure(tf.constant, params)
    >>> project(tf.ones((2, 3), tf.float64), params).shape
    TensorShape([2, 4])
  """
  m = params[-1].shape[-1]
  return srht(x, params) * tf.cast(1 / math.sqrt(m), x.dtype)


def tensor_sketch_params(rng: RandomMatrices, dim_a: int, dim_b: int,
                         out_dim: int):
  """Parameters of `tensor_sketch` of `(dim_a,) ⊗ (dim_b,)` to `out_dim`."""
  return (srht_params(rng, dim_a, out_dim), srht_params(rng, dim_b, out_dim))


def tensor_sketch(a, b, params):
  """TensorSRHT of `a ⊗ b` on the last axis: `(..., d), (..., e) -> (..., m)`.

  Example:
    >>> p = tensor_sketch_params(RandomMatrices(0), 3, 2, 5)
    >>> p = tf.nest.map_structure(tf.constant, p)
    >>> a, b = tf.ones((4, 3), tf.float64), tf.ones((4, 2), tf.float64)
    >>> tensor_sketch(a, b, p).shape
    TensorShape([4, 5])
  """
  m = params[0][-1].shape[-1]
  return srht(a, params[0]) * srht(b, params[1]) * tf.cast(
      1 / math.sqrt(m), a.dtype)
