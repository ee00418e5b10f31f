"""From input arrays to the input-layer `Kernel` (batch-last layout).

The input "covariance" is the channel-averaged outer product of the inputs,
``nngp[..., n1, n2] = sum_c x1[n1, ..., c] x2[n2, ..., c] / C``, kept over the
spatial diagonal or over all pairs of positions as the network requires.
"""
from typing import Optional

import numpy as np
import tensorflow as tf

from nt_gp import _config
from nt_gp import validation
from nt_gp.kernel import Kernel
from nt_gp.ops import packing
from nt_gp.ops import static_shape
from nt_gp.stax import masking

__all__ = ['inputs_to_kernel', 'inputs_to_kernels', 'prepare_inputs']


def _canonical(x: tf.Tensor, batch_axis: int, channel_axis: int) -> tf.Tensor:
  """Moves the batch axis to the front and the channel axis to the back."""
  rank = x.shape.rank
  others = [i for i in range(rank) if i not in (batch_axis, channel_axis)]
  perm = [batch_axis] + others + [channel_axis]
  return x if perm == list(range(rank)) else tf.transpose(x, perm)


def _interleave_perm(n_spatial: int) -> list:
  """Perm from (N1, X1..XS, N2, Y1..YS) to (X1, Y1, ..., XS, YS, N1, N2)."""
  perm = []
  for i in range(n_spatial):
    perm += [1 + i, n_spatial + 2 + i]
  return perm + [0, n_spatial + 1]


def cross_cov(a: tf.Tensor, b: tf.Tensor, diagonal_spatial: bool) -> tf.Tensor:
  """Covariance between two canonical batches `(N, *spatial, C)`, batch-last."""
  spatial = a.shape[1:-1]
  c = a.shape[-1]
  s = len(spatial)
  if s == 0:
    return tf.matmul(a, b, transpose_b=True) / c
  p = spatial.num_elements()
  (n1,), (n2,) = static_shape.dims(a, 0, 1), static_shape.dims(b, 0, 1)
  if diagonal_spatial:
    a_p = tf.transpose(tf.reshape(a, [-1, p, c]), [1, 0, 2])
    b_p = tf.transpose(tf.reshape(b, [-1, p, c]), [1, 0, 2])
    out = tf.matmul(a_p, b_p, transpose_b=True) / c            # (P, N1, N2)
    return tf.reshape(out, list(spatial) + [n1, n2])
  out = tf.matmul(tf.reshape(a, [-1, c]), tf.reshape(b, [-1, c]),
                  transpose_b=True) / c                      # (N1 P, N2 P)
  out = tf.reshape(out, [n1] + list(spatial) + [n2] + list(spatial))
  return tf.transpose(out, _interleave_perm(s))


def packed_self_cov(a: tf.Tensor, diagonal_spatial: bool,
                    blocks: int) -> tf.Tensor:
  """Covariance of a canonical batch with itself over block pairs I <= J.

  Returns `(*spatial, B (B + 1) / 2, N' / B, N' / B)` with `N'` the batch
  padded to a multiple of B (see `nt_gp.ops.packing.block_count`).
  """
  n = packing.padded_size(a.shape[0], blocks)
  a = packing.pad_batch(a, n)
  spatial = a.shape[1:-1]
  s = len(spatial)
  if s == 0:
    return packing.pack(cross_cov(a, a, False), blocks)
  c = a.shape[-1]
  b = n // blocks
  rows, cols = packing.block_pairs(blocks)
  flat = tf.reshape(a, [blocks, b, -1, c])                   # (B, b, S, C)
  left, right = tf.gather(flat, rows), tf.gather(flat, cols)  # (K, b, S, C)
  if diagonal_spatial:
    out = tf.einsum('kisc,kjsc->skij', left, right) / c
    return tf.reshape(out, list(spatial) + [-1, b, b])
  out = tf.einsum('kisc,kjtc->stkij', left, right) / c       # (S, S, K, b, b)
  out = tf.reshape(out, list(spatial) * 2 + [-1, b, b])
  perm = []
  for k in range(s):
    perm += [k, s + k]
  return tf.transpose(out, perm + [2 * s, 2 * s + 1, 2 * s + 2])


def self_cov(a: tf.Tensor, diagonal_batch: bool,
             diagonal_spatial: bool) -> tf.Tensor:
  """Covariance of a canonical batch with itself, batch-last."""
  if not diagonal_batch:
    return cross_cov(a, a, diagonal_spatial)
  c = a.shape[-1]
  spatial = a.shape[1:-1]
  s = len(spatial)
  if diagonal_spatial or s == 0:
    out = tf.reduce_sum(tf.square(a), axis=-1) / c           # (N, *spatial)
    return tf.transpose(out, list(range(1, s + 1)) + [0]) if s else out
  p = spatial.num_elements()
  flat = tf.reshape(a, [-1, p, c])
  out = tf.matmul(flat, flat, transpose_b=True) / c          # (N, P, P)
  out = tf.reshape(out, [-1] + list(spatial) * 2)
  perm = []
  for i in range(s):
    perm += [1 + i, 1 + s + i]
  return tf.transpose(out, perm + [0])


