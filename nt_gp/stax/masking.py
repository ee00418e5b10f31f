"""Masked (variable-length) inputs: `MaskedArray`, mask propagation, remasking.

A mask is a boolean tensor with the rank of the activations, broadcastable to
their shape, `True` where an entry is masked (e.g. padding of a short
sentence). Masks travel with the `Kernel` (`mask1`, `mask2`); a layer may
transform them (its `mask_fn`) and covariance entries involving a masked
position are set to zero ("remasking").
"""
import dataclasses
import functools
from typing import Any, Callable, Optional

import numpy as np
import tensorflow as tf

__all__ = ['MaskedArray', 'mask_inputs', 'propagate_masks', 'unmask_fn',
           'supports_masking', 'mask_kernel']


@dataclasses.dataclass(frozen=True)
class MaskedArray:
  """An array with a boolean mask (`True` = masked), as returned by `apply_fn`
  when called with `mask_constant=`.

  Attributes:
    masked_value: the values, masked entries set to zero.
    mask: boolean tensor broadcastable to `masked_value`.
  """
  masked_value: Any
  mask: Any


def mask_inputs(x, mask_constant):
  """Returns `(x with masked entries zeroed, mask)`; `mask` is None if unmasked.

  Example:
    >>> import numpy as np
    >>> x, m = mask_inputs(np.array([[1., -1.]]), -1.)
    >>> x.numpy().tolist(), m.numpy().tolist()
    ([[1.0, 0.0]], [[False, True]])
  """
  if x is None:
    return None, None
  if isinstance(x, MaskedArray):
    return x.masked_value, x.mask
  x = tf.convert_to_tensor(x)
  if mask_constant is None:
    return x, None
  if np.isnan(mask_constant):
    mask = tf.math.is_nan(x)
  else:
    mask = tf.equal(x, tf.cast(mask_constant, x.dtype))
  return tf.where(mask, tf.zeros_like(x), x), mask


def _kernel_mask(mask, shape, batch_axis, channel_axis):
  """Mask of an activation as `(N, *spatial)` (channel collapsed)."""
  mask = tf.convert_to_tensor(mask)
  ndim = len(shape)
  if mask.shape.rank != ndim:
    raise ValueError(f'A mask must have the rank of the activations ({ndim}), '
                     f'got shape {mask.shape}.')
  if mask.shape[channel_axis] != 1:
    mask = tf.reduce_all(mask, axis=channel_axis, keepdims=True)
  others = [i for i in range(ndim) if i not in (batch_axis, channel_axis)]
  mask = tf.transpose(mask, [batch_axis] + others + [channel_axis])[..., 0]
  target = [shape[batch_axis]] + [shape[i] for i in others]
  return tf.broadcast_to(mask, target)


def _outer_or(m1, m2, diagonal_spatial, batch_pair):
  """Mask of a batch-last covariance from two `(N, *spatial)` masks.

  The outer product is formed over flattened positions and then transposed
  into the interleaved layout, since TensorFlow's CPU kernels do not
  broadcast tensors with many alternating unit axes.
  """
  s = m1.shape.rank - 1
  sp1 = tf.transpose(m1, list(range(1, s + 1)) + [0])    # (*spatial, N1)
  sp2 = tf.transpose(m2, list(range(1, s + 1)) + [0])
  if diagonal_spatial or s == 0:
    if batch_pair:
      return tf.logical_or(sp1[..., :, None], sp2[..., None, :])
    return sp1
  sizes1 = m1.shape[1:].as_list()
  sizes2 = m2.shape[1:].as_list()
  a = tf.reshape(sp1, [-1, 1, m1.shape[0]])
  b = tf.reshape(sp2, [1, -1, m2.shape[0]])
  if batch_pair:
    out = tf.logical_or(a[..., :, None], b[..., None, :])  # (P, P', N1, N2)
    batch = [m1.shape[0], m2.shape[0]]
  else:
    out = tf.logical_or(a, b)                               # (P, P', N)
    batch = [max(m1.shape[0], m2.shape[0])]
  out = tf.reshape(out, sizes1 + sizes2 + batch)
  perm = []
  for i in range(s):
    perm += [i, s + i]
  perm += list(range(2 * s, 2 * s + len(batch)))
  return tf.transpose(out, perm)


def mask_kernel(k, mask1, mask2):
  """Zeroes covariances of masked positions in a batch-last kernel `k`."""
  if mask1 is None and mask2 is None:
    return k
  ndim = len(k.shape1)
  ba, ca = k.batch_axis % ndim, k.channel_axis % ndim
  def km(mask, shape):
    if mask is None:
      return tf.zeros([shape[ba]] + [shape[i] for i in range(ndim)
                                     if i not in (ba, ca)], tf.bool)
    return _kernel_mask(mask, shape, ba, ca)
  m1 = km(mask1, k.shape1)
  m2 = km(mask2, k.shape2) if (mask2 is not None or k.cov2 is not None) else m1
  def zero(t, m):
    if t is None or t.shape.rank == 0:
      return t
    return tf.where(m, tf.zeros_like(t), t)
  m12 = _outer_or(m1, m2, k.diagonal_spatial, True)
  if k.diagonal_batch:
    m11 = _outer_or(m1, m1, k.diagonal_spatial, False)
    m22 = _outer_or(m2, m2, k.diagonal_spatial, False)
  else:
    m11 = _outer_or(m1, m1, k.diagonal_spatial, True)
    m22 = _outer_or(m2, m2, k.diagonal_spatial, True)
  return k.replace(nngp=zero(k.nngp, m12), ntk=zero(k.ntk, m12),
                   cov1=zero(k.cov1, m11), cov2=zero(k.cov2, m22))


