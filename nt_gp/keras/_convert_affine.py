"""Converters of Keras weight layers: `Dense` and (transposed) convolutions.

Each converter checks one call and records a `Step` whose `build` makes the
stax layer from the hyperparameters of a `BuildOptions`; a fused
`activation=` becomes a stax nonlinearity after the layer.
"""
import keras
import numpy as np
import tensorflow as tf

from nt_gp import stax
from nt_gp.keras import _layers
from nt_gp.keras._facts import BuildOptions, Cell, Meta, need_axis, unsupported
from nt_gp.stax.dimension_numbers import conv_dimension_numbers

__all__ = ['dense', 'conv', 'CONV', 'CONV_TRANSPOSE', 'affine_params']

_L = keras.layers
# Convolution classes and their number of spatial dimensions.
CONV = {c: n for n, c in ((1, getattr(_L, 'Conv1D', None)),
                          (2, getattr(_L, 'Conv2D', None)),
                          (3, getattr(_L, 'Conv3D', None))) if c is not None}
CONV_TRANSPOSE = {c: n for n, c in (
    (1, getattr(_L, 'Conv1DTranspose', None)),
    (2, getattr(_L, 'Conv2DTranspose', None)),
    (3, getattr(_L, 'Conv3DTranspose', None))) if c is not None}


def _as_float_tensor(value):
  return tf.convert_to_tensor(value, tf.float32) if not isinstance(
      value, tf.Variable) else tf.cast(value, tf.float32)


def affine_params(opts, kernel, bias, W_std, b_std, fan_in, b_shape):
  """stax parameters reproducing Keras weights `kernel`, `bias`."""
  if bias is not None and b_std is None:
    raise ValueError('init_from_model=True needs b_std (not None) for layers '
                     'with a bias: b_std=None drops the biases the model '
                     'has.')
  W = tf.constant(np.asarray(kernel), tf.float32)
  b = None if bias is None else tf.reshape(
      tf.constant(np.asarray(bias), tf.float32), b_shape)
  if opts.parameterization == 'ntk':
    W = W * (fan_in ** 0.5) / _as_float_tensor(W_std)
    if b is not None:
      b_std_value = _as_float_tensor(b_std)
      if tf.executing_eagerly() and float(b_std_value) == 0:
        raise ValueError('init_from_model=True with parameterization="ntk" '
                         'needs b_std > 0 for layers with a bias (the NTK '
                         'parameterization stores bias / b_std).')
      b = b / b_std_value
  return W, b


def dense(parser, call, ins, metas):
  """`keras.layers.Dense` -> `stax.Dense` (+ its activation)."""
  op, meta = call.op, metas[0]
  need_axis(call, meta, -1, 'Dense acts on')
  act = parser.activation_net(call, op.activation)
  units, use_bias, name, rank = int(op.units), bool(op.use_bias), op.name, \
      meta.rank
  parser.weight_layers[name] = op
  token = ('layer', id(op))

  def build(opts: BuildOptions):
    W, b = opts.W(name), opts.b(name, use_bias)
    net = stax.Dense(units, W, b, channel_axis=-1,
                     parameterization=opts.parameterization)
    if opts.from_model:
      fan_in = int(op.kernel.shape[0])
      params = affine_params(opts, op.kernel.numpy(),
                             op.bias.numpy() if use_bias else None, W, b,
                             fan_in, [1] * (rank - 1) + [units])
      net = _layers.FixedParams(net, params)
    a = parser.activation_net(call, op.activation)
    return net if a is None else stax.serial(net, a)

  parser.add_step(call, ins, build, Meta(
      rank, Cell(rank - 1), act is None, frozenset([token])), 'weight')


def conv(parser, call, ins, metas):
  """`keras.layers.Conv*D(Transpose)` -> `stax.Conv`/`ConvTranspose`."""
  op, meta = call.op, metas[0]
  transpose = type(op) in CONV_TRANSPOSE
  n = (CONV_TRANSPOSE if transpose else CONV)[type(op)]
  if tuple(op.dilation_rate) != (1,) * n:
    raise unsupported(call, f'dilation_rate={tuple(op.dilation_rate)} is '
                      f'not supported (nt_gp.stax convolutions are not '
                      f'dilated)')
  if getattr(op, 'groups', 1) != 1:
    raise unsupported(call, (
        f'groups={op.groups}: each output channel of a grouped convolution '
        f'sees a fixed fraction of the input channels, which nt_gp.stax '
        f'convolutions do not model'))
  if transpose and getattr(op, 'output_padding', None) is not None:
    raise unsupported(call, f'output_padding={op.output_padding} is not '
                      f'supported')
  padding = str(op.padding).lower()
  if padding not in ('valid', 'same'):
    raise unsupported(call, f'padding={op.padding!r} is not supported (only '
                      f'"valid" and "same")')
  channels_first = op.data_format == 'channels_first'
  rank = meta.rank
  if rank != n + 2:
    raise unsupported(call, f'its input has rank {rank}, not {n + 2}')
  ca = need_axis(call, meta, 1 if channels_first else -1,
                 f'{type(op).__name__}({op.data_format}) convolves over')
  act = parser.activation_net(call, op.activation)
  lhs, rhs, _ = conv_dimension_numbers(n, channels_first)
  spatial = rhs[:n]
  rhs = spatial + ('OI' if transpose else 'IO')
  dn = (lhs, rhs, lhs)
  filters, use_bias, name = int(op.filters), bool(op.use_bias), op.name
  kernel_size, strides = tuple(op.kernel_size), tuple(op.strides)
  parser.weight_layers[name] = op
  layer_fn = stax.ConvTranspose if transpose else stax.Conv

  def build(opts: BuildOptions):
    W, b = opts.W(name), opts.b(name, use_bias)
    net = layer_fn(filters, kernel_size, strides, padding.upper(), W, b,
                   dimension_numbers=dn,
                   parameterization=opts.parameterization)
    if opts.from_model:
      kernel = op.kernel.numpy()
      c_in = kernel.shape[n + 1] if transpose else kernel.shape[n]
      if transpose:   # Keras convolves with the flipped kernel.
        kernel = kernel[tuple([slice(None, None, -1)] * n)]
      fan_in = c_in * int(np.prod(kernel_size))
      b_shape = [filters if c == 'C' else 1 for c in lhs]
      params = affine_params(opts, kernel,
                             op.bias.numpy() if use_bias else None, W, b,
                             fan_in, b_shape)
      net = _layers.FixedParams(net, params)
    a = parser.activation_net(call, op.activation)
    return net if a is None else stax.serial(net, a)

  parser.add_step(call, ins, build, Meta(
      rank, Cell(ca), act is None, frozenset([('layer', id(op))])), 'weight')
