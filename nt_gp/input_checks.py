"""Checks of the inputs of a stored kernel computation, shared by
`nt_gp.distributed.compute_kernel` and `nt-gp kernel` (which runs them before
TensorFlow starts: this module does not import it).

Example:
  >>> import numpy as np
  >>> check_kernel_inputs('x1', np.ones((4, 3)), np.float32)
  >>> check_kernel_inputs('x1', np.array([[1., np.inf]]), np.float64)
  Traceback (most recent call last):
  ...
  ValueError: x1 has NaN or infinite values (first at index (0, 1)); kernels of such inputs are undefined: fix or drop those inputs
"""
import numpy as np

__all__ = ['check_kernel_inputs']

_CHUNK = 1 << 22      # entries checked at a time (bounds the memory used)


def check_kernel_inputs(name: str, x: np.ndarray, dtype) -> None:
  """Raises if `x` (batch first) cannot be the input of a kernel of `dtype`.

  Args:
    name: how messages call the input (e.g. ``'--x1'`` or ``'`x1`'``).
    x: a numpy array (a memory-mapped one is read in pieces).
    dtype: the computation dtype (float32 or float64).

  Raises:
    TypeError: complex or non-numeric values.
    ValueError: fewer than 2 axes, no entries, NaN/inf, or values beyond the
      range of `dtype`.

  Example:
    >>> check_kernel_inputs('x', np.zeros((0, 2)), np.float64)
    Traceback (most recent call last):
    ...
    ValueError: x is empty (shape (0, 2))
  """
  dtype = np.dtype(dtype)
  if np.iscomplexobj(x):
    raise TypeError(f'{name} is complex ({x.dtype}); kernels are defined for '
                    f'real inputs: use the real part, or the real and '
                    f'imaginary parts as separate features')
  if not (np.issubdtype(x.dtype, np.floating) or
          np.issubdtype(x.dtype, np.integer)):
    raise TypeError(f'{name} must hold real numbers, got dtype {x.dtype}')
  if x.ndim < 2:
    raise ValueError(f'{name} must have a batch and a feature axis, got shape '
                     f'{x.shape}')
  if x.size == 0:
    raise ValueError(f'{name} is empty (shape {x.shape})')
  flat = x.reshape(-1)
  biggest = 0.
  for start in range(0, flat.size, _CHUNK):
    part = np.asarray(flat[start:start + _CHUNK])
    bad = ~np.isfinite(part)
    if bad.any():
      index = np.unravel_index(start + int(np.argmax(bad)), x.shape)
      raise ValueError(f'{name} has NaN or infinite values (first at index '
                       f'{tuple(int(i) for i in index)}); kernels of such '
                       f'inputs are undefined: fix or drop those inputs')
    biggest = max(biggest, float(np.max(np.abs(part))))
  if biggest > np.finfo(dtype).max:
    raise ValueError(f'{name} has values up to {biggest:.3g}, beyond the range '
                     f'of {dtype.name}: rescale the inputs or use float64')