def inputs_to_kernel(x1: tf.Tensor,
                     x2: Optional[tf.Tensor],
                     *,
                     diagonal_batch: bool,
                     diagonal_spatial: bool,
                     compute_ntk: bool,
                     batch_axis: int,
                     channel_axis: int,
                     eps: float = 1e-12,
                     mask1=None,
                     mask2=None,
                     pack: bool = False,
                     **unused_kwargs) -> Kernel:
  """Builds the input-layer `Kernel` in batch-last layout.

  Args:
    x1: `(N1, ...)` float tensor (batch and channel axes as given).
    x2: `(N2, ...)` float tensor of the same dtype and non-batch shape, or None.
    diagonal_batch: keep only `cov1[n, n]`.
    diagonal_spatial: keep only the spatial diagonal.
    compute_ntk: whether an NTK (zero at the input) is tracked.
    batch_axis, channel_axis: axes of `x1`/`x2`.
    eps: tolerance for deciding whether `x1` and `x2` are the same inputs.
    mask1, mask2: optional boolean masks of the inputs.
    pack: when `x2` is None, keep only pairs n1 <= n2 of `nngp`/`ntk`.

  Returns:
    A batch-last `Kernel` with `nngp` of shape `(*spatial, N1, N2)`.
  """
  ndim = x1.shape.rank
  batch_axis %= ndim
  channel_axis %= ndim
  a = _canonical(x1, batch_axis, channel_axis)
  b = None if x2 is None else _canonical(x2, batch_axis, channel_axis)
  if ndim == 2:
    diagonal_spatial = False
  blocks = packing.block_count(x1.shape[batch_axis])
  pack = pack and b is None and mask1 is None and blocks > 1
  if pack:
    nngp = packed_self_cov(a, diagonal_spatial, blocks)
  else:
    nngp = cross_cov(a, a if b is None else b, diagonal_spatial)
  cov1 = self_cov(a, diagonal_batch, diagonal_spatial)
  cov2 = None if b is None else self_cov(b, diagonal_batch, diagonal_spatial)
  if x2 is None:
    x1_is_x2 = tf.constant(True)
  elif x1.shape != x2.shape:
    x1_is_x2 = tf.constant(False)
  else:
    x1_is_x2 = tf.reduce_all(tf.abs(x1 - x2) < eps)
  ntk = tf.zeros((), nngp.dtype) if compute_ntk else None
  return Kernel(
      nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, x1_is_x2=x1_is_x2,
      is_gaussian=False, is_reversed=False, is_input=True,
      diagonal_batch=diagonal_batch, diagonal_spatial=diagonal_spatial,
      shape1=tuple(x1.shape), shape2=tuple((x1 if x2 is None else x2).shape),
      batch_axis=batch_axis, channel_axis=channel_axis,
      mask1=mask1, mask2=mask2, batch_last=True, packed=pack)


def inputs_to_kernels(x1, x2, reqs, compute_ntk):
  """The input kernels of input trees, as `reqs` (fused requirements) ask.

  Example:
    >>> import tensorflow as tf
    >>> from nt_gp.stax import requirements
    >>> x = tf.ones((2, 3))
    >>> ks = inputs_to_kernels([x, x], None, requirements.DEFAULT_INPUT_REQ,
    ...                        compute_ntk=True)
    >>> [tuple(k.nngp.shape) for k in ks]
    [(2, 2), (2, 2)]
  """
  if isinstance(x1, (list, tuple)):
    x2s = [None] * len(x1) if x2 is None else x2
    return type(x1)(inputs_to_kernels(a, b, reqs, compute_ntk)
                    for a, b in zip(x1, x2s))
  ndim = x1.shape.rank
  for axis_name in ('batch_axis', 'channel_axis'):
    ax = reqs[axis_name]
    if not -ndim <= ax < ndim:
      raise ValueError(
          f'The network expects `{axis_name}={ax}` (declared by its layers; '
          f'e.g. a 2-D Conv needs rank-4 (N, H, W, C) inputs), which does not '
          f'exist for inputs of rank {ndim} (shape {tuple(x1.shape)}).')
  if reqs['batch_axis'] % ndim == reqs['channel_axis'] % ndim:
    raise ValueError('`batch_axis` and `channel_axis` must differ.')
  mask_constant = reqs.get('mask_constant')
  x1, mask1 = masking.mask_inputs(x1, mask_constant)
  x2, mask2 = masking.mask_inputs(x2, mask_constant)
  return inputs_to_kernel(
      x1, x2, diagonal_batch=bool(reqs['diagonal_batch']),
      diagonal_spatial=bool(reqs['diagonal_spatial']),
      compute_ntk=compute_ntk, batch_axis=reqs['batch_axis'],
      channel_axis=reqs['channel_axis'], mask1=mask1, mask2=mask2,
      pack=_config.config.pack_symmetric)


