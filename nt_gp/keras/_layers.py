"""Small stax layers used to assemble a Keras graph into a stax network.

* `Route`: picks (and repeats) entries of the list of live activations, so a
  graph with branches becomes a `serial` of stages.
* `Keep`: the identity for activations that later layers still need; it
  declares a full spatial covariance downstream, so the diagonal-only layout
  of a `Flatten` in one branch is not used while another branch is live.
* `Named`: runs a layer and prefixes its errors with the Keras layer's name.
* `Scale`: multiplication by a constant.
* `SumUncorrelated`: the sum of uncorrelated branches, at most one of which is
  not a zero-mean Gaussian (e.g. a ReLU shortcut plus a convolution).
* `NormAffine`, `FusedScaleActivation`: the trainable scale and offset of
  `LayerNormalization`.
* `FixedParams`: a layer whose `init_fn` returns given parameters.
"""
import functools

import tensorflow as tf

from nt_gp.stax import branching
from nt_gp.stax import rule_spec
from nt_gp.stax.layer import layer
from nt_gp.stax.requirements import Diagonal, requires
from nt_gp.stax.shapes import make_init_fn

__all__ = ['Route', 'Keep', 'Named', 'Scale', 'SumUncorrelated', 'NormAffine',
           'FusedScaleActivation', 'FixedParams']


def _pick(spec, items):
  if isinstance(spec, int):
    return items[spec]
  return [_pick(s, items) for s in spec]


@layer
def Route(spec, single_input: bool, axes=None):
  """Maps a list of activations to `spec` (ints index the list; nested lists
  build nested lists); `single_input` wraps a lone input into a list first.

  `axes=(batch_axis, channel_axis)` declares the layout of the network's
  inputs (used on the first layer of a converted model).
  """
  def pick(x):
    items = [x] if single_input else list(x)
    return _pick(spec, items)

  def shape_fn(shapes):
    return pick(shapes)

  def apply_fn(params, inputs, **kwargs):
    return pick(inputs)

  reqs = {}
  if axes is not None:
    reqs = dict(batch_axis=axes[0], channel_axis=axes[1])

  @requires(**reqs)
  @rule_spec.capabilities(packed=True)
  def rule(k, **kwargs):
    return pick(k)
  return make_init_fn(shape_fn), apply_fn, rule


@layer
def Keep():
  """The identity, requiring full spatial covariances downstream."""
  def apply_fn(params, inputs, **kwargs):
    return inputs

  @requires(diagonal_spatial=Diagonal())
  @rule_spec.capabilities(packed=True)
  def rule(k, **kwargs):
    return k
  return make_init_fn(lambda shape: shape), apply_fn, rule


@layer
def Named(label: str, net):
  """`net` with errors of its `kernel_fn` prefixed by `label`."""
  init_fn, apply_fn, kernel_fn = net

  @rule_spec.runs(kernel_fn)
  def rule(k, **kwargs):
    try:
      return kernel_fn(k, **kwargs)
    except (ValueError, NotImplementedError) as e:
      raise ValueError(f'{label}: {e}') from e
  return init_fn, apply_fn, rule


@layer
def Scale(c: float):
  """Multiplies activations by the constant `c` (covariances by `c²`)."""
  def apply_fn(params, inputs, **kwargs):
    x = tf.convert_to_tensor(inputs)
    return tf.cast(c, x.dtype) * x

  @requires(diagonal_spatial=Diagonal())
  @rule_spec.capabilities(packed=True)
  def rule(k, **kwargs):
    return k.scale(tf.constant(float(c) ** 2, k.dtype))
  return make_init_fn(lambda shape: shape), apply_fn, rule


@layer
def SumUncorrelated():
  """Sum of uncorrelated branches, at most one with a non-zero mean.

  The cross-covariances of the branches vanish (a zero-mean Gaussian branch
  has its own weights, independent of the other branches), so the NNGP, NTK
  and covariances add; the sum is Gaussian only if every branch is.
  """
  def shape_fn(shapes):
    return shapes[0]

  def apply_fn(params, inputs, **kwargs):
    return functools.reduce(tf.add, [tf.convert_to_tensor(x) for x in inputs])

  @rule_spec.capabilities(packed=True)
  def rule(ks, **kwargs):
    ks = branching.check_fan_in(ks, 'SumUncorrelated', same_shapes=True)
    if sum(not k.is_gaussian for k in ks) > 1:
      raise ValueError('at most one summand may be a non-Gaussian activation '
                       '(two non-zero-mean summands are correlated through '
                       'their means).')
    return branching.sum_kernels(ks, all(k.is_gaussian for k in ks))
  return make_init_fn(shape_fn), apply_fn, rule


@layer
def NormAffine(scale: bool, center: bool, channel_axis: int = -1,
               scale_ntk: bool = True):
  """`gamma * x + beta` per channel, initialised to `gamma = 1`, `beta = 0`.

  The kernel of the output at initialisation is the input's. A trained
  `beta` adds 1 to the NTK. The gradient of `gamma_c` is the normalised
  activation `x_c` itself: where only weight layers (which average it over
  channels) follow, it adds `nngp` to the NTK (`scale_ntk=True`); before a
  nonlinearity `FusedScaleActivation` accounts for it instead.
  """
  def params_fn(key, input_shape):
    c = input_shape[channel_axis]
    shape = [1] * len(input_shape)
    shape[channel_axis] = c
    gamma = tf.ones(shape) if scale else None
    beta = tf.zeros(shape) if center else None
    return gamma, beta

  def apply_fn(params, inputs, **kwargs):
    x = tf.convert_to_tensor(inputs)
    gamma, beta = params
    if gamma is not None:
      x = x * tf.cast(gamma, x.dtype)
    if beta is not None:
      x = x + tf.cast(beta, x.dtype)
    return x

  @requires(diagonal_spatial=Diagonal(), channel_axis=channel_axis)
  @rule_spec.capabilities(packed=True)
  def rule(k, **kwargs):
    if k.ntk is None:
      return k
    ntk = k.ntk
    if scale and scale_ntk:
      ntk = ntk + k.nngp
    if center:
      ntk = ntk + tf.ones((), ntk.dtype)
    return k.replace(ntk=ntk)
  return make_init_fn(lambda shape: shape, params_fn), apply_fn, rule


@layer
def FusedScaleActivation(activation, g):
  """An activation `phi` whose input `u` carries the gradient `u` of a
  per-channel scale at initialisation (`LayerNormalization`'s gamma, possibly
  pooled): `ntk' = E[phi'(u) phi'(u')] ntk + E[g(u) g(u')]` with
  `g(u) = u phi'(u)`, whose NNGP is `g`'s kernel (a stax layer)."""
  init_fn, apply_fn, act_kernel = activation
  g_kernel = g[2]

  @rule_spec.runs(act_kernel)
  def rule(k, **kwargs):
    out = act_kernel(k, **kwargs)
    if out.ntk is None:
      return out
    extra = g_kernel(k.replace(ntk=None), **kwargs).nngp
    return out.replace(ntk=out.ntk + extra)
  # Both kernels must return the layout (packed or not) of their input, so
  # that their NTKs add up.
  rule_spec.declare(rule, packed=rule_spec.spec_of(act_kernel).packed and
                    rule_spec.spec_of(g_kernel).packed)
  return init_fn, apply_fn, rule


def FixedParams(net, params):
  """`net` whose `init_fn` ignores its seed and returns `params`."""
  init_fn, apply_fn, kernel_fn = net
  return (make_init_fn(init_fn.shape_fn, lambda key, shape: params), apply_fn,
          kernel_fn)
