"""Random keys for `init_fn`: stateless seeds split like JAX PRNG keys."""
import numpy as np
import tensorflow as tf

__all__ = ['as_key', 'split', 'normal']


def as_key(seed, name: str = 'seed') -> tf.Tensor:
  """Turns an int, a `tf.random.Generator` or a shape-[2] tensor into a key.

  `name` is the argument's name in a TypeError for anything else.

  Example:
    >>> as_key(0).shape
    TensorShape([2])
  """
  if isinstance(seed, tf.random.Generator):
    return tf.cast(seed.make_seeds(1)[:, 0], tf.int64)
  if isinstance(seed, (int, np.integer)):
    return tf.constant([0, int(seed)], tf.int64)
  message = (f'`{name}` must be an int, a tf.random.Generator or an integer '
             f'tensor of shape [2], got {seed!r}.')
  try:
    key = tf.convert_to_tensor(seed)
  except (TypeError, ValueError):
    raise TypeError(message) from None
  if key.shape != (2,) or not key.dtype.is_integer:
    raise TypeError(message)
  return tf.cast(key, tf.int64)


def split(key, num: int = 2):
  """Splits a key into `num` independent keys."""
  return tf.unstack(tf.random.experimental.stateless_split(as_key(key), num))


def normal(key, shape, dtype=tf.float32) -> tf.Tensor:
  """Standard normal samples from a key."""
  return tf.random.stateless_normal(list(shape), seed=as_key(key), dtype=dtype)
