"""Symmetric packing of covariances between a batch and itself.

When `x2` is `x1`, `nngp[..., a, b, i, j] = nngp[..., b, a, j, i]`: the entry
for the input pair (j, i) is that of (i, j) with the spatial positions
swapped. Only pairs i <= j are then propagated, flattened row-major on one
trailing axis of length N (N + 1) / 2, which halves the time and memory of
every layer. Convolutions, pooling and readouts act on the spatial axes and
commute with the swap; nonlinearities look up each pair's two variances.
"""
import numpy as np
import tensorflow as tf

__all__ = ['pair_indices', 'pack', 'unpack', 'swap_spatial_pairs']


def pair_indices(n: int):
  """`(i, j)` index arrays of the pairs i <= j, row-major.

  Example:
    >>> i, j = pair_indices(3)
    >>> i.tolist(), j.tolist()
    ([0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2])
  """
  return np.triu_indices(n)


def _pair_position(n: int):
  """(n, n) array: position of pair (min(i, j), max(i, j)) in packed order."""
  i, j = pair_indices(n)
  pos = np.zeros((n, n), np.int64)
  pos[i, j] = np.arange(len(i))
  pos[j, i] = np.arange(len(i))
  return pos


def pack(t: tf.Tensor) -> tf.Tensor:
  """`(..., N, N)` -> `(..., N (N + 1) / 2)`, keeping pairs i <= j."""
  n = t.shape[-1]
  i, j = pair_indices(n)
  flat = tf.reshape(t, tf.concat([tf.shape(t)[:-2], [n * n]], 0))
  return tf.gather(flat, i * n + j, axis=-1)


def swap_spatial_pairs(t: tf.Tensor, n_spatial: int) -> tf.Tensor:
  """Swaps the two axes of every spatial pair of a full-spatial covariance."""
  perm = []
  for k in range(n_spatial):
    perm += [2 * k + 1, 2 * k]
  perm += list(range(2 * n_spatial, t.shape.rank))
  return tf.transpose(t, perm)


def unpack(t: tf.Tensor, n: int, n_spatial: int,
           diagonal_spatial: bool) -> tf.Tensor:
  """`(..., N (N + 1) / 2)` -> `(..., N, N)`; see the module docstring.

  Example:
    >>> import numpy as np
    >>> full = np.array([[1., 2.], [2., 3.]])
    >>> unpack(pack(full), 2, 0, True).numpy().tolist()
    [[1.0, 2.0], [2.0, 3.0]]
  """
  if t is None or t.shape.rank == 0:
    return t
  pos = _pair_position(n).reshape(-1)
  upper = tf.gather(t, pos, axis=-1)
  if n_spatial and not diagonal_spatial:
    lower = tf.gather(swap_spatial_pairs(t, n_spatial), pos, axis=-1)
    below = np.tril(np.ones((n, n), bool), -1).reshape(-1)
    upper = tf.where(below, lower, upper)
  return tf.reshape(upper, tf.concat([tf.shape(t)[:-1], [n, n]], 0))
