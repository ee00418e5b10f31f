"""Shapes of activations: `init_fn` helpers and shape inference.

Layers infer the shapes of their outputs from their `init_fn`; an `init_fn`
made by `make_init_fn` carries its `shape_fn`, so this needs no parameters.
"""
from typing import Callable, Optional

import tensorflow as tf

from nt_gp.kernel import Kernel
from nt_gp.stax import _random

__all__ = ['make_init_fn', 'output_shapes', 'with_shapes', 'kernel_shapes']


# ----------------------------------------------------------------------------
# init_fn and shape inference.
# ----------------------------------------------------------------------------
def make_init_fn(shape_fn: Callable, params_fn: Optional[Callable] = None):
  """Builds `init_fn(seed, input_shape) -> (output_shape, params)`.

  Args:
    shape_fn: `input_shape -> output_shape` (shapes are tuples or trees).
    params_fn: `(key, input_shape) -> params`; `None` for layers without
      parameters (params are `()`).

  Returns:
    `init_fn` with the attribute `shape_fn`, used for cheap shape inference.

  Example:
    >>> init_fn = make_init_fn(lambda s: s[:-1] + (2 * s[-1],))
    >>> init_fn(0, (5, 3))
    ((5, 6), ())
  """
  def init_fn(seed, input_shape):
    input_shape = _as_shape_tree(input_shape)
    out_shape = shape_fn(input_shape)
    if params_fn is None:
      return out_shape, ()
    return out_shape, params_fn(_random.as_key(seed), input_shape)
  init_fn.shape_fn = shape_fn
  return init_fn


def _as_shape_tree(s):
  if isinstance(s, tf.TensorShape):
    return tuple(s.as_list())
  if isinstance(s, (list, tuple)) and s and all(
      isinstance(d, (list, tuple, tf.TensorShape)) for d in s):
    return type(s)(_as_shape_tree(d) for d in s)
  return tuple(s)


def output_shapes(init_fn: Callable, shapes):
  """The output shape (tree) of a layer for input `shapes`, from its
  `init_fn` (cheaply when made by `make_init_fn`).

  Example:
    >>> from nt_gp import stax
    >>> output_shapes(stax.Dense(7)[0], (5, 3))
    (5, 7)
  """
  shape_fn = getattr(init_fn, 'shape_fn', None)
  if shape_fn is not None:
    return shape_fn(shapes)
  with tf.init_scope():
    return init_fn(0, shapes)[0]


# ----------------------------------------------------------------------------
# Shapes of kernels and trees of kernels.
# ----------------------------------------------------------------------------
def with_shapes(ks, shapes1, shapes2):
  """`ks` (a kernel or tree of kernels) with `shape1`/`shape2` set.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> k = stax.Dense(1)[2](np.ones((2, 3)), get=None)
    >>> kernel_shapes(with_shapes([k], [(2, 4)], [(2, 4)]), 'shape1')
    [(2, 4)]
  """
  if isinstance(ks, Kernel):
    return ks.replace(shape1=tuple(shapes1), shape2=tuple(shapes2))
  return type(ks)(with_shapes(k, s1, s2)
                  for k, s1, s2 in zip(ks, shapes1, shapes2))


def kernel_shapes(ks, attr: str):
  """The `shape1` or `shape2` (`attr`) of a kernel or tree of kernels."""
  if isinstance(ks, Kernel):
    return tuple(getattr(ks, attr))
  return type(ks)(kernel_shapes(k, attr) for k in ks)
