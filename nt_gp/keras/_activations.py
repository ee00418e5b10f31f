"""Keras activation functions as stax nonlinearities.

Closed forms are used where `nt_gp.stax` has them (ReLU, leaky ReLU, exact
GELU, exp, sin, cos, erf, abs, sign); every other elementwise Keras activation
gets its exact kernel by Gauss–Hermite quadrature of the Keras function itself
(`stax.ElementwiseNumerical`). Activations that are not elementwise (softmax,
GLU, ...) or are discontinuous (their NTK has Dirac terms) are rejected.
"""
import functools
import inspect

import keras
import tensorflow as tf

from nt_gp import stax

__all__ = ['activation_layer', 'scale_gradient_layer', 'describe']

_TABLE = None


def _table():
  """`{function: (kind, name, argument renames)}` over Keras, keras.ops and TF."""
  global _TABLE  # pylint: disable=global-statement
  if _TABLE is not None:
    return _TABLE
  A, O = keras.activations, keras.ops
  table = {}

  def add(kind, name, *fns, rename=None):
    for f in fns:
      if f is not None:
        table[f] = (kind, name, rename or {})

  def a(n):
    return getattr(A, n, None)

  def o(n):
    return getattr(O, n, None)

  add('linear', 'linear', a('linear'))
  add('relu', 'relu', a('relu'), o('relu'), tf.nn.relu)
  add('leaky_relu', 'leaky_relu', a('leaky_relu'), o('leaky_relu'))
  add('leaky_relu', 'leaky_relu', tf.nn.leaky_relu,
      rename={'alpha': 'negative_slope'})
  add('gelu', 'gelu', a('gelu'), o('gelu'), tf.nn.gelu)
  add('exp', 'exponential', a('exponential'), o('exp'), tf.exp)
  add('sin', 'sin', o('sin'), tf.sin)
  add('cos', 'cos', o('cos'), tf.cos)
  add('erf', 'erf', o('erf'), tf.math.erf)
  add('abs', 'abs', o('abs'), o('absolute'), tf.abs)
  add('sign', 'sign', o('sign'), tf.sign)
  for n, extra in [('sigmoid', (tf.sigmoid,)), ('tanh', (tf.tanh,)),
                   ('softplus', (tf.nn.softplus,)),
                   ('softsign', (tf.nn.softsign,)), ('elu', (tf.nn.elu,)),
                   ('selu', (tf.nn.selu,)), ('silu', (tf.nn.silu,)),
                   ('swish', ()), ('celu', ()), ('mish', ()),
                   ('log_sigmoid', ()), ('relu6', (tf.nn.relu6,)),
                   ('hard_sigmoid', ()), ('hard_silu', ()),
                   ('hard_swish', ()), ('hard_tanh', ()),
                   ('soft_shrink', ()), ('tanh_shrink', ()),
                   ('sparse_plus', ()), ('sparse_sigmoid', ()),
                   ('squareplus', ())]:
    add('numerical', n, a(n), o(n), *extra)
  for n, extra in [('softmax', (tf.nn.softmax,)),
                   ('log_softmax', (tf.nn.log_softmax,)), ('glu', ()),
                   ('sparsemax', ())]:
    add('not_elementwise', n, a(n), o(n), *extra)
  for n in ('hard_shrink', 'threshold'):
    add('discontinuous', n, a(n), o(n))
  _TABLE = table
  return table


def _unwrap(fn):
  """`(function, keyword arguments)` of a function or a `functools.partial`."""
  kwargs = {}
  while isinstance(fn, functools.partial):
    if fn.args:
      return fn, None
    kwargs = dict(fn.keywords, **kwargs)
    fn = fn.func
  return fn, kwargs


def _defaults(fn):
  try:
    params = list(inspect.signature(fn).parameters.values())
  except (TypeError, ValueError):
    return {}
  return {p.name: p.default for p in params[1:]
          if p.default is not inspect.Parameter.empty}


def describe(fn) -> str:
  """A readable name of an activation function."""
  base, kwargs = _unwrap(fn)
  name = getattr(base, '__name__', None) or type(base).__name__
  if kwargs:
    name += '(' + ', '.join(f'{k}={v!r}' for k, v in kwargs.items()) + ')'
  return name


