"""Converters of Keras layers acting on each position: activations and
`LayerNormalization` (with its trained scale and offset)."""
import dataclasses
import functools
import numbers

import keras
import tensorflow as tf

from nt_gp import stax
from nt_gp.keras import _activations
from nt_gp.keras import _layers
from nt_gp.keras._facts import Meta, check_gaussian, unsupported

__all__ = ['activation', 'relu', 'leaky_relu', 'elu', 'layer_norm']


def activation(parser, call, ins, metas, fn=None):
  """`Activation` (or the function `fn` of an activation layer) -> a stax
  nonlinearity; nothing for the identity."""
  fn = call.op.activation if fn is None else fn
  meta = metas[0]
  net = parser.activation_net(call, fn)
  if net is None:
    return parser.set_alias(call, ins[0])
  check_gaussian(call, meta, 'a nonlinearity')

  step = None

  def build(opts):
    net = parser.activation_net(call, fn)
    if step.fused_scale:
      net = _layers.FusedScaleActivation(
          net, _activations.scale_gradient_layer(fn, parser.deg))
    return net
  step = parser.add_step(call, ins, build, Meta(meta.rank, meta.cell, False,
                                                meta.sources), 'activation')
  step.activation = fn


def relu(parser, call, ins, metas):
  """The `ReLU` layer (slope, cap and threshold as configured)."""
  op = call.op
  return activation(parser, call, ins, metas, functools.partial(
      keras.activations.relu, negative_slope=float(op.negative_slope),
      max_value=None if op.max_value is None else float(op.max_value),
      threshold=float(op.threshold)))


def leaky_relu(parser, call, ins, metas):
  """The `LeakyReLU` layer."""
  return activation(parser, call, ins, metas, functools.partial(
      keras.activations.leaky_relu,
      negative_slope=float(call.op.negative_slope)))


def elu(parser, call, ins, metas):
  """The `ELU` layer."""
  return activation(parser, call, ins, metas, functools.partial(
      keras.activations.elu, alpha=float(call.op.alpha)))


def layer_norm(parser, call, ins, metas):
  """`LayerNormalization` -> `stax.LayerNorm` (+ its trained scale/offset)."""
  op, meta = call.op, metas[0]
  check_gaussian(call, meta, 'LayerNormalization')
  axis = op.axis
  axes = [axis] if isinstance(axis, numbers.Integral) else list(axis)
  axes = sorted(int(a) % meta.rank for a in axes)
  if 0 in axes:
    raise unsupported(call, 'normalising over the batch axis is not '
                      'supported')
  ca = meta.cell.axis
  if ca is None or ca not in axes:
    raise unsupported(call, (
        f'it normalises over axes {axes}, which must include the channel '
        f'axis ({ca}) to have an infinite-width limit'))
  eps = float(op.epsilon)
  center = bool(op.center) and not getattr(op, 'rms_scaling', False)
  scale = bool(op.scale)

  step = None

  def build(opts):
    net = stax.LayerNorm(axis=tuple(axes), eps=eps, batch_axis=0,
                         channel_axis=ca)
    if not (scale or center):
      return net
    affine = _layers.NormAffine(scale, center, ca,
                                scale_ntk=step.scale_ntk == 'norm')
    if opts.from_model:
      shape = [1] * meta.rank
      shape[ca] = -1
      gamma = tf.reshape(tf.constant(op.gamma.numpy()), shape) if scale \
          else None
      beta = tf.reshape(tf.constant(op.beta.numpy()), shape) if center \
          else None
      affine = _layers.FixedParams(affine, (gamma, beta))
    return stax.serial(net, affine)
  step = parser.add_step(call, ins, build, dataclasses.replace(meta),
                         'layer_norm_scale' if scale else 'layer_norm')
