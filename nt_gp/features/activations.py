r"""Feature maps of elementwise nonlinearities.

Incoming NNGP features `φ` give the pre-activation covariance
``q12 = φ(x) · φ(y)``; nt_gp's rule for an activation σ maps it to
``E[σ(u) σ(v)]`` and the NTK to ``ntk · E[σ'(u) σ'(v)]`` for `(u, v)`
Gaussian with that covariance. Two feature maps have these expectations:

* **random features** (Cho & Saul 2009; Zandieh et al. 2021): with `G` of
  shape `(d, m)` standard normal, ``φ' = σ(φ G) / sqrt(m)`` and the
  derivative features ``δ = σ'(φ G) / sqrt(m)``; for the ReLU family these
  are the arc-cosine random features. Exactly unbiased for one layer.
* **Hermite expansion with sketches** (Han et al. 2022): with
  ``q = |φ|²``, ``u = φ / |φ|`` and `a_k(q)` the Hermite coefficients of σ
  (see `hermite`), ``φ' = Σ_k a_k(q) T_k(u)`` where `T_k` sketches
  ``u^{⊗k}`` in dimension `feature_dim` (TensorSRHT powers, see `sketch`;
  ``T_0`` a random unit sign vector), so that
  ``E[φ'(x)·φ'(y)] = Σ_k a_k(q1) a_k(q2) ρ^k``: the dual kernel up to the
  truncation after `hermite_degree`. `δ` uses the coefficients of σ' with the
  same sketches. The share of ``E[σ(u)²]`` (and of ``E[σ'(u)²]`` for the NTK)
  that the truncated degrees carry is checked for every input: above
  `hermite_tolerance` the map raises instead of returning a biased feature.

The NTK features are the tensor-product sketch of the incoming NTK features
and `δ`: ``ψ' = T(ψ, δ)``, with ``E[ψ'·ψ'] = (ψ·ψ)(δ·δ)``.
"""
import math

import numpy as np
import tensorflow as tf

from nt_gp.features import sketch
from nt_gp.features.build import (Built, Spec, UnsupportedLayer,
                                  hyperparameter, rebuild, rule_for)
from nt_gp.features.hermite import HermiteExpansion, derivative

__all__ = ['RELU_FAMILY', 'HERMITE_FAMILY']

# Slopes (a, b) of `a min(x, 0) + b max(x, 0)` from the constructor arguments.
RELU_FAMILY = {
    'Relu': lambda args: (0., 1.),
    'ABRelu': lambda args: (args['a'], args['b']),
    'LeakyRelu': lambda args: (args['alpha'], 1.),
    'Abs': lambda args: (-1., 1.),
}

# Activations whose kernel is the dual kernel of their elementwise function.
HERMITE_FAMILY = ('Erf', 'Sigmoid_like', 'Gelu', 'Sin', 'Cos', 'Gabor', 'Exp',
                  'Gaussian', 'ElementwiseNumerical', 'Elementwise')


def _gelu(x):
  return 0.5 * x * tf.math.erfc(-x / math.sqrt(2))


def _activation(call):
  """`(σ, σ')` of a nonlinearity layer, on tensors."""
  if call.name in RELU_FAMILY:
    a, b = RELU_FAMILY[call.name](call.arguments)

    def fn(x):
      return (hyperparameter(a, x.dtype) * tf.minimum(x, 0) +
              hyperparameter(b, x.dtype) * tf.maximum(x, 0))

    def dfn(x):
      return tf.where(x > 0, hyperparameter(b, x.dtype),
                      hyperparameter(a, x.dtype))
    return fn, dfn
  if call.name == 'Gelu':
    # The kernel is the exact Gelu's, also when `approximate=True`.
    return _gelu, derivative(_gelu)
  if call.name == 'Elementwise' and call.arguments.get('fn') is None:
    raise UnsupportedLayer('Elementwise: feature maps need its `fn`.')
  apply_fn = rebuild(call)[1]

  def fn(x):
    return apply_fn((), x)
  return fn, derivative(fn)


