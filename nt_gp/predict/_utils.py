"""Internal helpers of `nt_gp.predict`: axes, dtypes, validation, solves.

Kernels follow neural-tangents' layout: a kernel between outputs of shapes
``(N1, *rest)`` and ``(N2, *rest)`` (trace axes removed) has the *zipped* shape
``(N1, N2, R1, R1, R2, R2, ...)``. Internally every kernel is flattened to a
matrix (`make_2d`) and every target array to ``(n, m)`` with ``n`` the size of
the non-trace axes and ``m`` the size of the trace axes (`flatten_targets`).
"""
import collections
import numbers
import weakref

import numpy as np
import tensorflow as tf

from nt_gp import validation
# `get` of predict's functions, shared with the rest of nt_gp.
from nt_gp.validation import canonicalize_get, namedtuple_of  # pylint: disable=unused-import

_ARRAY_TYPES = (tf.Tensor, tf.Variable, np.ndarray, np.generic, list, tuple,
                numbers.Number)


# ----------------------------------------------------------------------------
# Conversion and validation.
# ----------------------------------------------------------------------------
def is_array(x) -> bool:
  """Whether `x` is an array-like (not a kernel record / namedtuple)."""
  if isinstance(x, tuple) and hasattr(x, '_fields'):
    return False
  return isinstance(x, _ARRAY_TYPES) and not isinstance(x, bool)


def to_tensor(x, name, dtype=None):
  """Converts `x` to a floating tensor.

  numpy arrays and Python numbers are cast to `dtype`; TensorFlow tensors must
  already have a floating `dtype` equal to it (integer tensors are cast).
  Without `dtype`, floating inputs keep their dtype and others become float32.
  """
  if x is None:
    raise ValueError(f'`{name}` must not be None.')
  if not is_array(x):
    raise TypeError(f'`{name}` must be an array (numpy or TensorFlow), got '
                    f'{type(x).__name__}.')
  is_tf = isinstance(x, (tf.Tensor, tf.Variable))
  try:
    t = tf.convert_to_tensor(x)
  except (ValueError, TypeError) as e:
    raise TypeError(f'`{name}` could not be converted to a tensor: {e}') from e
  if t.dtype.is_complex or t.dtype == tf.string:
    raise TypeError(f'`{name}` must be real-valued, got dtype {t.dtype.name}.')
  if dtype is None:
    t = t if t.dtype.is_floating else tf.cast(t, tf.float32)
    validation.check_kernel_dtype(name, t.dtype)
    return t
  if t.dtype != dtype:
    if is_tf and t.dtype.is_floating:
      raise TypeError(f'`{name}` has dtype {t.dtype.name} but the kernel has '
                      f'dtype {dtype.name}; cast one of them.')
    t = tf.cast(t, dtype)
  return t


def static_value(t):
  """The numpy value of `t` if it is known now (eager), else None."""
  if isinstance(t, (tf.Tensor, tf.Variable)):
    if tf.executing_eagerly() or not tf.inside_function():
      try:
        return t.numpy()
      except (AttributeError, NotImplementedError, TypeError):
        return None
    return tf.get_static_value(t)
  return np.asarray(t)


def check_finite(t, name, hint=''):
  """Raises a `ValueError` if `t` (when known now) has NaN or inf entries;
  `hint` is appended to the message."""
  value = static_value(t)
  if value is not None and not np.all(np.isfinite(value)):
    raise ValueError(f'`{name}` has non-finite (NaN or inf) entries'
                     f'{"; " + hint if hint else ""}.')
  return t


def check_scalar(x, name, allow_negative=False):
  """Validates a real scalar hyper-parameter (a number or a 0-d tensor)."""
  if isinstance(x, bool) or x is None:
    raise TypeError(f'`{name}` must be a real number, got {x!r}.')
  if isinstance(x, (tf.Tensor, tf.Variable)):
    if x.shape.rank != 0:
      raise ValueError(f'`{name}` must be a scalar, got shape {x.shape}.')
    if not (x.dtype.is_floating or x.dtype.is_integer):
      raise TypeError(f'`{name}` must be real, got dtype {x.dtype.name}.')
    value = static_value(x)
  else:
    try:
      value = np.asarray(x)
    except Exception as e:  # pylint: disable=broad-except
      raise TypeError(f'`{name}` must be a real number, got {x!r}.') from e
    if value.ndim != 0 or not (np.issubdtype(value.dtype, np.floating) or
                               np.issubdtype(value.dtype, np.integer)):
      raise TypeError(f'`{name}` must be a real number, got {x!r}.')
  if value is not None:
    if not np.isfinite(value):
      raise ValueError(f'`{name}` must be finite, got {value}.')
    if not allow_negative and value < 0:
      raise ValueError(f'`{name}` must be non-negative, got {value}.')
  return x


def scalar_as(x, dtype):
  """`x` (number or 0-d tensor) as a tensor of `dtype`."""
  if isinstance(x, (tf.Tensor, tf.Variable)):
    return tf.cast(x, dtype)
  return tf.constant(x, dtype)


