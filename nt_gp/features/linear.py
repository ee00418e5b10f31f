r"""Feature maps of `Dense` and `Conv`.

`Dense`, NTK parameterisation (nt_gp's rule: ``nngp' = σ_w² nngp + σ_b²``,
``ntk' = nngp' + σ_w² ntk``) is exact on features:

    φ' = [σ_w φ, σ_b],     ψ' = [φ', σ_w ψ];

standard parameterisation (``ntk' = n nngp + σ_w² ntk (+ 1 with a bias)``,
`n` the incoming width over `s[0]`):

    φ' = [σ_w φ, σ_b],     ψ' = [sqrt(n) φ, σ_w ψ (, 1)].

`Conv` averages the covariance over the filter window,
``out[p, p'] = 1/|F| Σ_f in[p + f, p' + f]`` (zero padding for 'SAME'),
which is the inner product of patches ``[φ_{p+f}]_f / sqrt(|F|)``. When the
patch is no longer than `feature_dim` the patches are the features (exact);
otherwise they are projected to `feature_dim` by an SRHT (unbiased,
`O(|F| d log(|F| d))` per position and no `|F| d x m` random filter). The affine terms then follow the `Dense` rules
with the patch features, ``fan_in = C |F|`` in the standard
parameterisation.
"""
import numpy as np
import tensorflow as tf

from nt_gp.features.build import (Built, Spec, UnsupportedLayer, check_layout,
                                  hyperparameter, rebuild, rule_for)
from nt_gp.features import sketch
from nt_gp.ops import spatial as ops_spatial

__all__ = ['dense_rule', 'conv_rule']


def _constant(phi, value):
  """`value` as one extra feature coordinate at every position."""
  return tf.fill(tf.concat([tf.shape(phi)[:-1], [1]], 0),
                 tf.cast(value, phi.dtype))


def _parameterization(call):
  p = str(call.arguments.get('parameterization', 'ntk')).lower()
  s = tuple(call.arguments.get('s', (1, 1)))
  return p, s


def _affine(phi, psi, patch_phi, patch_both, call, fan_in, dtype):
  """The affine part shared by Dense (patches = identity) and Conv."""
  args = call.arguments
  w = hyperparameter(args['W_std'], dtype)
  has_bias = args['b_std'] is not None
  parameterization, s = _parameterization(call)
  new_phi = w * patch_phi(phi)
  if has_bias:
    new_phi = tf.concat(
        [new_phi, _constant(new_phi, hyperparameter(args['b_std'], dtype))],
        -1)
  if psi is None:
    return new_phi, None
  if parameterization == 'ntk':
    new_psi = patch_both(w * phi, w * psi)
    if has_bias:
      new_psi = tf.concat(
          [new_psi, _constant(new_psi, hyperparameter(args['b_std'], dtype))],
          -1)
  else:
    new_psi = patch_both(tf.cast(np.sqrt(fan_in / s[0]), dtype) * phi, w * psi)
    if has_bias:
      new_psi = tf.concat([new_psi, _constant(new_psi, 1.)], -1)
  return new_phi, new_psi


@rule_for('Dense')
def dense_rule(call, spec: Spec, ctx) -> Built:
  """Feature rule of `Dense` (exact, no randomness)."""
  check_layout(call, spec.shape)
  out_shape = rebuild(call)[0].shape_fn(spec.shape)
  has_bias = call.arguments['b_std'] is not None
  parameterization, _ = _parameterization(call)
  nngp_dim = spec.nngp_dim + has_bias
  if parameterization == 'ntk':
    ntk_dim = nngp_dim + spec.ntk_dim
  else:
    ntk_dim = spec.nngp_dim + spec.ntk_dim + has_bias
  fan_in = spec.shape[-1]

  def apply(params, feats):
    phi, psi = feats

    def both(phi, psi):
      return tf.concat([phi, psi], -1)
    return _affine(phi, psi, lambda t: t, both, call, fan_in, phi.dtype)

  return Built(Spec(tuple(out_shape), nngp_dim, ntk_dim), (), apply)


def _patches(x, filt, strides, padding):
  """Patches `(N, *out, |F| d)` (offset-major) of `(N, *spatial, d)` features,
  zero-padded ('SAME') or periodically padded ('CIRCULAR') like the layer."""
  spatial_sizes = x.shape[1:-1]
  out_sizes = []
  for j, (size, k, st) in enumerate(zip(spatial_sizes, filt, strides)):
    pads = (0, 0) if padding == 'VALID' else ops_spatial.same_pads(size, k, st)
    x = ops_spatial.pad_axes(x, (1 + j,), pads,
                             circular=padding == 'CIRCULAR')
    out_sizes.append((size + pads[0] + pads[1] - k) // st + 1)
  parts = []
  rank = x.shape.rank
  for offset in np.ndindex(*filt):
    begin = [0] + list(offset) + [0]
    end = [0] + [o + (n - 1) * st + 1 for o, n, st in zip(offset, out_sizes,
                                                         strides)] + [0]
    # Batch and channel axes whole (masks keep the static shapes).
    mask = 1 | (1 << (rank - 1))
    parts.append(tf.strided_slice(x, begin, end, [1, *strides, 1],
                                  begin_mask=mask, end_mask=mask))
  return tf.concat(parts, -1)


@rule_for('Conv')
def conv_rule(call, spec: Spec, ctx) -> Built:
  """Feature rule of `Conv` (patches, randomly projected when long)."""
  args = call.arguments
  if args.get('dimension_numbers') is not None:
    raise UnsupportedLayer(
        'Conv: feature maps need the default channels-last layout '
        '(dimension_numbers=None).')
  out_shape = rebuild(call)[0].shape_fn(spec.shape)
  filt = tuple(int(f) for f in args['filter_shape'])
  n = len(filt)
  strides = tuple(int(s) for s in (args['strides'] or (1,) * n))
  padding = str(getattr(args['padding'], 'value', args['padding'])).upper()
  size = int(np.prod(filt))
  has_bias = args['b_std'] is not None
  fan_in = spec.shape[-1] * size

  def projection(in_dim):
    """None (exact patches) or the SRHT projecting a patch to feature_dim."""
    if size * in_dim <= ctx.feature_dim:
      return None
    return sketch.projection_params(ctx.rng, size * in_dim, ctx.feature_dim)

  proj_phi = projection(spec.nngp_dim)
  proj_both = projection(spec.nngp_dim + spec.ntk_dim)

  def dim(in_dim, proj):
    return size * in_dim if proj is None else ctx.feature_dim

  nngp_dim = dim(spec.nngp_dim, proj_phi) + has_bias
  ntk_dim = dim(spec.nngp_dim + spec.ntk_dim, proj_both) + has_bias
  scale = 1 / np.sqrt(size)

  def convolve(x, proj):
    p = _patches(x, filt, strides, padding) * tf.cast(scale, x.dtype)
    return p if proj is None else sketch.project(p, proj)

  def apply(params, feats):
    phi, psi = feats
    p_phi, p_both = params

    def both(phi, psi):
      return convolve(tf.concat([phi, psi], -1), p_both)
    return _affine(phi, psi, lambda t: convolve(t, p_phi), both, call,
                   fan_in, phi.dtype)

  return Built(Spec(tuple(out_shape), nngp_dim, ntk_dim),
               (proj_phi, proj_both), apply)
