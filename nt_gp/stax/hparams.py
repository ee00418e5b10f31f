"""Hyperparameters (`W_std`, `b_std`, activation parameters) as numbers or tensors.

Layers accept Python numbers, tensors, `tf.Variable`s and TFP
`TransformedVariable`s. They are cast to the kernel's dtype when the kernel is
computed, so gradients flow to variables of either precision.
"""
import math

import numpy as np
import tensorflow as tf

from nt_gp.validation import is_number

__all__ = ['check_std', 'check_hparam', 'cast', 'squared', 'fmt']


def check_std(name: str, value, allow_none: bool = False,
              allow_zero: bool = False):
  """Validates a standard deviation given as a number; returns it.

  Tensors and variables are checked when the kernel is computed (`cast`).
  """
  if value is None:
    if allow_none:
      return None
    raise ValueError(f'`{name}` must be a positive number, got None.')
  if isinstance(value, bool):
    raise TypeError(f'`{name}` must be a number or a tensor, got a bool.')
  if is_number(value):
    if not np.isfinite(value):
      raise ValueError(f'`{name}` must be finite, got {value}.')
    if value < 0 or (value == 0 and not allow_zero):
      raise ValueError(
          f'`{name}` is a standard deviation and must be '
          f'{"non-negative" if allow_zero else "positive"}, got {value}.')
    return value
  if isinstance(value, (str, bytes)):
    raise TypeError(f'`{name}` must be a number or a tensor, got {value!r}.')
  try:
    shape = tf.TensorShape(getattr(value, 'shape', ()))
  except TypeError:
    shape = None
  if shape is not None and shape.rank not in (None, 0):
    raise ValueError(f'`{name}` must be a scalar, got shape {shape}. (For '
                     f'batches of hyperparameters use nt_gp.tfp.NeuralKernel.)')
  if isinstance(value, tf.Tensor) and hasattr(value, 'numpy') and not (
      isinstance(value, tf.Variable)):
    check_std(name, float(value.numpy()), allow_none, allow_zero)
  return value


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
  if is_number(value):
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


def cast(value, dtype, name: str = 'hyperparameter', positive: bool = False):
  """Returns `value` as a tensor of `dtype` (None stays None).

  With `positive=True`, a concrete non-positive value raises `ValueError`;
  inside a compiled graph an assertion is added instead.
  """
  if value is None:
    return None
  if is_number(value):
    return tf.constant(value, dtype)
  t = tf.cast(tf.convert_to_tensor(value), dtype)
  if positive:
    if hasattr(t, 'numpy') and tf.executing_eagerly():
      if not np.all(t.numpy() > 0):
        raise ValueError(f'`{name}` must be positive, got {t.numpy()}.')
    elif not tf.executing_eagerly():
      with tf.control_dependencies([tf.debugging.assert_positive(
          t, message=f'`{name}` must be positive.')]):
        t = tf.identity(t)
  return t


def squared(value, dtype, name: str = 'hyperparameter',
            positive: bool = False):
  """`tf.square(cast(value, dtype, name, positive))` (None stays None).

  A plain number is squared in Python (float64), as neural-tangents does,
  and becomes one constant: fewer operations in a traced graph.

  Example:
    >>> float(squared(1.5, tf.float64))
    2.25
  """
  if value is None:
    return None
  if is_number(value):
    return tf.constant(float(value) ** 2, dtype)
  return tf.square(cast(value, dtype, name, positive))


def fmt(value) -> str:
  """Short text of a hyperparameter for layer names.

  Example:
    >>> fmt(0.5)
    '0.5'
  """
  if is_number(value):
    return repr(float(value)) if isinstance(value, float) else str(value)
  name = getattr(value, 'name', None)
  return f'<{name}>' if name else '<tensor>'
