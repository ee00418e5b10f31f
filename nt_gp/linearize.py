"""Taylor expansions of a network in its parameters: `linearize` and
`taylor_expand`, with forward-mode derivatives
(`tf.autodiff.ForwardAccumulator`)."""
from typing import Callable

import tensorflow as tf

from nt_gp import validation
from nt_gp.empirical import _fn

__all__ = ['linearize', 'taylor_expand']

_ZERO = tf.UnconnectedGradients.ZERO


def _setup(f, params):
  net = _fn.as_network(f)
  p0, unflatten = net.flatten_params(params)
  return net, p0, unflatten


def _deltas(net, p0, new_params):
  if new_params is None and net.keras_model is not None:
    new_params = [v.value for v in net.keras_model.trainable_variables]
  p, _ = net.flatten_params(new_params)
  if len(p) != len(p0):
    raise ValueError(f'`params` has {len(p)} tensors but the expansion point '
                     f'has {len(p0)}.')
  out = []
  for a, b in zip(p, p0):
    if a.shape != b.shape:
      raise ValueError(f'Parameter of shape {a.shape} given where the '
                       f'expansion point has shape {b.shape}.')
    out.append(tf.cast(a, b.dtype) - b)
  return out


def _nested_terms(fn, p0, dp, degree):
  """`[f, D f[dp], D² f[dp, dp], ...]` up to order `degree` at `p0`.

  `degree` nested forward-mode accumulators share one evaluation of `fn`:
  each accumulator also watches the tangent computations of those inside it,
  so the JVP of the k-th derivative taken by the next enclosing accumulator
  is the (k+1)-th.
  """
  def rec(level):
    if level == degree:
      return [fn(p0)]
    with tf.autodiff.ForwardAccumulator(p0, dp) as acc:
      inner = rec(level + 1)
    top = tf.nest.map_structure(
        lambda t: acc.jvp(t, unconnected_gradients=_ZERO), inner[-1])
    return inner + [top]
  return rec(0)


def linearize(f, params) -> Callable:
  """Returns `f_lin(new_params, *args, **kwargs)`, the first-order Taylor
  expansion of `f` in its parameters around `params`:

      f_lin(p, x) = f(params, x) + J(params, x) (p - params),

  with the Jacobian-vector product computed in forward mode.

  Args:
    f: `f(params, *args, **kwargs)` with `params` a nested structure of
      tensors, returning a tensor or a nested structure of tensors; or a
      built Keras 3 model (params: list of its trainable variables' values).
    params: the expansion point (None: a Keras model's current weights).

  Returns:
    `f_lin` with the signature of `f` and outputs of the same shapes and
    dtypes; usable inside `tf.function` and differentiable in `new_params`.

  Example:
    >>> import numpy as np
    >>> import nt_gp
    >>> f = lambda p, x: p ** 2 * x
    >>> f_lin = nt_gp.linearize(f, np.float64(3.))
    >>> float(f_lin(np.float64(4.), np.float64(1.)))   # 9 + 6 · (4 - 3)
    15.0
  """
  net, p0, unflatten = _setup(f, params)

  def f_lin(new_params, *args, **kwargs):
    dp = _deltas(net, p0, new_params)
    with tf.autodiff.ForwardAccumulator(p0, dp) as acc:
      out = net(unflatten(p0), *args, **kwargs)
    return tf.nest.map_structure(
        lambda o: o + tf.cast(acc.jvp(o, unconnected_gradients=_ZERO),
                              o.dtype), out)
  return f_lin


def taylor_expand(f, params, degree: int) -> Callable:
  """Returns `f_tayl(new_params, *args, **kwargs)`, the Taylor expansion of
  `f` of order `degree` in its parameters around `params`:

      f_tayl(p, x) = Σ_{k=0..degree} D^k f(params, x)[p - params]^k / k!,

  with the directional derivatives from nested forward-mode accumulators.

  Args:
    f: as in `linearize`.
    params: the expansion point.
    degree: a non-negative int (0: the constant `f(params, x)`; 1:
      `linearize`).

  Returns:
    `f_tayl` with the signature of `f`, evaluated as one `tf.function` (traced
    once per argument signature).

  Example:
    >>> import numpy as np
    >>> import nt_gp
    >>> import tensorflow as tf
    >>> f = lambda p, x: tf.exp(p) * x
    >>> f2 = nt_gp.taylor_expand(f, np.float64(0.), 2)
    >>> float(f2(np.float64(0.5), np.float64(1.)))   # 1 + 0.5 + 0.5² / 2
    1.625
  """
  degree = validation.check_int('degree', degree, lower=0)
  net, p0, unflatten = _setup(f, params)

  # Nested accumulators in eager mode build a helper function per op and
  # level on first use (seconds for degree 3); one graph is much cheaper.
  @tf.function(autograph=False)
  def expand(p0, dp, args, kwargs):
    fn = lambda p: net(unflatten(p), *args, **kwargs)
    terms = _nested_terms(fn, p0, dp, degree)
    out = terms[0]
    factorial = 1.
    for k, t in enumerate(terms[1:], start=1):
      factorial *= k
      out = tf.nest.map_structure(
          lambda o, d, c=factorial: o + tf.cast(d, o.dtype) / c, out, t)
    return out

  def f_tayl(new_params, *args, **kwargs):
    dp = _deltas(net, p0, new_params)
    return expand(p0, dp, args, kwargs)
  return f_tayl
