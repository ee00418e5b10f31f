"""Building blocks of the nonlinearity layers: the layer builder and checks.

`nonlinearity` turns a finite-width function and a batch-last kernel rule into
a layer, like `elementwise_base.elementwise`, and additionally lets a layer
choose whether covariances of masked positions are zeroed after it (as
neural-tangents does per nonlinearity: e.g. `Exp` maps a zero covariance to a
non-zero one, so its outputs are re-masked).
"""
import math

import numpy as np
import tensorflow as tf

from nt_gp.ops import diagonal
from nt_gp.stax import hparams
from nt_gp.stax.elementwise_base import elementwise

__all__ = ['nonlinearity', 'pin_self_covariances', 'check_hparam', 'check_int',
           'double_factorial', 'fmt']


def nonlinearity(fn, name: str, rule, remask_kernel: bool,
                 supports_packed: bool = False):
  """Builds an elementwise nonlinearity layer.

  Args:
    fn: `x -> activation(x)` on tensors (any shape, float32/float64), or None
      if the layer has no finite-width function.
    name: layer name used in messages.
    rule: batch-last `Kernel -> Kernel` map (see `map_covariances`), or None.
    remask_kernel: whether covariances of masked positions are zeroed after
      the layer.
    supports_packed: whether `rule` handles symmetric block-packed kernels
      (true when it only uses `map_covariances` and elementwise arithmetic).

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> _, apply_fn, _ = nonlinearity(lambda x: 2 * x, 'Double', None, False)
    >>> apply_fn((), np.ones(2)).numpy().tolist()
    [2.0, 2.0]
  """
  return elementwise(fn, name, rule, supports_packed=supports_packed,
                     remask_kernel=remask_kernel)


def pin_self_covariances(k):
  """Sets the `nngp` entries of an input with itself to the output variances.

  When both batches are the same inputs (`x1_is_x2`), the entries of `nngp`
  whose batch indices (and, with full spatial covariances, all spatial
  indices) coincide are variances, and must equal the variances in `cov1`.
  Computed from the covariance map they can differ by rounding; for maps with
  a square-root singularity at correlation 1 (`Sign`, the step function) that
  rounding error grows to its square root and compounds over layers. This
  replaces them by the variances of `cov1`.

  Args:
    k: batch-last `Kernel` after a nonlinearity.

  Returns:
    `k` with `nngp` patched (unchanged if the batches differ in size).
  """
  nngp = k.nngp
  if nngp.shape[-1] != nngp.shape[-2]:
    return k
  s, ds, db = k.n_spatial, k.diagonal_spatial, k.diagonal_batch
  rank = nngp.shape.rank
  pairs = [] if ds else [(2 * i, 2 * i + 1) for i in range(s)]
  pairs.append((rank - 2, rank - 1))
  self_entry = None
  for a, b in pairs:
    shape = [1] * rank
    shape[a] = shape[b] = nngp.shape[a]
    eye = tf.reshape(tf.eye(nngp.shape[a], dtype=tf.bool), shape)
    self_entry = eye if self_entry is None else tf.logical_and(self_entry, eye)
  self_entry = tf.logical_and(self_entry, tf.cast(k.x1_is_x2, tf.bool))
  var = diagonal.expand_variance(diagonal.variances(k.cov1, db, ds, s), 0, ds,
                                 s, True)
  return k.replace(nngp=tf.where(self_entry, var, nngp))


def check_hparam(name: str, value, lower=None, lower_inclusive: bool = True,
                 upper=None, upper_inclusive: bool = True):
  """Validates a scalar real hyperparameter; returns it unchanged.

  Numbers (and concrete eager tensors) are checked against the bounds now;
  `tf.Variable`s and symbolic tensors only for being scalars.

  Example:
    >>> check_hparam('gamma', 0.5, lower=0.)
    0.5
    >>> check_hparam('gamma', -1., lower=0.)
    Traceback (most recent call last):
    ...
    ValueError: `gamma` must be >= 0.0, got -1.0.
  """
  if value is None or isinstance(value, (bool, np.bool_, str, bytes)):
    raise TypeError(f'`{name}` must be a real number or a scalar tensor, got '
                    f'{value!r}.')
  if hparams.is_number(value):
    v = float(value)
  else:
    try:
      shape = tf.TensorShape(getattr(value, 'shape', None))
    except (TypeError, ValueError):
      raise TypeError(f'`{name}` must be a real number or a scalar tensor, '
                      f'got {type(value).__name__}.') from None
    if shape.rank is None and not hasattr(value, 'dtype'):
      raise TypeError(f'`{name}` must be a real number or a scalar tensor, '
                      f'got {type(value).__name__}.')
    if shape.rank not in (None, 0):
      raise ValueError(f'`{name}` must be a scalar, got shape {shape}.')
    dtype = tf.as_dtype(value.dtype)
    if not (dtype.is_floating or dtype.is_integer):
      raise TypeError(f'`{name}` must be real-valued, got dtype {dtype.name}.')
    if isinstance(value, tf.Variable) or not hasattr(value, 'numpy'):
      return value
    try:
      v = float(np.asarray(value.numpy()))
    except (AttributeError, TypeError, ValueError):
      return value
  if not math.isfinite(v):
    raise ValueError(f'`{name}` must be finite, got {v}.')
  if lower is not None and (v < lower or (v == lower and not lower_inclusive)):
    raise ValueError(f'`{name}` must be {">=" if lower_inclusive else ">"} '
                     f'{lower}, got {v}.')
  if upper is not None and (v > upper or (v == upper and not upper_inclusive)):
    raise ValueError(f'`{name}` must be {"<=" if upper_inclusive else "<"} '
                     f'{upper}, got {v}.')
  return value


def check_int(name: str, value, lower: int = 0) -> int:
  """Validates an integer argument (not a bool) ``>= lower``; returns it.

  Example:
    >>> check_int('degree', 3)
    3
  """
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, np.integer)):
    raise TypeError(f'`{name}` must be an int, got {value!r}.')
  if value < lower:
    raise ValueError(f'`{name}` must be >= {lower}, got {value}.')
  return int(value)


def double_factorial(n: int) -> int:
  """``n!! = n (n - 2) (n - 4) ...``, with ``n!! = 1`` for ``n <= 0``.

  Example:
    >>> double_factorial(5), double_factorial(-1)
    (15, 1)
  """
  out = 1
  for i in range(n, 0, -2):
    out *= i
  return out


def fmt(value) -> str:
  """Short text of a hyperparameter for layer names.

  Example:
    >>> fmt(0.5)
    '0.5'
  """
  if hparams.is_number(value):
    return repr(float(value)) if isinstance(value, float) else str(value)
  name = getattr(value, 'name', None)
  return f'<{name}>' if name else '<tensor>'
