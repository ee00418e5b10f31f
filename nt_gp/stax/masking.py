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

from nt_gp.kernel import Kernel, flatten_kernels, map_kernels
from nt_gp.stax import rule_spec

__all__ = ['MaskedArray', 'mask_inputs', 'propagate_masks', 'unmask_fn',
           'supports_masking']


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


def propagate_masks(k_in, k_out, mask_fn: Optional[Callable], remask: bool):
  """Moves masks through a layer (its `mask_fn`) and remasks the output."""
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
    return k.mask() if remask else k
  return map_kernels(set_masks, k_out)


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
      rule_spec.declare(rule, remask_kernel=remask_kernel)
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
