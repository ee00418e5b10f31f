"""General nonlinearities: `Elementwise` (closed-form `nngp_fn`) and
`ElementwiseNumerical` (Gauss–Hermite quadrature).

For z ~ GP with variances q11, q22 and covariance q12, the NNGP map of an
activation f is E[f(z1) f(z2)] and the NTK is multiplied by E[f'(z1) f'(z2)]
(= d E[f(z1) f(z2)] / d q12, Price's theorem).

`ElementwiseNumerical` writes z1 = sqrt(2 q11) x and
z2 = q12 / sqrt(q11 / 2) x + sqrt(2 (q22 - q12² / q11)) y with x, y
distributed as exp(-x² - y²) / π, and integrates with the `deg`-point
Gauss–Hermite rule in each variable (Han et al. 2022, "Fast neural kernel
embeddings for general activations"); `nt_gp.ops.gauss_hermite` evaluates
it in a loop over the nodes, so memory stays a few copies of the kernel.
"""
import numpy as np
import tensorflow as tf

from nt_gp.ops import gauss_hermite
from nt_gp.ops.safe_math import safe_sqrt
from nt_gp import validation
from nt_gp.stax.elementwise import elementwise, map_covariances
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking

__all__ = ['Elementwise', 'ElementwiseNumerical']

def _value_and_derivative(fn):
  """`x -> [fn(x), fn'(x)]` elementwise, the derivative by TensorFlow
  autodiff of the same evaluation of `fn`."""
  def both(x):
    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = fn(x)
    return [y, tape.gradient(
        y, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)]
  return both


def _fn_name(fn):
  return getattr(fn, '__name__', None) or type(fn).__name__


def _tensor_function(f, what):
  """`f` (or None) checked for use on the symbolic tensors a kernel is
  traced with. NumPy's elementwise functions (`np.tanh`) are refused at
  once, naming the TensorFlow one; any other use of NumPy inside `f` fails
  deep inside TensorFlow with "Cannot convert a symbolic tf.Tensor to a
  numpy array" when the kernel is traced, which the returned wrapper turns
  into a TypeError naming the argument."""
  if f is None:
    return None
  if isinstance(f, np.ufunc):
    name = f.__name__
    hint = (f'tf.math.{name}' if hasattr(tf.math, name)
            else 'a function of TensorFlow ops')
    raise TypeError(f'`{what}` is numpy.{name}, which cannot run on the '
                    f'TensorFlow tensors kernels are computed with; pass '
                    f'{hint} instead.')

  def call(*args):
    try:
      return f(*args)
    except (NotImplementedError, TypeError) as e:
      if 'symbolic' not in str(e):
        raise
      raise TypeError(
          f'`{what}` ({_fn_name(f)}) cannot run on TensorFlow tensors: the '
          f'kernel is computed in a TensorFlow graph, so `{what}` must use '
          f'TensorFlow ops (tf.math.tanh rather than np.tanh). It failed '
          f'with: {str(e).splitlines()[0]}') from None
  return call


def _check_shape(out, q12, what):
  out = tf.convert_to_tensor(out, q12.dtype)
  try:
    tf.broadcast_static_shape(out.shape, q12.shape)
  except ValueError:
    raise ValueError(f'`{what}` must act elementwise: it returned shape '
                     f'{out.shape} for covariances of shape {q12.shape}.') \
        from None
  if out.shape.rank is not None and out.shape.rank > q12.shape.rank:
    raise ValueError(f'`{what}` must act elementwise: it returned shape '
                     f'{out.shape} for covariances of shape {q12.shape}.')
  return tf.broadcast_to(out, tf.shape(q12))


