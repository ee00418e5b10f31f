"""Convolutions: `Conv`, `ConvTranspose`, `ConvLocal` (1-D, 2-D, 3-D, ...).

Kernel maps are in `nt_gp.ops.conv_cov`: a shared-weight convolution averages
the input covariance over paired shifts of the filter window; an unshared
(locally connected) one keeps only the spatial diagonal.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from nt_gp import validation
from nt_gp.ops import compile as compile_ops
from nt_gp.ops import conv_cov, diagonal, spatial
from nt_gp.stax import _random
from nt_gp.stax import hparams
from nt_gp.stax.dimension_numbers import ConvSpec, Padding, as_padding
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking
from nt_gp.stax.requirements import Bool, Diagonal, requires
from nt_gp.stax.rule_spec import capabilities
from nt_gp.stax.shapes import make_init_fn

__all__ = ['Conv', 'ConvTranspose', 'ConvLocal']


def _permute_spatial(t, perm, diagonal_spatial: bool):
  """Reorders the spatial dimensions of a batch-last covariance tensor.

  `perm[i]` is the old spatial dimension that becomes dimension `i`.
  """
  if t.shape.rank == 0:
    return t
  lead = len(perm) if diagonal_spatial else 2 * len(perm)
  axes = []
  for p in perm:
    axes += [p] if diagonal_spatial else [2 * p, 2 * p + 1]
  return tf.transpose(t, axes + list(range(lead, t.shape.rank)))


def _looks_channels_first(shape, spec):
  """Input data like (N, 3, 32, 32): channels-first images given to the
  default channels-last convolution (checked on network inputs only)."""
  spatial_sizes = [shape[i] for i in range(1, len(shape) - 1)]
  return (len(spatial_sizes) >= 2 and spatial_sizes[0] in (1, 3) and
          shape[-1] > 4 and all(s == shape[-1] for s in spatial_sizes[1:]))


@layer
@supports_masking(remask_kernel=True)
def Conv(out_chan: int, filter_shape: Sequence[int],
         strides: Optional[Sequence[int]] = None, padding: str = 'VALID',
         W_std=1., b_std=None,
         dimension_numbers: Optional[Tuple[str, str, str]] = None,
         parameterization: str = 'ntk', s=(1, 1)):
  """General convolution (weights shared across positions).

  Args:
    out_chan: output channels (ignored by the kernel in NTK parameterization).
    filter_shape: spatial filter shape, e.g. `(3, 3)`, in the order of the
      spatial letters of the filter spec.
    strides: spatial strides (default all 1).
    padding: `'VALID'`, `'SAME'` or `'CIRCULAR'` (periodic).
    W_std: weight standard deviation (number, tensor or variable).
    b_std: bias standard deviation, `None` for no bias.
    dimension_numbers: `(lhs_spec, rhs_spec, out_spec)` as in
      `jax.lax.conv_general_dilated`, e.g. `('NCHW', 'OIHW', 'NCHW')`;
      default channels-last (`NHWC`, `HWIO`).
    parameterization: `'ntk'` or `'standard'`.
    s: width scalings of the standard parameterization (see `Dense`).

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(
    ...     stax.Conv(32, (3, 3), padding='SAME'), stax.Relu(),
    ...     stax.Flatten(), stax.Dense(1))
    >>> x = np.random.RandomState(0).randn(2, 8, 8, 3)
    >>> tuple(kernel_fn(x, None, 'ntk').shape)
    (2, 2)
  """
  return _conv_layer(out_chan, filter_shape, strides, padding, W_std, b_std,
                     dimension_numbers, parameterization, s, transpose=False,
                     shared=True)


@layer
@supports_masking(remask_kernel=True)
def ConvTranspose(out_chan: int, filter_shape: Sequence[int],
                  strides: Optional[Sequence[int]] = None,
                  padding: str = 'VALID', W_std=1., b_std=None,
                  dimension_numbers: Optional[Tuple[str, str, str]] = None,
                  parameterization: str = 'ntk', s=(1, 1)):
  """Transposed convolution (as `jax.lax.conv_transpose`); arguments as `Conv`.

  Example:
    >>> from nt_gp import stax
    >>> init_fn, _, _ = stax.ConvTranspose(4, (3, 3), (2, 2), 'SAME')
    >>> init_fn(0, (1, 5, 5, 2))[0]
    (1, 10, 10, 4)
  """
  return _conv_layer(out_chan, filter_shape, strides, padding, W_std, b_std,
                     dimension_numbers, parameterization, s, transpose=True,
                     shared=True)


@layer
@supports_masking(remask_kernel=True)
def ConvLocal(out_chan: int, filter_shape: Sequence[int],
              strides: Optional[Sequence[int]] = None, padding: str = 'VALID',
              W_std=1., b_std=None,
              dimension_numbers: Optional[Tuple[str, str, str]] = None,
              parameterization: str = 'ntk', s=(1, 1)):
  """Locally connected (unshared) convolution; arguments as `Conv`.

  Every output position has its own filter and bias, so outputs at different
  positions are independent: the kernel is spatially diagonal.

  Example:
    >>> from nt_gp import stax
    >>> init_fn, _, _ = stax.ConvLocal(4, (3,), padding='SAME')
    >>> init_fn(0, (2, 6, 3))[0]
    (2, 6, 4)
  """
  return _conv_layer(out_chan, filter_shape, strides, padding, W_std, b_std,
                     dimension_numbers, parameterization, s, transpose=False,
                     shared=False)


def _conv_layer(out_chan, filter_shape, strides, padding, W_std, b_std,
                dimension_numbers, parameterization, s, transpose, shared):
  filter_shape = validation.check_positive_ints('filter_shape', filter_shape)
  n = len(filter_shape)
  strides = validation.check_positive_ints('strides', strides or (1,) * n, n)
  validation.check_positive_int('out_chan', out_chan)
  padding = as_padding(padding).value
  parameterization = validation.check_parameterization(parameterization)
  W_std = hparams.check_std('W_std', W_std)
  b_std = hparams.check_std('b_std', b_std, allow_none=True, allow_zero=True)
  user_dn = dimension_numbers
  spec = ConvSpec(filter_shape, dimension_numbers)
  filt = spec.in_filter_order(filter_shape)      # input spatial order
  strd = spec.in_filter_order(strides)
  out_width = out_chan * (s[1] if parameterization == 'standard' else 1)
  name = 'ConvTranspose' if transpose else ('Conv' if shared else 'ConvLocal')

  def out_spatial(sizes):
    out = []
    for size, k, st in zip(sizes, filt, strd):
      if transpose:
        if padding == 'VALID':
          out.append(size * st + max(k - st, 0))
        else:
          out.append(size * st)
      elif padding == 'VALID':
        if size < k:
          raise ValueError(
              f'{name}: the filter ({k}) is larger than the input ({size}) '
              f'along a spatial axis with VALID padding; use padding="SAME" '
              f'or a smaller filter.')
        out.append((size - k) // st + 1)
      else:
        out.append(-(-size // st))
    return out

  def check_shape(shape, is_input=False):
    if len(shape) != n + 2:
      raise ValueError(
          f'{name} with a {n}-D filter needs inputs of rank {n + 2} '
          f'({spec.lhs}), got shape {tuple(shape)}.')
    if is_input and user_dn is None and _looks_channels_first(shape, spec):
      raise ValueError(
          f'{name}: input of shape {tuple(shape)} looks channels-first, but the '
          f'layer expects channels-last {spec.lhs}. Transpose the inputs or '
          f'pass dimension_numbers=("NCHW", "OIHW", "NCHW") (or the N-D '
          f'equivalent).')

  def shape_fn(input_shape):
    check_shape(input_shape)
    sizes = [input_shape[spec.lhs.index(c)] for c in spec.input_spatial]
    outs = dict(zip(spec.input_spatial, out_spatial(sizes)))
    return tuple(input_shape[spec.batch_axis] if c == 'N' else
                 out_width if c == 'C' else outs[c] for c in spec.out)

  def params_fn(key, input_shape):
    c_in = input_shape[spec.channel_axis]
    k1, k2 = _random.split(key)
    out_shape = shape_fn(input_shape)
    if shared:
      w_shape = [out_width if c == 'O' else c_in if c == 'I' else
                 filter_shape[spec.rhs_spatial.index(c)] for c in spec.rhs]
      b_shape = [out_width if c == 'C' else 1 for c in spec.out]
    else:
      w_shape = [out_width if c == 'O' else c_in * int(np.prod(filter_shape))
                 if c == 'I' else out_shape[spec.out.index(c)]
                 for c in spec.rhs]
      b_shape = [1 if c == 'N' else out_shape[i] for i, c in
                 enumerate(spec.out)]
    W = _random.normal(k1, w_shape)
    b = None if b_std is None else _random.normal(k2, b_shape)
    if parameterization == 'standard':
      fan_in = c_in * int(np.prod(filter_shape))
      W = W * tf.cast(W_std, W.dtype) / (fan_in / s[0]) ** 0.5
      b = None if b is None else b * tf.cast(b_std, b.dtype)
    return W, b

  def apply_fn(params, inputs, **kwargs):
    W, b = params
    x = tf.convert_to_tensor(inputs)
    check_shape(x.shape)
    dtype = x.dtype
    W = tf.cast(W, dtype)
    # To (N, *spatial in input order, C) and W to (*spatial, I, O).
    x = tf.transpose(x, [spec.batch_axis] + [spec.lhs.index(c) for c in
                                             spec.input_spatial] +
                     [spec.channel_axis])
    c_in = x.shape[-1]
    if shared:
      w = tf.transpose(W, [spec.rhs.index(c) for c in spec.input_spatial] +
                       [spec.rhs.index('I'), spec.rhs.index('O')])
      out = _apply_shared(x, w)
    else:
      out_sizes = out_spatial(list(x.shape[1:-1]))
      w = tf.transpose(W, [spec.rhs.index(c) for c in spec.input_spatial] +
                       [spec.rhs.index('I'), spec.rhs.index('O')])
      out = _apply_local(x, w, out_sizes)
    fan_in = c_in * int(np.prod(filter_shape))
    if parameterization == 'ntk':
      out = hparams.cast(W_std, dtype) / fan_in ** 0.5 * out
    else:
      out = out / s[0] ** 0.5
    # Back to the output spec.
    canon = 'N' + ''.join(spec.input_spatial) + 'C'
    out = tf.transpose(out, [canon.index(c) for c in spec.out])
    if b is not None:
      b = tf.cast(b, dtype)
      out = out + (hparams.cast(b_std, dtype) * b if parameterization == 'ntk'
                   else b)
    return out

  def _apply_shared(x, w):
    if transpose:
      in_sizes = list(x.shape[1:-1])
      pad_mode = 'VALID' if padding == 'CIRCULAR' else padding
      for j, (k, st) in enumerate(zip(filt, strd)):
        x = spatial.dilate_axes(x, (1 + j,), st)
        x = spatial.pad_axes(x, (1 + j,), spatial.conv_transpose_pads(
            k, st, pad_mode))
      out = tf.nn.convolution(x, w, padding='VALID')
      if padding == 'CIRCULAR':
        for j, (size, st) in enumerate(zip(in_sizes, strd)):
          size = size * st
          out = conv_cov.circular_fold(out, 1 + j, size)
      return out
    if padding == 'CIRCULAR':
      for j, (k, st) in enumerate(zip(filt, strd)):
        x = spatial.pad_axes(x, (1 + j,), spatial.same_pads(
            x.shape[1 + j], k, st), circular=True)
      return tf.nn.convolution(x, w, strides=strd, padding='VALID')
    return tf.nn.convolution(x, w, strides=strd, padding=padding)

  def _apply_local(x, w, out_sizes):
    if padding == 'CIRCULAR':
      for j, (k, st) in enumerate(zip(filt, strd)):
        x = spatial.pad_axes(x, (1 + j,), spatial.same_pads(
            x.shape[1 + j], k, st), circular=True)
    elif padding == 'SAME':
      for j, (k, st) in enumerate(zip(filt, strd)):
        x = spatial.pad_axes(x, (1 + j,), spatial.same_pads(
            x.shape[1 + j], k, st))
    # Patches (N, *out, C, *filter) flattened channel-major.
    patches = []
    for offset in np.ndindex(*filt):
      part = x
      for j, (o, st, size) in enumerate(zip(offset, strd, out_sizes)):
        part = spatial.take(part, 1 + j, o, o + (size - 1) * st + 1, st)
      patches.append(part)
    p = tf.stack(patches, axis=-1)                   # (N, *out, C, F)
    p = tf.reshape(p, tf.concat([tf.shape(p)[:-2], [-1]], 0))
    letters = 'abcdefgh'[:len(out_sizes)]
    return tf.einsum(f'n{letters}i,{letters}io->n{letters}o', p, w)

  diag_req = Diagonal(output=Bool.NO if shared else Bool.MAYBE)

  if transpose:
    op = conv_cov.conv_transpose_cov
  elif shared:
    op = conv_cov.conv_cov
  else:
    op = conv_cov.conv_local_cov

  def covariance_map(nngp, ntk, cov1, cov2, w_var, b_var, ds, fan_in):
    """The layer's kernel map on tensors (compiled as one XLA cluster)."""
    def unscaled(t):
      return op(t, filt, strd, padding, ds)

    def add_bias(t, value):
      if shared or ds:
        return t + value
      return diagonal.add_to_spatial_diagonal(t, value, n, ds)

    def affine(t):
      if t is None:
        return None
      t = w_var * unscaled(t)
      return t if b_var is None else add_bias(t, b_var)

    # The spatial sum is linear, so each output is one sum of a combination
    # of the inputs: the NTK's `w op(ntk) + w op(nngp) + b` is computed as
    # `w op(ntk + nngp) + b`. No output then depends on another output's
    # sum, which XLA would recompute inside the other fusion (materialising
    # every shifted slice of the input to share them).
    cov1, cov2 = affine(cov1), affine(cov2)
    if parameterization == 'ntk':
      if ntk is not None:
        ntk = affine(ntk + nngp)
      nngp = affine(nngp)
    else:
      if ntk is not None:
        ntk = unscaled(fan_in / s[0] * nngp + w_var * ntk)
        if b_var is not None:
          ntk = add_bias(ntk, tf.ones((), ntk.dtype))
      nngp = w_var * unscaled(nngp)
      if b_var is not None:
        nngp = add_bias(nngp, b_var)
    return nngp, ntk, cov1, cov2

  compiled_map = compile_ops.xla(covariance_map)

  @requires(batch_axis=spec.batch_axis, channel_axis=spec.channel_axis,
            diagonal_spatial=diag_req)
  @capabilities(packed=True)
  def rule(k, **kwargs):
    check_shape(k.shape1, is_input=k.is_input)
    shape_fn(k.shape1)     # layer-specific errors (e.g. filter > image)
    dtype = k.dtype
    ds = k.diagonal_spatial
    w_var = hparams.squared(W_std, dtype, 'W_std', positive=True)
    b_var = hparams.squared(b_std, dtype)
    fan_in = k.shape1[spec.channel_axis] * int(np.prod(filter_shape))
    zero_ntk = (parameterization == 'ntk' and k.ntk is not None and
                k.ntk.shape.rank == 0)
    # A 0-d NTK is still zero (the inputs'): then the new NTK is the new NNGP.
    # Reusing that tensor saves one output, and keeps XLA from recomputing
    # the spatial sum for both outputs, which materialises every shifted
    # slice of the input.
    nngp, ntk, cov1, cov2 = compiled_map(
        k.nngp, None if zero_ntk else k.ntk, k.cov1, k.cov2, w_var, b_var, ds,
        fan_in)
    if zero_ntk:
      ntk = nngp
    out = k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2,
                    is_gaussian=True, is_input=False,
                    batch_axis=spec.out.index('N'),
                    channel_axis=spec.out.index('C'))
    if spec.out_perm != sorted(spec.out_perm):
      out = out.map_covs(lambda t, _: _permute_spatial(t, spec.out_perm, ds))
    return out

  def mask_fn(mask, input_shape):
    mask = tf.reduce_all(mask, axis=spec.channel_axis, keepdims=True)
    axes = [spec.lhs.index(c) for c in spec.input_spatial]
    mask = spatial.window_mask(mask, axes, filt, strd, padding, transpose)
    return tf.transpose(mask, [spec.lhs.index(c) for c in spec.out])

  return make_init_fn(shape_fn, params_fn), apply_fn, rule, mask_fn
