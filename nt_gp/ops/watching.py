"""Which inputs of a call a gradient tape or forward accumulator watches.

The gradient of a called `tf.function` computes the gradient of every input
tensor, wanted or not. A kernel's inputs are rarely differentiated (a GP
learns hyperparameters, not its data), yet the input Gram's two MatMul
gradients were 35% of a hyperparameter gradient's backward pass. Callers
key their compiled functions on `watched_mask` and stop the gradients of
the unwatched inputs inside (`stop_unwatched`), so no derivative a user can
ask for changes: a watched input keeps its gradient, forward-mode included.
"""
import tensorflow as tf
# TensorFlow's own test of whether a tape or an accumulator records a
# tensor, which its function calls use; no public API answers it.
from tensorflow.python.eager import forwardprop_util  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.eager import record  # pylint: disable=g-direct-tensorflow-import

__all__ = ['watched_mask', 'stop_unwatched']


def watched_mask(tree) -> tuple:
  """One bool per leaf of `tree`: False for a `tf.Tensor` that no active
  tape or forward accumulator watches, True otherwise (other leaves too).

  Example:
    >>> import tensorflow as tf
    >>> x, y = tf.constant(1.), tf.constant(2.)
    >>> with tf.GradientTape() as tape:
    ...   tape.watch(x)
    ...   mask = watched_mask((x, [y, 3.]))
    >>> mask
    (True, False, True)
  """
  flat = tf.nest.flatten(tree)
  if not record.could_possibly_record():
    return tuple(not isinstance(t, tf.Tensor) for t in flat)
  out = []
  for t in flat:
    if not isinstance(t, tf.Tensor):
      out.append(True)
      continue
    out.append(bool(record.should_record_backprop([t]) or
                    forwardprop_util.pack_tangents([t]).indices))
  return tuple(out)


def stop_unwatched(tree, mask):
  """`tree` with `tf.stop_gradient` on the tensor leaves whose `mask` entry
  (from `watched_mask` of the same structure) is False.

  Example:
    >>> import tensorflow as tf
    >>> x = tf.constant(1.)
    >>> with tf.GradientTape() as tape:
    ...   tape.watch(x)
    ...   y = stop_unwatched([x], (False,))[0] * 2
    >>> print(tape.gradient(y, x))
    None
  """
  flat = tf.nest.flatten(tree)
  flat = [t if keep or not tf.is_tensor(t) else tf.stop_gradient(t)
          for t, keep in zip(flat, mask)]
  return tf.nest.pack_sequence_as(tree, flat)
