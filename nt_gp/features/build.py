"""Building a feature map from a network's layer records.

A layer's feature rule is a function ``rule(call, spec, ctx) -> Built``:

* `call` is the layer's `nt_gp.stax.LayerCall` (constructor name and
  arguments, from `nt_gp.stax.describe`);
* `spec` describes the incoming features (`Spec`, or a list of them after a
  `FanOut`): the network's nominal activation shape, which the rules need for
  the standard parameterisation and for concatenations, and the dimensions of
  the incoming NNGP and NTK features;
* `ctx` holds the options and the random-matrix source.

`Built.apply(params, feats)` maps feature pairs `(nngp_feat, ntk_feat)`
(tensors with the feature axis last; `ntk_feat` is None when only NNGP
features are asked for) to the layer's output features, with `params` the
random matrices the rule drew at build time (cast to the input dtype). The
table `RULES` maps constructor names to rules; layers missing from it have no
feature map.
"""
import dataclasses
from typing import Any, Callable, Tuple

import numpy as np
import tensorflow as tf

from nt_gp.features.random import RandomMatrices

__all__ = ['Spec', 'Context', 'Built', 'RULES', 'build', 'UnsupportedLayer',
           'hyperparameter', 'rebuild']


class UnsupportedLayer(ValueError):
  """A layer of the network has no feature map."""


@dataclasses.dataclass(frozen=True)
class Spec:
  """Incoming features of a layer.

  Attributes:
    shape: nominal activation shape of the finite network, `(N, ..., C)`.
    nngp_dim: dimension of the NNGP features.
    ntk_dim: dimension of the NTK features (0 while the NTK is zero).
  """
  shape: Tuple[int, ...]
  nngp_dim: int
  ntk_dim: int


@dataclasses.dataclass
class Context:
  """Options of a feature map and its source of random matrices.

  `feature_dims` has one entry per nonlinearity (in network order, the last
  one repeated); `feature_dim` is the entry of the next nonlinearity, which
  projections before it also use.
  """
  rng: RandomMatrices
  feature_dims: Tuple[int, ...]
  sketch_dim: int
  activation_method: str
  hermite_degree: int
  quadrature_nodes: int
  hermite_tolerance: float
  path: Tuple[str, ...] = ()
  nonlinearities: int = 0

  @property
  def feature_dim(self) -> int:
    return self.feature_dims[min(self.nonlinearities,
                                 len(self.feature_dims) - 1)]

  def next_nonlinearity(self) -> int:
    """The feature dimension of a nonlinearity; moves to the next entry."""
    dim = self.feature_dim
    self.nonlinearities += 1
    return dim


@dataclasses.dataclass
class Built:
  """A built layer: output spec, random matrices, and the feature map."""
  out: Any
  params: Any
  apply: Callable


RULES = {}


def rule_for(*names):
  """Registers a feature rule for the stax constructors `names`."""
  def register(fn):
    for n in names:
      RULES[n] = fn
    return fn
  return register


def build(call, spec, ctx: Context) -> Built:
  """Builds the feature map of the layer `call` on features `spec`."""
  rule = RULES.get(call.name)
  where = ' > '.join(ctx.path + (call.name,))
  if rule is None:
    raise UnsupportedLayer(
        f'nt_gp.features has no feature map for the layer {call.name} (at '
        f'{where}). Layers with feature maps: {", ".join(sorted(RULES))}. '
        f'Use the exact kernel_fn for this network instead.')
  ctx.path = ctx.path + (call.name,)
  try:
    return rule(call, spec, ctx)
  finally:
    ctx.path = ctx.path[:-1]


def hyperparameter(value, dtype):
  """A hyperparameter (number, tensor or tf.Variable) as a tensor of `dtype`."""
  if isinstance(value, tf.Variable):
    return tf.cast(value.read_value(), dtype)
  if isinstance(value, (int, float, np.number, np.ndarray)):
    # Straight to `dtype`: tf.cast would round a Python float to float32 first.
    return tf.constant(value, dtype)
  return tf.cast(value, dtype)


def rebuild(call):
  """The stax layer `(init_fn, apply_fn, kernel_fn)` that `call` describes."""
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  return getattr(stax, call.name)(**call.arguments)


def check_layout(call, shape):
  """Feature maps keep the batch axis first and channels last."""
  args = call.arguments
  rank = len(shape)
  if args.get('batch_axis', 0) % rank != 0:
    raise UnsupportedLayer(
        f'{call.name}: feature maps need batch_axis=0, got '
        f'{args["batch_axis"]}.')
  ca = args.get('channel_axis', -1)
  if ca % rank != rank - 1:
    raise UnsupportedLayer(
        f'{call.name}: feature maps need channels last (channel_axis=-1), '
        f'got {ca}.')