def check_predict_inputs(fx_train_0, fx_test_0, k_test_train):
  """The argument checks shared by all `predict_fn`s of time-dependent flows."""
  if fx_train_0 is None and fx_test_0 is None:
    raise ValueError('Both `fx_train_0` and `fx_test_0` are None: nothing to '
                     'predict.')
  if fx_test_0 is not None and k_test_train is None:
    raise ValueError('Predictions on the test set need `k_test_train`.')


def as_times(t, dtype):
  """`t` (scalar or array) as a tensor of `dtype`; validates finiteness."""
  if isinstance(t, bool) or not is_array(t):
    raise TypeError(f'`t` must be None, a number or an array of numbers, got '
                    f'{t!r}.')
  return check_finite(to_tensor(t, 't', dtype), 't',
                      hint='for the infinite-time limit pass `t=None`')


# ----------------------------------------------------------------------------
# Axes.
# ----------------------------------------------------------------------------
def canonicalize_trace_axes(trace_axes, ndim: int):
  """Sorted negative trace axes of an `ndim`-dimensional target array."""
  if isinstance(trace_axes, (int, np.integer)) and not isinstance(
      trace_axes, bool):
    axes = [int(trace_axes)]
  elif isinstance(trace_axes, (list, tuple)) and all(
      isinstance(a, (int, np.integer)) and not isinstance(a, bool)
      for a in trace_axes):
    axes = [int(a) for a in trace_axes]
  else:
    raise TypeError(f'`trace_axes` must be an int or a tuple of ints, got '
                    f'{trace_axes!r}.')
  for a in axes:
    if not -ndim <= a < ndim:
      raise ValueError(f'`trace_axes={tuple(axes)}` is out of range for '
                       f'targets with {ndim} axes.')
  axes = sorted({a % ndim for a in axes})
  if len(axes) == ndim:
    raise ValueError(f'`trace_axes={tuple(axes)}` covers every axis of the '
                     f'targets; at least the batch axis must remain.')
  return tuple(a - ndim for a in axes)


class Layout(collections.namedtuple(
    'Layout', ['trace_axes', 'trace_shape', 'nontrace_shape'])):
  """How targets of a given shape map to flattened `(n, m)` matrices.

  Attributes:
    trace_axes: sorted negative axes of the targets that kernels lack.
    trace_shape: sizes of those axes (`m` is their product).
    nontrace_shape: sizes of the other axes (`n` is their product); kernels
      on these targets have the zipped shape of `nontrace_shape` twice.
  """

  @classmethod
  def of(cls, y_shape, trace_axes):
    y_shape = tuple(int(d) for d in y_shape)
    axes = canonicalize_trace_axes(trace_axes, len(y_shape))
    pos = [a % len(y_shape) for a in axes]
    return cls(axes, tuple(y_shape[a] for a in pos),
               tuple(d for i, d in enumerate(y_shape) if i not in pos))

  @property
  def m(self) -> int:
    return int(np.prod(self.trace_shape, dtype=np.int64))

  def targets_shape(self, nontrace_shape):
    """Shape of targets with the given non-trace shape (trace axes put back)."""
    shape = list(nontrace_shape)
    ndim = len(nontrace_shape) + len(self.trace_axes)
    for a, d in zip(self.trace_axes, self.trace_shape):
      shape.insert(a % ndim, d)
    return tuple(shape)

  def flatten(self, y):
    """`(*y.shape)` -> `(n, m)`: trace axes last, both groups flattened."""
    y = moveaxis(y, self.trace_axes, tuple(range(-len(self.trace_axes), 0)))
    return tf.reshape(y, (-1, self.m))

  def unflatten(self, x, lead_shape, nontrace_shape):
    """`(*lead, n, m)` -> `(*lead, *targets_shape(nontrace_shape))`."""
    x = tf.reshape(x, tuple(lead_shape) + tuple(nontrace_shape) +
                   self.trace_shape)
    k = len(self.trace_axes)
    return moveaxis(x, tuple(range(-k, 0)), self.trace_axes)


def moveaxis(x, source, destination):
  """`np.moveaxis` for tensors."""
  nd = x.shape.rank
  source = [s % nd for s in source]
  destination = [d % nd for d in destination]
  order = [i for i in range(nd) if i not in source]
  for dest, src in sorted(zip(destination, source)):
    order.insert(dest, src)
  if order == list(range(nd)):
    return x
  return tf.transpose(x, order)


def kernel_sides(k):
  """`(shape of first inputs, shape of second inputs)` of a zipped kernel."""
  shape = tuple(int(d) for d in k.shape)
  return shape[::2], shape[1::2]


def make_2d(k):
  """Zipped `(a1, b1, a2, b2, ...)` kernel -> `(a1 * a2 * ..., b1 * b2 * ...)`."""
  nd = k.shape.rank
  if nd == 2:
    return k
  a, b = kernel_sides(k)
  k = tf.transpose(k, list(range(0, nd, 2)) + list(range(1, nd, 2)))
  return tf.reshape(k, (int(np.prod(a)), int(np.prod(b))))