@layer
@supports_masking(remask_kernel=True)
def Elementwise(fn=None, nngp_fn=None, d_nngp_fn=None):
  """A nonlinearity `fn` with a user-provided closed-form NNGP map.

  Args:
    fn: the activation, `x -> fn(x)` on tensors (elementwise); None if only
      the kernel is needed (then `apply_fn` raises `NotImplementedError`).
    nngp_fn: ``(cov12, var1, var2) -> E[fn(z1) fn(z2)]`` for a centred
      Gaussian pair with variances `var1`, `var2` and covariance `cov12`,
      written with broadcasting TensorFlow ops (it receives `cov12` of the
      kernel's shape and variance tensors that broadcast against it). None
      means no kernel: `kernel_fn` raises `NotImplementedError` (use
      `ElementwiseNumerical` instead).
    d_nngp_fn: ``(cov12, var1, var2) -> E[fn'(z1) fn'(z2)]``, used for the
      NTK; if None, it is the derivative of `nngp_fn` with respect to `cov12`
      by TensorFlow autodiff.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Raises:
    ValueError: if both `fn` and `nngp_fn` are None.

  Example:
    >>> import numpy as np
    >>> import tensorflow as tf
    >>> from nt_gp import stax
    >>> nngp_fn = lambda c, v1, v2: tf.exp(-(v1 + v2) / 2) * tf.sinh(c)
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1),
    ...                               stax.Elementwise(tf.sin, nngp_fn))
    >>> k = kernel_fn(np.ones((1, 1)), get='nngp')   # same as stax.Sin()
    >>> round(float(k[0, 0]), 6)
    0.432332
  """
  if fn is None and nngp_fn is None:
    raise ValueError('No finite-width (`fn`) or infinite-width (`nngp_fn`) '
                     'function given: the layer would do nothing.')
  for name, f in (('fn', fn), ('nngp_fn', nngp_fn), ('d_nngp_fn', d_nngp_fn)):
    if f is not None and not callable(f):
      raise TypeError(f'`{name}` must be callable, got {f!r}.')
  name = _fn_name(fn if fn is not None else nngp_fn)

  if nngp_fn is None:
    return elementwise(fn, name, None, packed=True)
  nngp_fn = _tensor_function(nngp_fn, 'nngp_fn')
  d_nngp_fn = _tensor_function(d_nngp_fn, 'd_nngp_fn')

  def nngp(q12, q11, q22):
    return _check_shape(nngp_fn(q12, q11, q22), q12, 'nngp_fn')

  def d_nngp(q12, q11, q22):
    if d_nngp_fn is not None:
      return _check_shape(d_nngp_fn(q12, q11, q22), q12, 'd_nngp_fn')
    with tf.GradientTape() as tape:
      tape.watch(q12)
      out = nngp(q12, q11, q22)
    return tape.gradient(out, q12,
                         unconnected_gradients=tf.UnconnectedGradients.ZERO)

  def q_map(q12, q11, q22, ntk):
    if ntk is not None:
      ntk = ntk * d_nngp(q12, q11, q22)
    return nngp(q12, q11, q22), ntk

  def rule(k):
    return map_covariances(k, q_map)

  return elementwise(fn, name, rule, packed=True)


@layer
@supports_masking(remask_kernel=True)
def ElementwiseNumerical(fn, deg: int, df=None):
  """A nonlinearity whose kernels are computed by Gauss–Hermite quadrature.

  Args:
    fn: the activation, `x -> fn(x)` on tensors (elementwise, broadcasting
      TensorFlow ops).
    deg: number of quadrature nodes per dimension (``>= 1``); the time
      scales with ``deg²``, the memory of the kernel computation does not
      (a few copies of the kernel; its derivatives hold ``deg²`` copies).
      Smooth activations converge fast (``deg=25`` is a good start); for
      kinks (ReLU, Abs) prefer the closed-form layers.
    df: derivative of `fn` (for the NTK); if None, computed by TensorFlow
      autodiff of `fn`.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> import tensorflow as tf
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1),
    ...                               stax.ElementwiseNumerical(tf.sin, deg=20))
    >>> k = kernel_fn(np.ones((1, 1)), get='nngp')   # same as stax.Sin()
    >>> round(float(k[0, 0]), 6)
    0.432332
  """
  if not callable(fn):
    raise TypeError(f'`fn` must be callable, got {fn!r}.')
  deg = validation.check_positive_int('deg', deg)
  if df is not None and not callable(df):
    raise TypeError(f'`df` must be callable or None, got {df!r}.')
  name = f'ElementwiseNumerical({_fn_name(fn)}, deg={deg})'
  apply_fn_of = fn
  fn = _tensor_function(fn, 'fn')
  df = _tensor_function(df, 'df')
  # Without a given `df`, each node evaluates `fn` once for both functions.
  both = _value_and_derivative(fn) if df is None else None
  d_fn = (lambda x: both(x)[1]) if df is None else df

  def diag(q):
    dtype = q.dtype
    # The rule is made here, not captured: the maps' closures then hold only
    # static values, so every layer with this activation shares one compiled
    # map (see `map_covariances`).
    nodes, weights = np.polynomial.hermite.hermgauss(deg)
    xs = tf.constant(nodes, dtype)
    ws = tf.constant(weights, dtype)
    shape = [deg] + [1] * q.shape.rank
    vals = tf.square(fn(safe_sqrt(2 * q)[None] * tf.reshape(xs, shape)))
    return tf.reduce_sum(tf.reshape(ws, shape) * vals, axis=0) / np.sqrt(np.pi)

  def q_map(q12, q11, q22, ntk):
    if ntk is None:
      return gauss_hermite.expectations([fn], q12, q11, q22, deg)[0], None
    nngp, d_nngp = gauss_hermite.expectations([fn, d_fn], q12, q11, q22, deg,
                                              evaluate=both)
    return nngp, ntk * d_nngp

  def rule(k):
    return map_covariances(k, q_map, diag_fn=diag)

  return elementwise(apply_fn_of, name, rule, packed=True)
