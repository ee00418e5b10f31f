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
otherwise they are randomly projected to `feature_dim` (a convolution with a
Gaussian filter), unbiased. The affine terms then follow the `Dense` rules
with the patch features, ``fan_in = C |F|`` in the standard
parameterisation.
"""
import numpy as np
import tensorflow as tf

from nt_gp.features.build import (Built, Spec, UnsupportedLayer, check_layout,
                                  hyperparameter, rebuild, rule_for)
from nt_gp.ops import spatial

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
  parameterization, _ = _parameterization(call)
  fan_in = spec.shape[-1] * size

  def filter_for(in_dim):
    """A filter mapping `in_dim` channels to patch features."""
    if size * in_dim <= ctx.feature_dim:
      eye = np.eye(size * in_dim).reshape(filt + (in_dim, size * in_dim))
      return eye / np.sqrt(size)
    return ctx.rng.gaussian(filt + (in_dim, ctx.feature_dim)) / np.sqrt(
        size * ctx.feature_dim)

  phi_filter = filter_for(spec.nngp_dim)
  both_filter = filter_for(spec.nngp_dim + spec.ntk_dim)
  nngp_dim = phi_filter.shape[-1] + has_bias
  ntk_dim = both_filter.shape[-1] + has_bias

  def convolve(x, w):
    pad = padding
    if padding == 'CIRCULAR':
      for j, (k, st) in enumerate(zip(filt, strides)):
        x = spatial.pad_axes(x, (1 + j,), spatial.same_pads(
            x.shape[1 + j], k, st), circular=True)
      pad = 'VALID'
    return tf.nn.convolution(x, w, strides=strides, padding=pad)

  def apply(params, feats):
    phi, psi = feats
    w_phi, w_both = params

    def both(phi, psi):
      return convolve(tf.concat([phi, psi], -1), w_both)
    return _affine(phi, psi, lambda t: convolve(t, w_phi), both, call,
                   fan_in, phi.dtype)

  return Built(Spec(tuple(out_shape), nngp_dim, ntk_dim),
               (phi_filter, both_filter), apply)