def activation_layer(fn, deg: int, custom=None):
  """The stax layer of the Keras activation `fn`, or None for the identity.

  Args:
    fn: a Keras activation (function, or `functools.partial` of one with
      keyword arguments), a `keras.ops` or TensorFlow elementwise function.
    deg: Gauss–Hermite nodes per dimension for activations without a closed
      form.
    custom: optional `{function: stax layer}` overriding the table.

  Returns:
    `(init_fn, apply_fn, kernel_fn)` or None.

  Raises:
    ValueError: `fn` is unknown, not elementwise or discontinuous (the message
      says why).
  """
  if fn is None:
    return None
  if custom:
    for key, net in custom.items():
      if key is fn:
        return net() if callable(net) and not isinstance(net, tuple) else net
  kind, base, kw = _resolve(fn)
  if kind is None:
    raise ValueError(
        f'the activation {describe(fn)!r} is not a known elementwise Keras, '
        f'keras.ops or TensorFlow function (a lambda or custom function could '
        f'do anything); give its kernel with `activation_kernels={{fn: '
        f'stax layer}}`, e.g. stax.ElementwiseNumerical(fn, deg=64) for an '
        f'elementwise function.')
  name = _table()[base][1]

  if kind == 'linear':
    return None
  if kind == 'not_elementwise':
    raise ValueError(
        f'the activation {name!r} is not elementwise: it couples the channels '
        f'of each position (e.g. softmax divides by a sum over all of them), '
        f'so it has no infinite-width kernel in nt_gp.stax.')
  if kind == 'discontinuous':
    raise ValueError(
        f'the activation {name!r} jumps (is discontinuous), so its derivative '
        f'and hence its NTK have Dirac terms that quadrature cannot integrate.')
  if kind == 'relu':
    slope = kw.get('negative_slope', 0.) or 0.
    if kw.get('max_value') is None and not kw.get('threshold'):
      return stax.Relu() if slope == 0 else stax.LeakyRelu(float(slope))
    return _numerical(base, kw, deg)
  if kind == 'leaky_relu':
    return stax.LeakyRelu(float(kw.get('negative_slope', 0.2)))
  if kind == 'gelu':
    if kw.get('approximate', False):
      return _numerical(base, kw, deg)
    return stax.Gelu()
  if kind == 'exp':
    return stax.Exp()
  if kind == 'sin':
    return stax.Sin()
  if kind == 'cos':
    return stax.Cos()
  if kind == 'erf':
    return stax.Erf()
  if kind == 'abs':
    return stax.Abs()
  if kind == 'sign':
    return stax.Sign()
  return _numerical(base, kw, deg)


def _resolve(fn):
  """`(kind, base function, keyword arguments)` of a known activation."""
  base, kwargs = _unwrap(fn)
  entry = _table().get(base) if kwargs is not None else None
  if entry is None:
    return None, base, kwargs
  kind, _, rename = entry
  kw = _defaults(base)
  kw.update({rename.get(k, k): v for k, v in kwargs.items()})
  kw = {rename.get(k, k): v for k, v in kw.items()}
  kw.pop('name', None)
  return kind, base, kw


def scale_gradient_layer(fn, deg: int):
  """The stax layer whose NNGP is `E[g(u) g(u')]`, `g(u) = u fn'(u)`.

  For `relu`, `leaky_relu` and `abs` (positively homogeneous), `g = fn`.
  Otherwise `g` is integrated by quadrature, with `fn'` from TensorFlow
  autodiff of the Keras function.

  Raises:
    ValueError: `fn` is not a known Keras/TensorFlow activation.
  """
  kind, base, kw = _resolve(fn)
  if kind is None:
    raise ValueError(f'the activation {describe(fn)!r} is not a known Keras '
                     f'function')
  if kind in ('leaky_relu', 'abs') or (
      kind == 'relu' and kw.get('max_value') is None and
      not kw.get('threshold')):
    return activation_layer(fn, deg)

  def g(u):
    u = tf.convert_to_tensor(u)
    with tf.GradientTape() as tape:
      tape.watch(u)
      y = base(u, **kw)
    return u * tape.gradient(
        y, u, unconnected_gradients=tf.UnconnectedGradients.ZERO)
  g.__name__ = f'u_times_derivative_of_{describe(fn)}'
  return stax.ElementwiseNumerical(g, deg)


def _numerical(base, kw, deg):
  def fn(x):
    return base(x, **kw)
  fn.__name__ = describe(functools.partial(base, **kw)) if kw else getattr(
      base, '__name__', 'activation')
  return stax.ElementwiseNumerical(fn, deg)