# ----------------------------------------------------------------------------
# Validation of input arrays.
# ----------------------------------------------------------------------------
def _to_tensor(x, name):
  if isinstance(x, Kernel):
    raise TypeError(f'`{name}` is a Kernel; pass kernels as the only argument.')
  if isinstance(x, masking.MaskedArray):
    raise TypeError('Pass `mask_constant=` instead of a MaskedArray.')
  if not isinstance(x, (tf.Tensor, tf.Variable, np.ndarray, np.generic, list,
                        tuple, float, int)):
    raise TypeError(f'`{name}` must be an array (numpy or TensorFlow), got '
                    f'{type(x).__name__}.')
  t = tf.convert_to_tensor(x)
  if t.dtype.is_complex or t.dtype == tf.string:
    raise TypeError(f'`{name}` must be real-valued, got dtype {t.dtype.name}.')
  if not t.dtype.is_floating:
    t = tf.cast(t, tf.float32)
  validation.check_kernel_dtype(name, t.dtype)
  return t


def _check_finite(t, name, mask_constant):
  if mask_constant is not None:
    return t
  if tf.executing_eagerly() and not isinstance(t, tf.Variable) or (
      isinstance(t, tf.Tensor) and hasattr(t, 'numpy')):
    try:
      arr = t.numpy()
    except (AttributeError, NotImplementedError):
      arr = None
    if arr is not None:
      bad = ~np.isfinite(arr)
      if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f'`{name}` has non-finite values (first at index '
                         f'{idx}: {arr[idx]}); kernels of NaN/inf inputs are '
                         f'undefined.')
      return t
  return tf.debugging.assert_all_finite(t, f'`{name}` has non-finite values.')


def prepare_inputs(x1, x2, mask_constant):
  """Converts and validates input trees; returns `(x1, x2)` tensor trees.

  Example:
    >>> import numpy as np
    >>> x1, x2 = prepare_inputs(np.ones((2, 3), np.int32), None, None)
    >>> x1.dtype.name, x2
    ('float32', None)
    >>> prepare_inputs(np.array([[np.nan, 1.]]), None, None)
    Traceback (most recent call last):
    ...
    ValueError: `x1` has non-finite values (first at index (0, 0): nan); kernels of NaN/inf inputs are undefined.
  """
  if isinstance(x1, (list, tuple)) and x1 and not isinstance(
      x1[0], (float, int)) and not np.isscalar(x1[0]) and all(
          hasattr(x, 'shape') for x in x1):
    if x2 is not None and (not isinstance(x2, (list, tuple)) or
                           len(x2) != len(x1)):
      raise ValueError('`x2` must be a list of the same length as `x1`.')
    x2s = [None] * len(x1) if x2 is None else list(x2)
    pairs = [prepare_inputs(a, b, mask_constant) for a, b in zip(x1, x2s)]
    return (type(x1)(p[0] for p in pairs),
            None if x2 is None else type(x1)(p[1] for p in pairs))
  t1 = _to_tensor(x1, 'x1')
  if t1.shape.rank is None or t1.shape.rank < 2:
    raise ValueError(f'Inputs must have a batch and a feature axis (rank >= '
                     f'2), got `x1` of shape {t1.shape}.')
  if t1.shape[0] == 0:
    raise ValueError('`x1` has an empty batch.')
  t1 = _check_finite(t1, 'x1', mask_constant)
  if x2 is None:
    return t1, None
  t2 = _to_tensor(x2, 'x2')
  if t2.dtype != t1.dtype:
    raise TypeError(f'`x1` and `x2` must have the same dtype, got '
                    f'{t1.dtype.name} and {t2.dtype.name}.')
  if t2.shape.rank != t1.shape.rank or t2.shape[1:] != t1.shape[1:]:
    raise ValueError(f'`x1` and `x2` must have the same shape apart from the '
                     f'batch axis, got {tuple(t1.shape)} and '
                     f'{tuple(t2.shape)}.')
  t2 = _check_finite(t2, 'x2', mask_constant)
  return t1, t2
