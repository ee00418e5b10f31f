r"""Feature maps of pooling and readout layers.

`AvgPool`, `SumPool`, `GlobalAvgPool` and `GlobalSumPool` are linear maps of
each channel, and nt_gp's kernel rule is the same map applied to both
arguments of the covariance, so the layer's own function applied to the
features is their exact feature map.

`Flatten` keeps the mean of the covariance over the spatial diagonal,
``(1/P) Σ_p φ_p(x) · φ_p(y)``: the features of all `P` positions,
concatenated and scaled by ``1/sqrt(P)``, randomly projected to
`feature_dim` when longer.
"""
import numpy as np
import tensorflow as tf

from nt_gp.features import sketch
from nt_gp.features.build import (Built, Spec, check_layout, rebuild,
                                  rule_for)

__all__ = ['pooling_rule', 'flatten_rule']


@rule_for('AvgPool', 'SumPool', 'GlobalAvgPool', 'GlobalSumPool')
def pooling_rule(call, spec: Spec, ctx) -> Built:
  """Feature rule of a pooling layer (exact, no randomness)."""
  check_layout(call, spec.shape)
  init_fn, apply_fn, _ = rebuild(call)
  out_shape = init_fn.shape_fn(spec.shape)

  def apply(params, feats):
    phi, psi = feats
    return apply_fn((), phi), None if psi is None else apply_fn((), psi)

  return Built(Spec(tuple(out_shape), spec.nngp_dim, spec.ntk_dim), (), apply)


@rule_for('Flatten')
def flatten_rule(call, spec: Spec, ctx) -> Built:
  """Feature rule of `Flatten`."""
  if call.arguments.get('batch_axis', 0) != 0 or call.arguments.get(
      'batch_axis_out', 0) not in (0, -2):
    check_layout(call, spec.shape)
    from nt_gp.features.build import UnsupportedLayer  # pylint: disable=g-import-not-at-top
    raise UnsupportedLayer('Flatten: feature maps need batch_axis=0 and '
                           'batch_axis_out=0.')
  out_shape = rebuild(call)[0].shape_fn(spec.shape)
  positions = int(np.prod(spec.shape[1:-1]))

  def projection(dim):
    flat = positions * dim
    if flat <= ctx.feature_dim or dim == 0:
      return None
    return sketch.projection_params(ctx.rng, flat, ctx.feature_dim)

  proj_phi, proj_psi = projection(spec.nngp_dim), projection(spec.ntk_dim)

  def out_dim(dim, proj):
    return positions * dim if proj is None else ctx.feature_dim

  def apply(params, feats):
    def flat(t, proj):
      if t is None:
        return None
      t = tf.reshape(t, [tf.shape(t)[0], positions * t.shape[-1]])
      t = t * tf.cast(1 / np.sqrt(positions), t.dtype)
      return t if proj is None else sketch.project(t, proj)
    return flat(feats[0], params[0]), flat(feats[1], params[1])

  out = Spec(tuple(out_shape), out_dim(spec.nngp_dim, proj_phi),
             out_dim(spec.ntk_dim, proj_psi))
  return Built(out, (proj_phi, proj_psi), apply)