def zip_2d(x, lead_shape, side_shape):
  """`(*lead, n, n)` -> `(*lead, a1, a1, a2, a2, ...)` with `side_shape = a`."""
  lead, r = len(lead_shape), len(side_shape)
  x = tf.reshape(x, tuple(lead_shape) + tuple(side_shape) * 2)
  if r == 1:
    return x
  perm = list(range(lead))
  for i in range(r):
    perm += [lead + i, lead + r + i]
  return tf.transpose(x, perm)


def check_kernel(k, name, rows=None, cols=None, square=False):
  """Validates the rank and sides of a zipped kernel tensor.

  `rows`/`cols`: expected non-trace target shapes of the first / second
  inputs (`cols` is always the training targets' one).
  """
  nd = k.shape.rank
  if nd is None or nd == 0 or nd % 2:
    raise ValueError(f'`{name}` must have an even, positive number of axes '
                     f'(zipped kernel layout), got shape {tuple(k.shape)}.')
  a, b = kernel_sides(k)
  if square and a != b:
    raise ValueError(f'`{name}` must be square, got shape {tuple(k.shape)} '
                     f'(sides {a} and {b}).')
  if cols is not None and b != tuple(cols):
    raise ValueError(f'`{name}` has shape {tuple(k.shape)}: its second-input '
                     f'axes {b} do not match the training targets (expected '
                     f'{tuple(cols)}, i.e. the shape of `y_train` without '
                     f'`trace_axes`).')
  if rows is not None and a != tuple(rows):
    raise ValueError(f'`{name}` has shape {tuple(k.shape)}: its first-input '
                     f'axes {a} must be {tuple(rows)}.')
  check_finite(k, name)
  return k


def check_symmetric(k2d, name):
  """Raises if a (known) train-train kernel matrix is not symmetric."""
  value = static_value(k2d)
  if value is None:
    return
  eps = np.finfo(value.dtype).eps
  scale = max(float(np.max(np.abs(value))), np.finfo(value.dtype).tiny)
  err = float(np.max(np.abs(value - value.T))) if value.size else 0.
  if err > np.sqrt(eps) * scale:
    raise ValueError(f'`{name}` is not symmetric (max |K - K^T| = {err:.3g}); '
                     f'pass the train-train kernel.')


def broadcast_exact(x, shape, name):
  """Broadcasts `x` to `shape`, requiring the result to have exactly `shape`."""
  xs = tuple(x.shape)
  try:
    out = np.broadcast_shapes(xs, tuple(shape))
  except ValueError:
    out = None
  if out != tuple(shape):
    raise ValueError(f'`{name}` has shape {xs}, which does not broadcast to '
                     f'the expected shape {tuple(shape)}.')
  return tf.broadcast_to(x, shape) if xs != tuple(shape) else x


# ----------------------------------------------------------------------------
# Linear algebra.
# ----------------------------------------------------------------------------
def add_diagonal_regularizer(k2d, diag_reg, absolute_scale: bool):
  """`k + diag_reg * I` (scaled by the mean diagonal unless `absolute_scale`)."""
  reg = scalar_as(diag_reg, k2d.dtype)
  if not absolute_scale:
    reg = reg * tf.linalg.trace(k2d) / tf.cast(tf.shape(k2d)[0], k2d.dtype)
  return tf.linalg.set_diag(k2d, tf.linalg.diag_part(k2d) + reg)


def cholesky(k2d, name):
  """Cholesky factor; a clear error if the matrix is not positive definite."""
  chol = tf.linalg.cholesky(k2d)
  value = static_value(chol)
  if value is not None:
    if not np.all(np.isfinite(value)):
      raise ValueError(f'`{name}` (plus the diagonal regularizer) is not '
                       f'positive definite; increase `diag_reg`.')
  else:
    chol = tf.debugging.assert_all_finite(
        chol, f'`{name}` (plus the diagonal regularizer) is not positive '
        f'definite; increase `diag_reg`.')
  return chol


class GraphCache:
  """A cache whose entries are kept apart per `tf.function` graph.

  Factorizations computed eagerly are reused everywhere; those computed while
  tracing a `tf.function` stay with that graph (tensors cannot cross graphs).
  """

  def __init__(self):
    self._eager = {}
    self._graphs = weakref.WeakKeyDictionary()

  def get(self, key, compute):
    if tf.inside_function():
      graph = tf.compat.v1.get_default_graph()
      store = self._graphs.setdefault(graph, {})
    else:
      store = self._eager
    if key not in store:
      store[key] = compute()
    return store[key]


def format_get(out: dict, single: bool, names, tuple_name='Gaussians'):
  """Returns one value or a namedtuple of `out` ordered like `names`."""
  if single:
    return out[names[0]]
  return namedtuple_of(tuple_name, names)(*(out[g] for g in names))
