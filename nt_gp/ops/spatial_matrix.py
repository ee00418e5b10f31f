"""Batch-last covariances as matrices over (groups of) spatial positions.

Layers that mix positions (attention, graph aggregation) act on a covariance
``K[x, x', y, y', ..., n1, n2]`` as on a matrix between the positions of a
group of spatial dimensions. `to_grouped` moves the batch axes first, the
grouped dimensions' first and second indices next (each flattened into one
axis) and all other spatial axes last (flattened into one axis):

  ``(X, X', Y, Y', ..., *batch) -> (*batch, V, V', R)``

with ``V`` the number of positions of the grouped dimensions and ``R`` the
product of the sizes of the remaining interleaved axes. `from_grouped` is the
inverse.
"""
from typing import Sequence

import numpy as np
import tensorflow as tf

from nt_gp.ops import static_shape

__all__ = ['to_grouped', 'from_grouped', 'to_matrix', 'from_matrix']


def _perm(n_spatial: int, group: Sequence[int], batch_ndim: int):
  left = [2 * i for i in group]
  right = [2 * i + 1 for i in group]
  rest = [a for i in range(n_spatial) if i not in group
          for a in (2 * i, 2 * i + 1)]
  batch = list(range(2 * n_spatial, 2 * n_spatial + batch_ndim))
  return batch + left + right + rest


def to_grouped(t: tf.Tensor, sizes: Sequence[int], group: Sequence[int],
               batch_ndim: int) -> tf.Tensor:
  """Reshapes a full-spatial batch-last covariance to `(*batch, V, V', R)`.

  Args:
    t: `(X, X', Y, Y', ..., *batch)` tensor with `len(sizes)` spatial pairs
      and `batch_ndim` trailing batch axes.
    sizes: spatial sizes `(X, Y, ...)`.
    group: indices of the spatial dimensions to flatten into `V`.
    batch_ndim: 1 or 2.

  Returns:
    `(*batch, V, V, R)` tensor.

  Example:
    >>> import numpy as np
    >>> t = np.arange(2 * 2 * 3 * 3 * 4.).reshape(2, 2, 3, 3, 4)
    >>> tuple(to_grouped(t, (2, 3), (1,), 1).shape)
    (4, 3, 3, 4)
  """
  t = tf.convert_to_tensor(t)
  s = len(sizes)
  batch = static_shape.dims(t, 2 * s, 2 * s + batch_ndim)
  v = int(np.prod([sizes[i] for i in group], dtype=np.int64))
  t = tf.transpose(t, _perm(s, group, batch_ndim))
  return tf.reshape(t, batch + [v, v, -1])


def from_grouped(m: tf.Tensor, sizes: Sequence[int], group: Sequence[int],
                 batch_ndim: int) -> tf.Tensor:
  """Inverse of `to_grouped`: `(*batch, V, V', R)` to `(X, X', ..., *batch)`.

  Example:
    >>> import numpy as np
    >>> t = np.random.RandomState(0).randn(2, 2, 3, 3, 4)
    >>> g = to_grouped(t, (2, 3), (1,), 1)
    >>> bool(np.all(from_grouped(g, (2, 3), (1,), 1).numpy() == t))
    True
  """
  m = tf.convert_to_tensor(m)
  s = len(sizes)
  batch = static_shape.dims(m, 0, batch_ndim)
  rest = [sizes[i] for i in range(s) if i not in group for _ in (0, 1)]
  shape = batch + [sizes[i] for i in group] * 2 + rest
  t = tf.reshape(m, shape)
  perm = _perm(s, group, batch_ndim)
  return tf.transpose(t, np.argsort(perm).tolist())


def to_matrix(t: tf.Tensor, sizes: Sequence[int], batch_ndim: int):
  """`(X, X', Y, Y', ..., *batch)` to `(*batch, P, P')` over all positions.

  Example:
    >>> import numpy as np
    >>> tuple(to_matrix(np.zeros((2, 2, 3, 3, 5, 4)), (2, 3), 2).shape)
    (5, 4, 6, 6)
  """
  g = to_grouped(t, sizes, tuple(range(len(sizes))), batch_ndim)
  return tf.squeeze(g, -1)   # one operation to trace (`g[..., 0]`: four)


def from_matrix(m: tf.Tensor, sizes: Sequence[int], batch_ndim: int):
  """Inverse of `to_matrix`.

  Example:
    >>> import numpy as np
    >>> tuple(from_matrix(np.zeros((5, 4, 6, 6)), (2, 3), 2).shape)
    (2, 2, 3, 3, 5, 4)
  """
  return from_grouped(tf.expand_dims(m, -1), sizes,
                      tuple(range(len(sizes))), batch_ndim)
