"""XLA compilation of covariance ops.

Kernel propagation runs as one TensorFlow graph per network; inside it, the
elementwise and spatial covariance ops are XLA clusters (each a
`tf.function(jit_compile=True)`), which fuses the many elementwise steps of a
nonlinearity or the slices of a convolution into single loops. Matrix products
(the input covariance) stay in TensorFlow's own kernels, which are faster on
CPU. `nt_gp.config.jit_compile = False` turns XLA off everywhere.
"""
import functools

import tensorflow as tf

from nt_gp import _config

__all__ = ['xla']


def xla(fn):
  """Returns `fn` compiled with XLA (one trace per distinct static argument).

  Example:
    >>> import numpy as np
    >>> double = xla(lambda x: 2 * x)
    >>> float(double(np.float32(1.5)))
    3.0
  """
  compiled = tf.function(fn, jit_compile=True, autograph=False)

  @functools.wraps(fn)
  def run(*args, **kwargs):
    if _config.config.jit_compile is False:
      return fn(*args, **kwargs)
    return compiled(*args, **kwargs)
  return run
