"""Converters of linear parameter-free Keras layers: average pooling,
global average pooling, `Flatten` and `Rescaling` (a Gaussian input stays
Gaussian through them)."""
import dataclasses

import numpy as np

from nt_gp import stax
from nt_gp.keras import _layers
from nt_gp.keras._facts import Cell, Meta, need_axis, unsupported

__all__ = ['avg_pool', 'global_avg', 'flatten', 'rescaling']


def _spatial_layout(call, meta, data_format, what):
  channels_first = data_format == 'channels_first'
  return need_axis(call, meta, 1 if channels_first else -1, what)


def avg_pool(parser, call, ins, metas):
  """`AveragePooling*D` -> `stax.AvgPool` (edges normalised as Keras)."""
  op, meta = call.op, metas[0]
  padding = str(op.padding).lower()
  if padding not in ('valid', 'same'):
    raise unsupported(call, f'padding={op.padding!r} is not supported')
  ca = _spatial_layout(call, meta, op.data_format,
                       f'{type(op).__name__}({op.data_format}) keeps')
  window = tuple(int(w) for w in op.pool_size)
  strides = tuple(int(s) for s in (op.strides or op.pool_size))

  def build(opts):
    # Keras (TensorFlow) averages over the non-padded entries of a window.
    return stax.AvgPool(window, strides, padding.upper(),
                        normalize_edges=padding == 'same', batch_axis=0,
                        channel_axis=ca)
  parser.add_step(call, ins, build, dataclasses.replace(meta), 'linear')


def global_avg(parser, call, ins, metas):
  """`GlobalAveragePooling*D` -> `stax.GlobalAvgPool`."""
  op, meta = call.op, metas[0]
  if getattr(op, 'keepdims', False):
    raise unsupported(call, 'keepdims=True is not supported')
  ca = _spatial_layout(call, meta, op.data_format,
                       f'{type(op).__name__}({op.data_format}) keeps')

  def build(opts):
    return stax.GlobalAvgPool(batch_axis=0, channel_axis=ca)
  parser.add_step(call, ins, build, Meta(2, Cell(1), meta.gaussian,
                                         meta.sources), 'linear')


def flatten(parser, call, ins, metas):
  """`Flatten` -> `stax.Flatten` (nothing for rank-2 inputs)."""
  meta = metas[0]
  if meta.rank == 2:
    return parser.set_alias(call, ins[0])

  def build(opts):
    return stax.Flatten()
  # As stax.Flatten: the output is not treated as Gaussian.
  parser.add_step(call, ins, build, Meta(2, Cell(1), False, meta.sources),
                  'linear')


def rescaling(parser, call, ins, metas):
  """`Rescaling` by a scalar without offset -> a constant scale."""
  op, meta = call.op, metas[0]
  scale, offset = np.asarray(op.scale), np.asarray(op.offset)
  if scale.size != 1:
    raise unsupported(call, 'a per-channel scale is not supported')
  if np.any(offset != 0):
    raise unsupported(call, 'a non-zero offset is not supported')
  c = float(scale.reshape(()))

  def build(opts):
    return _layers.Scale(c)
  parser.add_step(call, ins, build, dataclasses.replace(meta), 'linear')
