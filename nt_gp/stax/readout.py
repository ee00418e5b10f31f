"""Readout layers that remove the spatial axes: `Flatten`, `GlobalAvgPool`,
`GlobalSumPool`.

`Flatten` only needs each position's covariance with itself (the mean over
the spatial diagonal), so a network ending in `Flatten` never forms the
position-by-position covariance. Global pooling averages over all pairs of
positions.
"""
import functools
import operator

import tensorflow as tf

from nt_gp.ops import diagonal
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking
from nt_gp.stax.requirements import Bool, Diagonal, requires
from nt_gp.stax.rule_spec import capabilities
from nt_gp.stax.shapes import make_init_fn

__all__ = ['Flatten', 'GlobalAvgPool', 'GlobalSumPool']


@layer
@supports_masking(remask_kernel=False)
def Flatten(batch_axis: int = 0, batch_axis_out: int = 0):
  """Flattens all non-batch axes into one feature axis.

  Args:
    batch_axis: batch axis of the inputs.
    batch_axis_out: 0 for `(N, features)` outputs, 1 for `(features, N)`.

  Example:
    >>> from nt_gp import stax
    >>> init_fn, _, _ = stax.Flatten()
    >>> init_fn(0, (2, 4, 4, 3))[0]
    (2, 48)
  """
  if batch_axis_out in (0, -2):
    batch_out, channel_out = 0, 1
  elif batch_axis_out in (1, -1):
    batch_out, channel_out = 1, 0
  else:
    raise ValueError(f'`batch_axis_out` must be 0 or 1, got {batch_axis_out}.')

  def shape_fn(input_shape):
    ba = batch_axis % len(input_shape)
    rest = [d for i, d in enumerate(input_shape) if i != ba]
    size = functools.reduce(operator.mul, rest, 1)
    return ((input_shape[ba], size) if batch_out == 0 else
            (size, input_shape[ba]))

  def apply_fn(params, inputs, **kwargs):
    x = tf.convert_to_tensor(inputs)
    ba = batch_axis % x.shape.rank
    perm = [ba] + [i for i in range(x.shape.rank) if i != ba]
    x = tf.reshape(tf.transpose(x, perm), [tf.shape(x)[ba], -1])
    return x if batch_out == 0 else tf.transpose(x)

  @requires(batch_axis=batch_axis, channel_axis=None,
            diagonal_spatial=Diagonal(output=Bool.YES))
  @capabilities(packed=True)
  def rule(k, **kwargs):
    n = k.n_spatial
    def trace(t, batch_ndim):
      if t.shape.rank == 0 or n == 0:
        return t
      if not k.diagonal_spatial:
        t = diagonal.spatial_diagonal(t, n, batch_ndim)
      return tf.reduce_mean(t, axis=list(range(n)))
    return k.map_covs(trace).replace(
        is_gaussian=False, is_reversed=False, batch_axis=batch_out,
        channel_axis=channel_out, diagonal_spatial=False)

  def mask_fn(mask, input_shape):
    mask = tf.broadcast_to(mask, input_shape)
    return apply_fn((), mask)

  return make_init_fn(shape_fn), apply_fn, rule, mask_fn


@layer
@supports_masking(remask_kernel=False)
def GlobalAvgPool(batch_axis: int = 0, channel_axis: int = -1):
  """Averages over (and removes) all spatial axes.

  Example:
    >>> from nt_gp import stax
    >>> init_fn, _, _ = stax.GlobalAvgPool()
    >>> init_fn(0, (2, 4, 4, 3))[0]
    (2, 3)
  """
  return _global_pool(True, batch_axis, channel_axis)


@layer
@supports_masking(remask_kernel=False)
def GlobalSumPool(batch_axis: int = 0, channel_axis: int = -1):
  """Sums over (and removes) all spatial axes.

  Example:
    >>> from nt_gp import stax
    >>> init_fn, _, _ = stax.GlobalSumPool()
    >>> init_fn(0, (2, 5, 3))[0]
    (2, 3)
  """
  return _global_pool(False, batch_axis, channel_axis)


def _global_pool(average, batch_axis, channel_axis):
  def spatial_axes(ndim):
    ba, ca = batch_axis % ndim, channel_axis % ndim
    return [i for i in range(ndim) if i not in (ba, ca)]

  def shape_fn(input_shape):
    ndim = len(input_shape)
    keep = (batch_axis % ndim, channel_axis % ndim)
    return tuple(d for i, d in enumerate(input_shape) if i in keep)

  def apply_fn(params, inputs, mask=None, **kwargs):
    x = tf.convert_to_tensor(inputs)
    axes = spatial_axes(x.shape.rank)
    if not average:
      return tf.reduce_sum(x, axes)
    if mask is None:
      return tf.reduce_mean(x, axes)
    keep = tf.cast(tf.logical_not(tf.broadcast_to(mask, tf.shape(x))), x.dtype)
    return tf.reduce_sum(x * keep, axes) / tf.maximum(
        tf.reduce_sum(keep, axes), 1.)

  @requires(batch_axis=batch_axis, channel_axis=channel_axis,
            diagonal_spatial=Diagonal(input=Bool.MAYBE, output=Bool.YES))
  @capabilities(packed=True)
  def rule(k, **kwargs):
    n = k.n_spatial
    ndim = len(k.shape1)
    m12, m11, m22 = k.mask_entries()

    def pool(t, mask):
      if t is None or t.shape.rank == 0 or n == 0:
        return t
      lead = n if k.diagonal_spatial else 2 * n
      axes = list(range(lead))
      if mask is None:
        out = tf.reduce_mean(t, axes) if average else tf.reduce_sum(t, axes)
        if average and k.diagonal_spatial:
          size = 1
          for a in axes:
            size *= t.shape[a]
          out = out / size
        return out
      keep = tf.cast(tf.logical_not(mask), t.dtype)
      total = tf.reduce_sum(t * keep, axes)
      if not average:
        return total
      count = tf.maximum(tf.reduce_sum(tf.broadcast_to(keep, tf.shape(t)),
                                       axes), 1.)
      out = total / count
      if k.diagonal_spatial:
        size = 1
        for a in axes:
          size *= t.shape[a]
        out = out / size
      return out

    batch_first = batch_axis % ndim < channel_axis % ndim
    return k.replace(nngp=pool(k.nngp, m12), ntk=pool(k.ntk, m12),
                     cov1=pool(k.cov1, m11), cov2=pool(k.cov2, m22),
                     batch_axis=0 if batch_first else 1,
                     channel_axis=1 if batch_first else 0,
                     is_reversed=False)

  def mask_fn(mask, input_shape):
    return tf.reduce_all(mask, spatial_axes(len(input_shape)))

  return make_init_fn(shape_fn), apply_fn, rule, mask_fn