def propagate_masks(k_in, k_out, mask_fn: Optional[Callable], remask: bool):
  """Moves masks through a layer (its `mask_fn`) and remasks the output."""
  from nt_gp.stax.layer import flatten_kernels  # pylint: disable=g-import-not-at-top
  from nt_gp.kernel import Kernel  # pylint: disable=g-import-not-at-top
  ins = flatten_kernels(k_in)
  if all(k.mask1 is None and k.mask2 is None for k in ins):
    return k_out
  if mask_fn is None:
    return k_out   # combinators: inner layers already handled masks.

  def tree(attr):
    if isinstance(k_in, Kernel):
      return getattr(k_in, attr)
    return [getattr(k, attr) for k in k_in]
  new1 = mask_fn(tree('mask1'), tree('shape1'))
  new2 = mask_fn(tree('mask2'), tree('shape2'))

  def set_masks(k):
    k = k.replace(mask1=new1, mask2=new2)
    return mask_kernel(k, new1, new2) if remask else k
  if isinstance(k_out, Kernel):
    return set_masks(k_out)
  return type(k_out)(set_masks(k) for k in k_out)


def supports_masking(remask_kernel: bool):
  """Marks a layer function as mask-aware (see neural-tangents).

  The decorated function returns `(init_fn, apply_fn, rule[, mask_fn])`;
  `mask_fn(mask, input_shape)` gives the output mask (identity by default),
  and covariances are zeroed at masked positions if `remask_kernel`.

  The returned `apply_fn` accepts `mask_constant=` (entries equal to it are
  masked; NaN allowed) and `MaskedArray` inputs: masked entries are zeroed,
  the inner `apply_fn` receives the boolean mask as `mask=`, and the output is
  a `MaskedArray` carrying the output mask (a plain tensor when nothing is
  masked).

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, apply_fn, _ = stax.Dense(2)
    >>> x = np.array([[1., 2.], [-1., -1.]], np.float32)
    >>> out = apply_fn(stax.Dense(2)[0](0, x.shape)[1], x, mask_constant=-1.)
    >>> out.mask.numpy().tolist()
    [[False], [True]]
  """
  def decorator(layer_fn):
    @functools.wraps(layer_fn)
    def new_layer_fn(*args, **kwargs):
      fns = layer_fn(*args, **kwargs)
      init_fn, apply_fn, rule = fns[:3]
      mask_fn = fns[3] if len(fns) == 4 else (lambda mask, shape: mask)
      def safe_mask_fn(mask, shape):
        if mask is None or (isinstance(mask, list) and
                            all(m is None for m in mask)):
          return None
        return mask_fn(mask, shape)
      rule.remask_kernel = remask_kernel
      return (init_fn, _apply_with_masking(apply_fn, safe_mask_fn), rule,
              safe_mask_fn)
    return new_layer_fn
  return decorator


def _split_masked(x, mask_constant):
  """`(values with masked entries zeroed, mask)` of an input tree."""
  if isinstance(x, (list, tuple)):
    pairs = [_split_masked(y, mask_constant) for y in x]
    return [p[0] for p in pairs], [p[1] for p in pairs]
  if isinstance(x, MaskedArray):
    value = tf.convert_to_tensor(x.masked_value)
    if x.mask is None:
      return value, None
    mask = tf.convert_to_tensor(x.mask)
    return tf.where(mask, tf.zeros((), value.dtype), value), mask
  if mask_constant is None or x is None:
    return x, None
  return mask_inputs(x, mask_constant)


def _apply_with_masking(apply_fn: Callable, mask_fn: Callable) -> Callable:
  """Wraps a layer's `apply_fn` to take `mask_constant=` / `MaskedArray`s."""
  @functools.wraps(apply_fn)
  def apply_with_masking(params, inputs, *, mask_constant=None, **kwargs):
    has_masked = isinstance(inputs, MaskedArray) or (
        isinstance(inputs, (list, tuple)) and
        any(isinstance(x, MaskedArray) for x in inputs))
    if mask_constant is None and not has_masked:
      return apply_fn(params, inputs, **kwargs)
    kwargs.pop('mask', None)
    values, mask = _split_masked(inputs, mask_constant)
    is_list = isinstance(values, list)
    if is_list:
      values = type(inputs)(values)
      shapes = [tuple(v.shape) for v in values]
      if all(m is None for m in mask):
        mask = None
    else:
      shapes = tuple(values.shape)
    out = apply_fn(params, values, mask=mask, **kwargs)
    out_mask = mask_fn(mask, shapes)
    if out_mask is None:
      return out
    return MaskedArray(out, out_mask)
  return apply_with_masking


def unmask_fn(fn: Callable) -> Callable:
  """Makes a function returning `MaskedArray`s return plain tensors with the
  masked entries set to zero."""
  @functools.wraps(fn)
  def new_fn(*args, **kwargs):
    out = fn(*args, **kwargs)
    if isinstance(out, MaskedArray):
      return tf.where(out.mask, tf.zeros_like(out.masked_value),
                      out.masked_value)
    return out
  return new_fn
