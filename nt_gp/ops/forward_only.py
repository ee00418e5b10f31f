"""Tracing a computation whose gradient is supplied from elsewhere.

A layer's covariance map runs as a compiled function whose gradient
recomputes the map from its inputs (`nt_gp.stax.compiled_map`). The custom
gradients inside the map (`tf.custom_gradient` in `nt_gp.ops.arccos`) are
needed only there, in the recomputation; in the forward function they are
never used, yet each costs operations to trace (identities of every input
and output, a registered gradient function) on every new input signature's
first call. Inside `forward_only()`, functions decorated with
`custom_gradient` compute their values without registering a gradient.
Only for traces that nothing differentiates directly.
"""
import contextlib
import functools
import threading

import tensorflow as tf

__all__ = ['forward_only', 'custom_gradient']

_STATE = threading.local()


@contextlib.contextmanager
def forward_only():
  """Within (this thread): `custom_gradient` functions skip their gradient.

  Example:
    >>> with forward_only():
    ...   pass
  """
  old = getattr(_STATE, 'on', False)
  _STATE.on = True
  try:
    yield
  finally:
    _STATE.on = old


def custom_gradient(f):
  """`tf.custom_gradient(f)`, but only the values inside `forward_only()`.

  Example:
    >>> @custom_gradient
    ... def double(x):
    ...   return 2. * x, lambda dy: 2. * dy
    >>> float(double(tf.constant(1.5)))
    3.0
  """
  with_gradient = tf.custom_gradient(f)

  @functools.wraps(f)
  def call(*args):
    if getattr(_STATE, 'on', False):
      return f(*args)[0]
    return with_gradient(*args)
  return call
