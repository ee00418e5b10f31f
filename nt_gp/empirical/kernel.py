"""`empirical_kernel_fn`: NNGP and NTK samples of a finite network by `get`."""
from typing import Callable

import tensorflow as tf

from nt_gp import validation
from nt_gp.empirical import ntk as _ntk
from nt_gp.empirical.nngp import empirical_nngp_fn

__all__ = ['empirical_kernel_fn', 'canonicalize_get', 'select']

GETS = ('nngp', 'ntk')


def canonicalize_get(get):
  """`(single, names)` of an empirical kernel's `get`: None (both),
  `'nngp'`, `'ntk'` or a tuple of them (see `validation.canonicalize_get`)."""
  return validation.canonicalize_get(get, GETS, GETS)


def select(values: dict, single: bool, names, name: str):
  """Kernels by name -> one tensor or a namedtuple (per output leaf)."""
  first = values[names[0]]
  if single:
    return first
  cls = validation.namedtuple_of(name, names)
  if isinstance(first, (tf.Tensor, tf.Variable)) or not tf.nest.is_nested(
      first):
    return cls(*(values[g] for g in names))
  flats = [tf.nest.flatten(values[g]) for g in names]
  return tf.nest.pack_sequence_as(first, [cls(*vals) for vals in zip(*flats)])


def empirical_kernel_fn(f, trace_axes=(-1,), diagonal_axes=(), vmap_axes=None,
                        implementation=_ntk.DEFAULT_NTK_IMPLEMENTATION
                        ) -> Callable:
  """Returns `kernel_fn(x1, x2, get, params, **apply_fn_kwargs)` giving one
  sample of the empirical NNGP and/or NTK of a finite network.

  Args:
    f: `f(params, x, **kwargs)` (nested params of tensors) or a built Keras 3
      model (see `empirical_ntk_fn`).
    trace_axes: output axes whose pair is traced and divided by its size.
    diagonal_axes: output axes of which only the diagonal pair is kept.
    vmap_axes: NTK only; see `empirical_ntk_fn`.
    implementation: NTK only; an `NtkImplementation` or its int value.

  Returns:
    `kernel_fn(x1, x2=None, get=None, params=None, **apply_fn_kwargs)`:
    `get` is `"nngp"`, `"ntk"` (one tensor) or a tuple of them (an
    `EmpiricalKernel` namedtuple in that order); None means
    `("nngp", "ntk")`. Shapes and dtypes as in `empirical_nngp_fn` and
    `empirical_ntk_fn`.

  Example:
    >>> import numpy as np
    >>> import nt_gp
    >>> def f(params, x):
    ...   return x @ params
    >>> kernel_fn = nt_gp.empirical_kernel_fn(f)
    >>> x = np.array([[1., 0.], [1., 1.]])
    >>> k = kernel_fn(x, None, ('nngp', 'ntk'), np.ones((2, 1)))
    >>> k.nngp.numpy(), k.ntk.numpy()
    (array([[1., 2.],
           [2., 4.]]), array([[1., 1.],
           [1., 2.]]))
  """
  fns = {
      'nngp': empirical_nngp_fn(f, trace_axes, diagonal_axes),
      'ntk': _ntk.empirical_ntk_fn(f, trace_axes, diagonal_axes, vmap_axes,
                                   implementation),
  }

  def kernel_fn(x1, x2=None, get=None, params=None, **apply_fn_kwargs):
    single, names = canonicalize_get(get)
    values = {g: fns[g](x1, x2, params, **apply_fn_kwargs) for g in names}
    return select(values, single, names, 'EmpiricalKernel')
  return kernel_fn
