"""Shape arguments with as few traced operations as possible.

In a trace every `tf.shape(t)[a:b]` slice is four operations (the shape,
a strided slice and its three index constants), while a Python list of the
static dimensions is one constant. The engine knows almost every shape
statically; `dims` gives the static ones as ints and only the unknown ones
as scalar tensors (a list mixing both is a valid shape argument).
"""
import tensorflow as tf

__all__ = ['dims']


def dims(t, lo: int = 0, hi=None) -> list:
  """`t.shape[lo:hi]` as a list: ints where static, scalar tensors where not.

  Args:
    t: a tensor of known rank.
    lo, hi: a slice of its axes, as in `t.shape[lo:hi]` (negative allowed).

  Example:
    >>> dims(tf.zeros((2, 3, 4)), 1)
    [3, 4]
    >>> dims(tf.zeros((2, 3, 4)), 0, -1)
    [2, 3]
  """
  static = t.shape[lo:hi].as_list()
  if None not in static:
    return static
  dynamic = tf.shape(t)
  axes = range(t.shape.rank)[lo:hi]
  return [d if d is not None else dynamic[i] for d, i in zip(static, axes)]
