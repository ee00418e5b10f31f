"""Helpers shared by spatial layers: axis bookkeeping on batch-last kernels."""
import tensorflow as tf

__all__ = ['permute_spatial', 'map_cov_tensors', 'spatial_sizes']


def spatial_sizes(shape, batch_axis, channel_axis):
  """Sizes of the spatial axes of an activation shape, in order."""
  ndim = len(shape)
  return [shape[i] for i in range(ndim)
          if i not in (batch_axis % ndim, channel_axis % ndim)]


def permute_spatial(t, perm, diagonal_spatial: bool):
  """Reorders the spatial dimensions of a batch-last covariance tensor.

  `perm[i]` is the old spatial dimension that becomes dimension `i`.
  """
  if t is None or t.shape.rank == 0 or list(perm) == sorted(perm):
    return t
  n = len(perm)
  lead = n if diagonal_spatial else 2 * n
  axes = []
  for p in perm:
    axes += [p] if diagonal_spatial else [2 * p, 2 * p + 1]
  return tf.transpose(t, axes + list(range(lead, t.shape.rank)))


def map_cov_tensors(k, fn):
  """Applies `fn(tensor, batch_ndim)` to nngp, ntk, cov1, cov2 of a kernel."""
  cb = 1 if k.diagonal_batch else 2
  return k.replace(nngp=fn(k.nngp, 2), ntk=fn(k.ntk, 2),
                   cov1=fn(k.cov1, cb), cov2=fn(k.cov2, cb))
