"""Convolution and pooling of covariance tensors over paired spatial axes.

The covariance of a convolution's outputs at positions (a, b) is the average
of the input covariance over *paired* shifts, ``out[a, b] = 1/k Σ_d
in[s a + d, s b + d]``, and pooling averages over independent shifts,
``out[a, b] = 1/w² Σ_{d, e} in[s a + d, s b + e]``. Both factorise over
spatial dimensions, so a 2-D filter is applied as two 1-D passes, each a sum
of `k` strided slices. With the batch axes innermost (the batch-last layout of
`nt_gp.kernel.Kernel`) every slice is a set of contiguous blocks, so the sums
stream through memory; XLA fuses the padding, slices and sums of a pass into
one loop.

All functions take `axis` arguments counted from the front of the tensor.
"""
from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

__all__ = ['same_pads', 'out_size', 'conv_transpose_pads', 'pad_axes', 'take',
           'paired_shift_sum', 'joint_shift_sum', 'window_sum', 'dilate_axes',
           'window_mask']


def same_pads(size: int, window: int, stride: int) -> Tuple[int, int]:
  """(low, high) zero padding of 'SAME' for one axis (as in TF and JAX)."""
  out = -(-size // stride)
  total = max((out - 1) * stride + window - size, 0)
  return total // 2, total - total // 2


def out_size(size: int, window: int, stride: int, pads: Tuple[int, int]) -> int:
  """Output size of a strided window over a padded axis."""
  n = size + pads[0] + pads[1] - window
  if n < 0:
    raise ValueError(f'A window of size {window} does not fit an axis of size '
                     f'{size} with padding {pads}.')
  return n // stride + 1


def conv_transpose_pads(window: int, stride: int, padding: str):
  """(low, high) padding of the dilated input of a transposed convolution."""
  if padding == 'SAME':
    total = window + stride - 2
    low = window - 1 if stride > window - 1 else -(-total // 2)
  elif padding == 'VALID':
    total = window + stride - 2 + max(window - stride, 0)
    low = window - 1
  else:
    raise ValueError(padding)
  return low, total - low


def pad_axes(x: tf.Tensor, axes: Sequence[int], pads: Tuple[int, int],
             circular: bool = False) -> tf.Tensor:
  """Pads each of `axes` by `pads` with zeros, or periodically (`circular`)."""
  if pads == (0, 0):
    return x
  if not circular:
    paddings = [[0, 0]] * x.shape.rank
    for a in axes:
      paddings[a] = list(pads)
    return tf.pad(x, paddings)
  for a in axes:
    size = x.shape[a]
    lo, hi = pads
    parts = []
    if lo:
      parts.append(take(x, a, size - lo, size))
    parts.append(x)
    if hi:
      parts.append(take(x, a, 0, hi))
    if lo > size or hi > size:
      raise ValueError('Circular padding larger than the axis.')
    x = tf.concat(parts, a)
  return x


def take(x, axis: int, start: int, stop: int, stride: int = 1) -> tf.Tensor:
  """`x[..., start:stop:stride, ...]` along one axis.

  Example:
    >>> import tensorflow as tf
    >>> take(tf.reshape(tf.range(6), (2, 3)), 1, 0, 3, 2).numpy().tolist()
    [[0, 2], [3, 5]]
  """
  rank = x.shape.rank
  begin = [0] * rank
  end = [0] * rank
  strides = [1] * rank
  begin[axis], end[axis], strides[axis] = start, stop, stride
  end_mask = sum(1 << i for i in range(rank) if i != axis)
  return tf.strided_slice(x, begin, end, strides, end_mask=end_mask)


def _slice_axes(x, axes, start, count, stride):
  begin = [0] * x.shape.rank
  end = [0] * x.shape.rank
  strides = [1] * x.shape.rank
  end_mask = 0
  for i in range(x.shape.rank):
    if i in axes:
      begin[i] = start
      end[i] = start + (count - 1) * stride + 1
      strides[i] = stride
    else:
      end_mask |= 1 << i
  return tf.strided_slice(x, begin, end, strides, end_mask=end_mask)


def paired_shift_sum(x: tf.Tensor, axes: Sequence[int], window: int,
                     stride: int, pads: Tuple[int, int],
                     circular: bool = False) -> tf.Tensor:
  """Σ_d x[s a + d, s b + d, ...] over the axes in `axes` (same shift on all).

  Args:
    x: covariance tensor.
    axes: the axes shifted together: one axis (a spatial diagonal) or a pair
      of axes (two positions of the same spatial dimension).
    window: filter size `k`.
    stride: filter stride `s`.
    pads: (low, high) padding applied to every axis in `axes`.
    circular: periodic instead of zero padding.

  Returns:
    The (unnormalised) sum; divide by `window` for the convolution kernel.

  Example:
    >>> import numpy as np
    >>> x = np.arange(9.).reshape(3, 3)
    >>> paired_shift_sum(x, (0, 1), 2, 1, (0, 0)).numpy().tolist()
    [[4.0, 6.0], [10.0, 12.0]]
  """
  x = tf.convert_to_tensor(x)
  size = x.shape[axes[0]]
  n = out_size(size, window, stride, pads)
  x = pad_axes(x, axes, pads, circular)
  total = None
  for d in range(window):
    part = _slice_axes(x, axes, d, n, stride)
    total = part if total is None else total + part
  return total


def joint_shift_sum(x: tf.Tensor, axes: Sequence[Sequence[int]],
                    windows: Sequence[int], strides: Sequence[int],
                    pads: Sequence[Tuple[int, int]],
                    circular: bool = False) -> tf.Tensor:
  """`paired_shift_sum` over several spatial dimensions at once.

  Sums one slice of the padded input per filter offset instead of one
  dimension after another: under XLA the padding, slices and sum fuse into a
  single pass that writes only the output, where the separable form
  materialises an intermediate tensor per dimension (and is slower on CPU for
  small filters).

  Args:
    x: covariance tensor.
    axes: per spatial dimension, the axes shifted together (see
      `paired_shift_sum`).
    windows, strides, pads: per spatial dimension.
    circular: periodic instead of zero padding.

  Example:
    >>> import numpy as np
    >>> x = np.arange(16.).reshape(4, 4)
    >>> joint_shift_sum(x, [(0,), (1,)], (2, 2), (1, 1), [(0, 0)] * 2
    ...                 ).numpy().tolist()[0]
    [10.0, 14.0, 18.0]
  """
  x = tf.convert_to_tensor(x)
  counts = [out_size(x.shape[ax[0]], k, st, pd)
            for ax, k, st, pd in zip(axes, windows, strides, pads)]
  if circular:
    for ax, pd in zip(axes, pads):
      x = pad_axes(x, ax, pd, circular=True)
    pads = [(0, 0)] * len(axes)
  parts = []
  for offsets in np.ndindex(*windows):
    # The zero padding is applied to each slice (the entries of this offset
    # that fall outside the input), never to the whole input: XLA fuses these
    # small pads into the sum, whereas a padded copy of the input would be
    # materialised once for all offsets.
    begin, end = [0] * x.shape.rank, list(x.shape)
    step = [1] * x.shape.rank
    paddings = [[0, 0] for _ in range(x.shape.rank)]
    empty = False
    for ax, d, n, st, (lo, _) in zip(axes, offsets, counts, strides, pads):
      size = x.shape[ax[0]]
      first = max(0, -((d - lo) // st))             # ceil((lo - d) / st)
      last = min(n - 1, (size - 1 - d + lo) // st)
      if last < first:
        empty = True
        break
      for a in ax:
        begin[a] = st * first + d - lo
        end[a] = st * last + d - lo + 1
        step[a] = st
        paddings[a] = [first, n - 1 - last]
    if empty:
      continue
    part = tf.strided_slice(x, begin, end, step)
    if any(p != [0, 0] for p in paddings):
      part = tf.pad(part, paddings)
    parts.append(part)
  if parts:
    total = tf.reduce_sum(tf.stack(parts), 0) if len(parts) > 1 else parts[0]
  else:       # every offset falls in the padding
    shape = list(x.shape)
    for ax, n in zip(axes, counts):
      for a in ax:
        shape[a] = n
    total = tf.zeros(shape, x.dtype)
  return total


def window_sum(x: tf.Tensor, axis: int, window: int, stride: int,
               pads: Tuple[int, int], circular: bool = False) -> tf.Tensor:
  """Σ_d x[s a + d] along one axis (a 1-D sum pool)."""
  return paired_shift_sum(x, (axis,), window, stride, pads, circular)


def dilate_axes(x: tf.Tensor, axes: Sequence[int], stride: int) -> tf.Tensor:
  """Inserts `stride - 1` zeros between entries along each of `axes`."""
  if stride == 1:
    return x
  for a in axes:
    shape = tf.shape(x)
    size = x.shape[a]
    zeros_shape = tf.concat([shape[:a + 1], [stride - 1], shape[a + 1:]], 0)
    y = tf.expand_dims(x, a + 1)
    y = tf.concat([y, tf.zeros(zeros_shape, x.dtype)], a + 1)
    new_shape = tf.concat([shape[:a], [size * stride], shape[a + 1:]], 0)
    y = tf.reshape(y, new_shape)
    x = take(y, a, 0, (size - 1) * stride + 1)
  return x


def window_mask(mask: tf.Tensor, axes: Sequence[int], windows: Sequence[int],
                strides: Sequence[int], padding: str,
                transpose: bool = False) -> tf.Tensor:
  """Output mask of a strided window op (pooling, convolution) over `axes`.

  An output is masked where the input at its window's centre is; for a
  transposed convolution (as neural-tangents), where any input in its
  window is (`'CIRCULAR'` treated as `'SAME'`). Axes of size 1 (a mask
  constant along them) are left as they are.

  Args:
    mask: boolean mask of the inputs (True = masked).
    axes: the spatial axes of `mask`, in the order of `windows`/`strides`.
    windows, strides: per axis.
    padding: `'VALID'`, `'SAME'` or `'CIRCULAR'`.
    transpose: the op is a transposed convolution.

  Example:
    >>> import numpy as np
    >>> m = np.array([[False, True, False, False]])
    >>> window_mask(m, [1], [2], [2], 'VALID').numpy().tolist()
    [[False, False]]
  """
  mask = tf.convert_to_tensor(mask)
  for a, w, st in zip(axes, windows, strides):
    size = mask.shape[a]
    if size == 1:
      continue
    if transpose:
      pad_mode = 'SAME' if padding == 'CIRCULAR' else padding
      masked = dilate_axes(tf.cast(mask, tf.float32), (a,), st)
      masked = window_sum(masked, a, w, 1, conv_transpose_pads(w, st, pad_mode))
      mask = masked > 0
      continue
    pads = (0, 0) if padding == 'VALID' else same_pads(size, w, st)
    n = out_size(size, w, st, pads)
    start = -pads[0] + (w - 1) // 2
    idx = np.clip(start + np.arange(n) * st, 0, size - 1)
    mask = tf.gather(mask, idx, axis=a)
  return mask
