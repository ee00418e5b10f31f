"""Empirical NNGP: the outer product of the network's outputs."""
from typing import Callable

import tensorflow as tf

from nt_gp.empirical import _engine

__all__ = ['empirical_nngp_fn']


def _nngp_core(setup, x1, x2, kw1, kw2):
  fx1 = setup.apply(setup.p_flat, x1, kw1)
  fx2 = fx1 if x2 is None else setup.apply(setup.p_flat, x2, kw2)
  layouts = setup.layouts([l.shape for l in fx1], [l.shape for l in fx2])
  return [lay.normalize(tf.einsum(f'{lay.lhs},{lay.rhs}->{lay.out}', a, b))
          for lay, a, b in zip(layouts, fx1, fx2)]


def empirical_nngp_fn(f, trace_axes=(-1,), diagonal_axes=()) -> Callable:
  """Returns `nngp_fn(x1, x2, params, **apply_fn_kwargs)`: one sample of the
  empirical NNGP `f(x1) f(x2)ᵀ` of a finite network.

  Args:
    f: `f(params, x, **kwargs)` with `params` a nested structure (tuples,
      lists, dicts) of tensors, returning a tensor or a nested structure of
      tensors; or a built Keras 3 model (its trainable variables are the
      params; `params=None` uses their current values).
    trace_axes: output axes whose pair is traced (summed over the diagonal and
      divided by its size), e.g. the logits axis `-1`.
    diagonal_axes: output axes of which only the diagonal pair is kept.

  Returns:
    `nngp_fn(x1, x2=None, params=None, **apply_fn_kwargs)`. `x2=None` means
    `x2 = x1`. For outputs of shape `(N1, C)` and `(N2, C)` the kernel has
    shape `(N1, N2)` with `trace_axes=(-1,)` and `(N1, N2, C, C)` with
    `trace_axes=()`: every non-traced output axis appears twice (`x1`'s then
    `x2`'s) and diagonal axes once, as in neural-tangents. The dtype is the
    inputs' floating dtype. For nested outputs, a nested structure of kernels
    (no cross terms between outputs).

  Raises:
    ValueError: `trace_axes`/`diagonal_axes` out of range or overlapping,
      `x1`/`x2` shapes differing apart from the batch axis, an unbuilt Keras
      model.

  Example:
    >>> import numpy as np
    >>> import nt_gp
    >>> def f(params, x):
    ...   return x @ params['w']
    >>> params = {'w': np.eye(2)}
    >>> x = np.array([[1., 2.], [3., 4.]])
    >>> nngp_fn = nt_gp.empirical_nngp_fn(f)
    >>> nngp_fn(x, None, params).numpy()   # x xᵀ / 2
    array([[ 2.5,  5.5],
           [ 5.5, 12.5]])
  """
  return _engine.compiled_kernel_fn(_nngp_core, f, trace_axes, diagonal_axes,
                                    None)
