"""Local pooling layers: `AvgPool`, `SumPool`."""
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from nt_gp import validation
from nt_gp.ops import compile as compile_ops
from nt_gp.ops import conv_cov, spatial
from nt_gp.stax.dimension_numbers import as_padding
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking
from nt_gp.stax.requirements import Bool, Diagonal, requires
from nt_gp.stax.rule_spec import capabilities
from nt_gp.stax.shapes import make_init_fn

__all__ = ['AvgPool', 'SumPool']


@layer
@supports_masking(remask_kernel=True)
def AvgPool(window_shape: Sequence[int],
            strides: Optional[Sequence[int]] = None,
            padding: str = 'VALID',
            normalize_edges: bool = False,
            batch_axis: int = 0,
            channel_axis: int = -1):
  """Average pooling over the spatial axes.

  Args:
    window_shape: pooling window per spatial axis (in input order).
    strides: pooling strides (default: 1).
    padding: `'VALID'`, `'SAME'` or `'CIRCULAR'`.
    normalize_edges: with `'SAME'` padding, divide by the number of
      non-padded entries of each window instead of the window size.
    batch_axis, channel_axis: axes of the inputs.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> from nt_gp import stax
    >>> init_fn, _, _ = stax.AvgPool((2, 2), (2, 2))
    >>> init_fn(0, (1, 8, 6, 3))[0]
    (1, 4, 3, 3)
  """
  return _pool(True, window_shape, strides, padding, normalize_edges,
               batch_axis, channel_axis)


@layer
@supports_masking(remask_kernel=True)
def SumPool(window_shape: Sequence[int],
            strides: Optional[Sequence[int]] = None,
            padding: str = 'VALID',
            batch_axis: int = 0,
            channel_axis: int = -1):
  """Sum pooling over the spatial axes; arguments as `AvgPool`.

  Example:
    >>> from nt_gp import stax
    >>> init_fn, _, _ = stax.SumPool((3,), padding='SAME')
    >>> init_fn(0, (2, 7, 3))[0]
    (2, 7, 3)
  """
  return _pool(False, window_shape, strides, padding, False, batch_axis,
               channel_axis)


def _pool(average, window_shape, strides, padding, normalize_edges,
          batch_axis, channel_axis):
  window = validation.check_positive_ints('window_shape', window_shape)
  n = len(window)
  strides = validation.check_positive_ints('strides', strides or (1,) * n, n)
  padding = as_padding(padding).value
  name = 'AvgPool' if average else 'SumPool'

  def axes_of(shape):
    ndim = len(shape)
    if ndim != n + 2:
      raise ValueError(f'{name} with a {n}-D window needs inputs of rank '
                       f'{n + 2}, got shape {tuple(shape)}.')
    ba, ca = batch_axis % ndim, channel_axis % ndim
    return [i for i in range(ndim) if i not in (ba, ca)]

  def shape_fn(input_shape):
    out = list(input_shape)
    for a, w, st in zip(axes_of(input_shape), window, strides):
      size = input_shape[a]
      if padding == 'VALID':
        if size < w:
          raise ValueError(f'{name}: window {w} is larger than the input '
                           f'({size}) with VALID padding.')
        out[a] = (size - w) // st + 1
      else:
        out[a] = -(-size // st)
    return tuple(out)

  def apply_fn(params, inputs, **kwargs):
    x = tf.convert_to_tensor(inputs)
    for a, w, st in zip(axes_of(x.shape), window, strides):
      size = x.shape[a]
      pads = ((0, 0) if padding == 'VALID' else
              spatial.same_pads(size, w, st))
      x = spatial.window_sum(x, a, w, st, pads, circular=padding == 'CIRCULAR')
      if average:
        if padding == 'SAME' and normalize_edges:
          out_n = x.shape[a]
          starts = np.arange(out_n) * st - pads[0]
          counts = np.minimum(starts + w, size) - np.maximum(starts, 0)
          shape = [1] * x.shape.rank
          shape[a] = out_n
          x = x / tf.constant(counts.reshape(shape), x.dtype)
        else:
          x = x / float(w)
    return x

  def covariance_map(nngp, ntk, cov1, cov2, ds):
    return tuple(conv_cov.pool_cov(t, window, strides, padding, ds, average,
                                   normalize_edges)
                 for t in (nngp, ntk, cov1, cov2))
  compiled_map = compile_ops.xla(covariance_map)

  @requires(batch_axis=batch_axis, channel_axis=channel_axis,
            diagonal_spatial=Diagonal(input=Bool.MAYBE))
  @capabilities(packed=True)
  def rule(k, **kwargs):
    shape_fn(k.shape1)     # layer-specific errors (e.g. window > image)
    nngp, ntk, cov1, cov2 = compiled_map(k.nngp, k.ntk, k.cov1, k.cov2,
                                         k.diagonal_spatial)
    return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2)

  def mask_fn(mask, input_shape):
    return spatial.window_mask(mask, axes_of(input_shape), window, strides,
                               padding)

  return make_init_fn(shape_fn), apply_fn, rule, mask_fn
