"""What the graph being built is part of.

A leaf of the package (it imports nothing of nt_gp): the covariance ops and
the foundation modules both ask it.
"""
import tensorflow as tf

__all__ = ['in_xla_context']


def in_xla_context() -> bool:
  """Whether the graph being built is (inside) a `jit_compile=True` function.

  There, XLA compiles everything traced as one program: a compiled map is
  part of it (nothing to compile ahead), and host-side operations such as
  `tf.debugging` assertions are not available.

  Example:
    >>> in_xla_context()   # eagerly, outside any function
    False
    >>> bool(tf.function(lambda: tf.constant(in_xla_context()),
    ...                  jit_compile=True)())
    True
  """
  from tensorflow.python.ops import control_flow_util  # pylint: disable=g-import-not-at-top,g-direct-tensorflow-import
  return control_flow_util.GraphOrParentsInXlaContext(
      tf.compat.v1.get_default_graph())