def _ntk_sketch(ctx, spec: Spec, delta_dim: int):
  if spec.ntk_dim == 0:
    return None
  return sketch.tensor_sketch_params(ctx.rng, spec.ntk_dim, delta_dim,
                                     ctx.sketch_dim)


def _random_features(call, spec: Spec, ctx, fn, dfn) -> Built:
  m = ctx.next_nonlinearity()
  gauss = ctx.rng.gaussian((spec.nngp_dim, m))
  ts = _ntk_sketch(ctx, spec, m)

  def apply(params, feats):
    phi, psi = feats
    g, ts = params
    z = sketch.matmul_last(phi, g)
    scale = tf.cast(1 / math.sqrt(m), phi.dtype)
    new_phi = scale * fn(z)
    if psi is None or ts is None:
      return new_phi, psi
    return new_phi, sketch.tensor_sketch(psi, scale * dfn(z), ts)

  out = Spec(spec.shape, m, ctx.sketch_dim if spec.ntk_dim else 0)
  return Built(out, (gauss, ts), apply)


def _hermite_features(call, spec: Spec, ctx, fn, dfn) -> Built:
  degree, d, m = ctx.hermite_degree, spec.nngp_dim, ctx.next_nonlinearity()
  expansion = HermiteExpansion(fn, degree, ctx.quadrature_nodes)
  constant = ctx.rng.signs((m,)) / math.sqrt(m)
  first = sketch.projection_params(ctx.rng, d, m) if degree >= 1 else None
  powers = tuple(sketch.tensor_sketch_params(ctx.rng, m, d, m)
                 for _ in range(2, degree + 1))
  ts = _ntk_sketch(ctx, spec, m)

  def apply(params, feats):
    phi, psi = feats
    constant, first, powers, ts = params
    q = tf.reduce_sum(tf.square(phi), -1)
    tiny = tf.cast(np.finfo(phi.dtype.as_numpy_dtype).tiny, phi.dtype)
    u = phi * tf.math.rsqrt(tf.maximum(q, tiny))[..., None]
    # T_0 = a random unit sign vector (uncorrelated with the other terms),
    # T_1 = P u, T_k = T(T_{k-1}, u).
    terms = [tf.ones_like(q)[..., None] * constant]
    if degree >= 1:
      terms.append(sketch.project(u, first))
    for p in powers:
      terms.append(sketch.tensor_sketch(terms[-1], u, p))

    def series(coefficients):
      return tf.add_n([coefficients[..., k:k + 1] * t
                       for k, t in enumerate(terms)])

    tail = expansion.truncation(q)
    if psi is not None and ts is not None:
      tail = tf.maximum(tail, expansion.truncation(q, dfn))
    check = tf.debugging.assert_less_equal(
        tf.reduce_max(tail), tf.cast(ctx.hermite_tolerance, tail.dtype),
        message=f'{call.name}: its Hermite series truncated after degree '
        f'{degree} leaves more than {ctx.hermite_tolerance:g} of E[σ(u)²] or '
        f'E[σ\'(u)²] for some input (large pre-activation variance); raise '
        f'hermite_degree (and quadrature_nodes), or use '
        f'activation_method="random".')
    with tf.control_dependencies([check]):
      new_phi = series(expansion.coefficients(q))
    if psi is None or ts is None:
      return new_phi, psi
    delta = series(expansion.coefficients(q, dfn))
    return new_phi, sketch.tensor_sketch(psi, delta, ts)

  out = Spec(spec.shape, m, ctx.sketch_dim if spec.ntk_dim else 0)
  return Built(out, (constant, first, powers, ts), apply)


@rule_for(*RELU_FAMILY, *HERMITE_FAMILY)
def activation_rule(call, spec: Spec, ctx) -> Built:
  """Feature rule of an elementwise nonlinearity."""
  fn, dfn = _activation(call)
  if ctx.activation_method in ('auto', 'random'):
    return _random_features(call, spec, ctx, fn, dfn)
  return _hermite_features(call, spec, ctx, fn, dfn)
