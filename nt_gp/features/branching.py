r"""Feature maps of combinators and branching layers.

* `serial`, `repeat`: maps composed in order (each repetition draws its own
  random matrices, as each has its own weights);
* `parallel`: one map per branch;
* `FanOut(n)`: `n` copies of the features;
* `FanInSum`: nt_gp sums the branches' kernels (independent branches), which
  is the inner product of the concatenated features;
* `FanInConcat` along channels: the kernel is the channel-weighted mean
  ``Σ_i C_i k_i / Σ_i C_i`` (plain mean when all widths are equal), i.e.
  the concatenation of ``sqrt(w_i) φ_i``;
* `Identity`: unchanged.
"""
import numpy as np
import tensorflow as tf

from nt_gp.features.build import (Built, Spec, UnsupportedLayer, build,
                                  rule_for)

__all__ = []


def _is_list(spec):
  return isinstance(spec, (list, tuple))


def _chain(calls, spec, ctx):
  built = []
  for call in calls:
    b = build(call, spec, ctx)
    built.append(b)
    spec = b.out

  def apply(params, feats):
    for b, p in zip(built, params):
      feats = b.apply(p, feats)
    return feats
  return Built(spec, tuple(b.params for b in built), apply)


@rule_for('serial')
def serial_rule(call, spec, ctx) -> Built:
  return _chain(call.arguments['layers'], spec, ctx)


@rule_for('repeat')
def repeat_rule(call, spec, ctx) -> Built:
  return _chain([call.arguments['layer']] * int(call.arguments['n']), spec,
                ctx)


@rule_for('parallel')
def parallel_rule(call, spec, ctx) -> Built:
  layers = call.arguments['layers']
  if not _is_list(spec) or len(spec) != len(layers):
    raise ValueError(f'parallel with {len(layers)} layers needs as many '
                     f'inputs (use FanOut before it).')
  built = [build(c, s, ctx) for c, s in zip(layers, spec)]

  def apply(params, feats):
    return [b.apply(p, f) for b, p, f in zip(built, params, feats)]
  return Built([b.out for b in built], tuple(b.params for b in built), apply)


@rule_for('Identity')
def identity_rule(call, spec, ctx) -> Built:
  return Built(spec, (), lambda params, feats: feats)


@rule_for('FanOut')
def fan_out_rule(call, spec, ctx) -> Built:
  num = int(call.arguments['num'])
  return Built([spec] * num, (),
               lambda params, feats: [feats] * num)


def _fan_in_specs(spec, name):
  if not _is_list(spec):
    raise ValueError(f'{name} needs several branches (use FanOut or parallel '
                     f'before it).')
  return list(spec)


def _concat_features(feats, scales):
  phis = [s * f[0] for f, s in zip(feats, scales)]
  psis = [None if f[1] is None else s * f[1] for f, s in zip(feats, scales)]
  psi = None if psis[0] is None else tf.concat(psis, -1)
  return tf.concat(phis, -1), psi


@rule_for('FanInSum')
def fan_in_sum_rule(call, spec, ctx) -> Built:
  specs = _fan_in_specs(spec, 'FanInSum')
  if any(s.shape != specs[0].shape for s in specs):
    raise ValueError(f'FanInSum: branch shapes differ: '
                     f'{[s.shape for s in specs]}.')
  out = Spec(specs[0].shape, sum(s.nngp_dim for s in specs),
             sum(s.ntk_dim for s in specs))

  def apply(params, feats):
    return _concat_features(feats, [1.] * len(feats))
  return Built(out, (), apply)


@rule_for('FanInConcat')
def fan_in_concat_rule(call, spec, ctx) -> Built:
  specs = _fan_in_specs(spec, 'FanInConcat')
  rank = len(specs[0].shape)
  if int(call.arguments.get('axis', -1)) % rank != rank - 1:
    raise UnsupportedLayer('FanInConcat: feature maps need concatenation '
                           'along the channel axis (axis=-1).')
  widths = [s.shape[-1] for s in specs]
  if all(w == widths[0] for w in widths):
    widths = [1] * len(widths)
  scales = [float(np.sqrt(w / sum(widths))) for w in widths]
  shape = specs[0].shape[:-1] + (sum(s.shape[-1] for s in specs),)
  out = Spec(shape, sum(s.nngp_dim for s in specs),
             sum(s.ntk_dim for s in specs))

  def apply(params, feats):
    return _concat_features(feats, scales)
  return Built(out, (), apply)
