"""Covariance maps of convolutions, transposed convolutions and pooling.

Each function maps a covariance tensor whose leading axes are spatial —
`(X, X', Y, Y', ..., *batch)` (full) or `(X, Y, ..., *batch)` (diagonal) —
to the covariance of the layer's outputs. Trailing batch axes (one or two)
are carried along. `None` and 0-d tensors (an NTK that is still zero) pass
through unchanged.
"""
from typing import Sequence

import numpy as np
import tensorflow as tf

from nt_gp.ops import diagonal
from nt_gp.ops import spatial

__all__ = ['conv_cov', 'conv_transpose_cov', 'pool_cov', 'circular_fold',
           'embed_spatial_diagonal']


def _axes(j: int, diagonal_spatial: bool):
  return (j,) if diagonal_spatial else (2 * j, 2 * j + 1)


def _size(t, j, diagonal_spatial):
  return t.shape[j if diagonal_spatial else 2 * j]


def _pads(size, window, stride, padding):
  if padding == 'VALID':
    return (0, 0)
  return spatial.same_pads(size, window, stride)


def _skip(t):
  return t is None or t.shape.rank == 0


def conv_cov(t, filter_shape: Sequence[int], strides: Sequence[int],
             padding: str, diagonal_spatial: bool):
  """Covariance after a shared-weight convolution, normalised by the filter size.

  `out[a, b] = 1/|filter| Σ_d t[s a + d, s b + d]` per spatial dimension,
  with zero ('SAME'), no ('VALID') or periodic ('CIRCULAR') padding.

  Example:
    >>> import tensorflow as tf
    >>> t = tf.ones((4, 4, 1), tf.float64)  # one spatial dim (full), one batch axis
    >>> conv_cov(t, (3,), (1,), 'SAME', False)[..., 0].numpy()[0].tolist()
    [0.6666666666666666, 0.6666666666666666, 0.6666666666666666, 0.3333333333333333]
  """
  if _skip(t):
    return t
  t = tf.convert_to_tensor(t)
  pads = [_pads(_size(t, j, diagonal_spatial), k, s, padding)
          for j, (k, s) in enumerate(zip(filter_shape, strides))]
  if np.prod(filter_shape) <= _JOINT_MAX_OFFSETS:
    # One fused pass, no intermediate per dimension (less memory, faster).
    t = spatial.joint_shift_sum(
        t, [_axes(j, diagonal_spatial) for j in range(len(filter_shape))],
        filter_shape, strides, pads, circular=padding == 'CIRCULAR')
  else:
    for j, (k, s) in enumerate(zip(filter_shape, strides)):
      t = spatial.paired_shift_sum(t, _axes(j, diagonal_spatial), k, s,
                                   pads[j], circular=padding == 'CIRCULAR')
  return t / float(np.prod(filter_shape))


# Filters with at most this many offsets (3x3x3) are summed jointly; larger
# ones dimension by dimension (fewer additions).
_JOINT_MAX_OFFSETS = 27


def embed_spatial_diagonal(d, n_spatial: int):
  """`(X, Y, ..., *batch)` -> `(X, X, Y, Y, ..., *batch)`, zero off the diagonal."""
  batch_ndim = d.shape.rank - n_spatial
  out = d
  for j in range(n_spatial):
    axis = 2 * j + 1
    out = tf.expand_dims(out, axis)
    size = d.shape[j]
    shape = [1] * out.shape.rank
    shape[2 * j], shape[axis] = size, size
    out = out * tf.reshape(tf.eye(size, dtype=d.dtype), shape)
  del batch_ndim
  return out


def conv_local_cov(t, filter_shape, strides, padding, diagonal_spatial):
  """Covariance after an unshared (locally connected) convolution.

  Different positions use independent weights, so only the spatial diagonal
  survives; it equals that of the shared convolution.
  """
  if _skip(t):
    return t
  n = len(filter_shape)
  if diagonal_spatial:
    return conv_cov(t, filter_shape, strides, padding, True)
  batch_ndim = t.shape.rank - 2 * n
  d = diagonal.spatial_diagonal(t, n, batch_ndim)
  d = conv_cov(d, filter_shape, strides, padding, True)
  return embed_spatial_diagonal(d, n)


