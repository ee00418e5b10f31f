"""Hyperparameters (`W_std`, `b_std`, activation parameters) as numbers or tensors.

Layers accept Python numbers, tensors, `tf.Variable`s and TFP
`TransformedVariable`s. They are cast to the kernel's dtype when the kernel is
computed, so gradients flow to variables of either precision.
"""
import numbers

import numpy as np
import tensorflow as tf

__all__ = ['check_std', 'cast', 'is_number']


def is_number(v) -> bool:
  return isinstance(v, (numbers.Real, np.number)) and not isinstance(v, bool)


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
