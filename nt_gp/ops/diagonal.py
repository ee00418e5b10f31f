"""Diagonals and outer products of batch-last covariance tensors.

Shapes (S spatial dimensions, batch-last):
  full spatial:     (X, X', Y, Y', ..., N1[, N2])
  diagonal spatial: (X, Y, ..., N1[, N2])
"""
import numpy as np
import tensorflow as tf

from nt_gp.ops import static_shape

__all__ = ['variances', 'expand_variance', 'expand_block_variance',
           'spatial_diagonal', 'outer', 'add_to_spatial_diagonal']


def spatial_diagonal(cov: tf.Tensor, n_spatial: int,
                     batch_ndim: int) -> tf.Tensor:
  """Takes the diagonal of every pair of spatial axes.

  Args:
    cov: `(X, X, Y, Y, ..., *batch)` with `n_spatial` pairs.
    n_spatial: number of spatial dimensions.
    batch_ndim: number of trailing batch axes (1 or 2).

  Returns:
    `(X, Y, ..., *batch)`.

  Example:
    >>> import numpy as np
    >>> c = np.arange(16.).reshape(2, 2, 2, 2, 1)
    >>> spatial_diagonal(c, 2, 1)[..., 0].numpy().tolist()
    [[0.0, 3.0], [12.0, 15.0]]
  """
  if n_spatial == 0:
    return cov
  cov = tf.convert_to_tensor(cov)
  sizes = [cov.shape[2 * i] for i in range(n_spatial)]
  batch = static_shape.dims(cov, 2 * n_spatial, 2 * n_spatial + batch_ndim)
  merged = tf.reshape(cov, [s * s for s in sizes] + batch)
  for i, s in enumerate(sizes):
    merged = tf.gather(merged, np.arange(s) * (s + 1), axis=i)
  return merged


def variances(cov: tf.Tensor, diagonal_batch: bool, diagonal_spatial: bool,
              n_spatial: int) -> tf.Tensor:
  """Per-input, per-position variances `(*spatial, N)` of a `cov1`/`cov2`."""
  if cov is None:
    return None
  if not diagonal_batch:
    cov = tf.linalg.diag_part(cov)
  if diagonal_spatial:
    return cov
  return spatial_diagonal(cov, n_spatial, 1)


def expand_variance(var: tf.Tensor, side: int, diagonal_spatial: bool,
                    n_spatial: int, batch_pair: bool) -> tf.Tensor:
  """Reshapes variances `(*spatial, N)` to broadcast against a covariance.

  Args:
    var: `(X, Y, ..., N)` variances.
    side: 0 for the first index of each pair, 1 for the second.
    diagonal_spatial: layout of the target covariance.
    n_spatial: number of spatial dimensions.
    batch_pair: whether the target has two trailing batch axes `(N1, N2)`
      (`nngp`, full-batch `cov`) or one (diagonal-batch `cov`).

  Returns:
    `var` reshaped with singleton axes so that it broadcasts.
  """
  shape = []
  if diagonal_spatial:
    shape = [var.shape[i] for i in range(n_spatial)]
  else:
    for i in range(n_spatial):
      pair = [var.shape[i], 1] if side == 0 else [1, var.shape[i]]
      shape += pair
  if batch_pair:
    shape += [-1, 1] if side == 0 else [1, -1]
  else:
    shape += [-1]
  return tf.reshape(var, shape)


def expand_block_variance(var: tf.Tensor, side: int, diagonal_spatial: bool,
                          n_spatial: int) -> tf.Tensor:
  """Reshapes per-block-pair variances `(*spatial, K, b)` to broadcast against
  a packed covariance `(*spatial_pairs, K, b, b)` (see `nt_gp.ops.packing`)."""
  shape = []
  if diagonal_spatial:
    shape = [var.shape[i] for i in range(n_spatial)]
  else:
    for i in range(n_spatial):
      shape += [var.shape[i], 1] if side == 0 else [1, var.shape[i]]
  k, b = var.shape[-2], var.shape[-1]
  shape += [k, b, 1] if side == 0 else [k, 1, b]
  return tf.reshape(var, shape)


def outer(a: tf.Tensor, b: tf.Tensor, op, diagonal_spatial: bool,
          n_spatial: int, batch_pair: bool) -> tf.Tensor:
  """`op(a[p, n1], b[p', n2])` in the batch-last layout of a covariance.

  The result broadcasts against a covariance between the positions of `a`
  and `b`: `(X, X', Y, Y', ..., N1, N2)` (`diagonal_spatial`: only `p ==
  p'`, `(X, Y, ..., N1, N2)`), or with one batch axis `n1 == n2` if not
  `batch_pair`. The product is formed over flattened positions and then
  transposed into the interleaved layout, since TensorFlow's CPU kernels do
  not broadcast tensors with many alternating unit axes.

  Args:
    a, b: `(*spatial, N)` tensors (an axis of size 1 broadcasts).
    op: elementwise binary op, e.g. `tf.multiply` or `tf.logical_or`.
    diagonal_spatial: layout of the target covariance.
    n_spatial: number of spatial dimensions.
    batch_pair: whether the target has two batch axes.

  Example:
    >>> import tensorflow as tf
    >>> a = tf.constant([[1.], [2.]])               # 2 positions, 1 input
    >>> outer(a, a, tf.multiply, False, 1, True)[..., 0, 0].numpy().tolist()
    [[1.0, 2.0], [2.0, 4.0]]
  """
  s = n_spatial
  if diagonal_spatial or s == 0:
    if batch_pair:
      return op(a[..., :, None], b[..., None, :])
    return op(a, b)
  sa, sb = a.shape[:s].as_list(), b.shape[:s].as_list()
  na, nb = a.shape[s], b.shape[s]
  if batch_pair:
    out = op(tf.reshape(a, [-1, 1]), tf.reshape(b, [1, -1]))
    out = tf.reshape(out, sa + [na] + sb + [nb])
    perm = [ax for i in range(s) for ax in (i, s + 1 + i)] + [s, 2 * s + 1]
  else:
    out = op(tf.reshape(a, [-1, 1, na]), tf.reshape(b, [1, -1, nb]))
    out = tf.reshape(out, sa + sb + [max(na, nb)])
    perm = [ax for i in range(s) for ax in (i, s + i)] + [2 * s]
  return tf.transpose(out, perm)


def add_to_spatial_diagonal(cov: tf.Tensor, value, n_spatial: int,
                            diagonal_spatial: bool) -> tf.Tensor:
  """Adds `value` where every spatial pair index coincides (unshared weights)."""
  if diagonal_spatial or n_spatial == 0:
    return cov + value
  eye = None
  for i in range(n_spatial):
    e = tf.eye(cov.shape[2 * i], dtype=cov.dtype)
    shape = [1] * (2 * n_spatial)
    shape[2 * i], shape[2 * i + 1] = cov.shape[2 * i], cov.shape[2 * i]
    e = tf.reshape(e, shape)
    eye = e if eye is None else eye * e
  batch_ndim = cov.shape.rank - 2 * n_spatial
  eye = tf.reshape(eye, eye.shape.as_list() + [1] * batch_ndim)
  return cov + value * eye