def circular_fold(t, axis: int, size: int):
  """Sums entries of `axis` congruent modulo `size`, centred, to length `size`.

  The transpose of circular padding of a transposed convolution.
  """
  length = t.shape[axis]
  reps = (-(-length // size)) // 2 * 2 + 1
  pad_lo = ((reps - 1) * size) // 2
  start = (length - size) // 2
  total = None
  for m in range(reps):
    offset = start + m * size - pad_lo      # t index of output 0 for shift m
    lo = max(0, -offset)
    hi = min(size, length - offset)
    if hi <= lo:
      continue
    part = spatial.take(t, axis, offset + lo, offset + hi)
    if lo or hi < size:
      pads = [[0, 0]] * t.shape.rank
      pads[axis] = [lo, size - hi]
      part = tf.pad(part, pads)
    total = part if total is None else total + part
  return total


def conv_transpose_cov(t, filter_shape, strides, padding, diagonal_spatial):
  """Covariance after a transposed convolution, normalised by the filter size."""
  if _skip(t):
    return t
  t = tf.convert_to_tensor(t)
  for j, (k, s) in enumerate(zip(filter_shape, strides)):
    axes = _axes(j, diagonal_spatial)
    size = _size(t, j, diagonal_spatial)
    pad_mode = 'VALID' if padding == 'CIRCULAR' else padding
    pads = spatial.conv_transpose_pads(k, s, pad_mode)
    t = spatial.dilate_axes(t, axes, s)
    t = spatial.paired_shift_sum(t, axes, k, 1, pads)
    if padding == 'CIRCULAR':
      for a in axes:
        t = circular_fold(t, a, size * s)
  return t / float(np.prod(filter_shape))


def pool_cov(t, window_shape, strides, padding, diagonal_spatial,
             average: bool, normalize_edges: bool):
  """Covariance after sum or average pooling.

  Full spatial: each axis of a pair is pooled independently. Diagonal spatial
  (valid only when off-diagonal covariances are zero): the diagonal is pooled
  and, for averages, divided by the window size once more.
  """
  if _skip(t):
    return t
  t = tf.convert_to_tensor(t)
  circular = padding == 'CIRCULAR'
  axes, windows, steps, all_pads, sizes = [], [], [], [], []
  extra = 1.
  for j, (w, s) in enumerate(zip(window_shape, strides)):
    size = _size(t, j, diagonal_spatial)
    pads = _pads(size, w, s, padding)
    for a in _axes(j, diagonal_spatial):   # each axis of a pair on its own
      axes.append((a,))
      windows.append(w)
      steps.append(s)
      all_pads.append(pads)
      sizes.append(size)
    if average and diagonal_spatial:
      extra *= w
  if np.prod(windows) <= _JOINT_MAX_OFFSETS:
    t = spatial.joint_shift_sum(t, axes, windows, steps, all_pads, circular)
  else:
    for (a,), w, s, pads in zip(axes, windows, steps, all_pads):
      t = spatial.window_sum(t, a, w, s, pads, circular)
  if average:
    # Each axis' window counts depend only on the output index along it.
    for (a,), w, s, pads, size in zip(axes, windows, steps, all_pads, sizes):
      t = t / _window_counts(size, w, s, pads, padding, normalize_edges, a, t)
    if extra != 1.:
      t = t / extra
  return t


def _window_counts(size, w, s, pads, padding, normalize_edges, axis, t):
  if padding == 'SAME' and normalize_edges:
    n = spatial.out_size(size, w, s, pads)
    starts = np.arange(n) * s - pads[0]
    counts = np.minimum(starts + w, size) - np.maximum(starts, 0)
    shape = [1] * t.shape.rank
    shape[axis] = n
    return tf.constant(counts.reshape(shape), t.dtype)
  return float(w)
