"""Lists of `diag_reg` values, with `nt_gp.predict.gp_inference`'s meaning.

A solve with `diag_reg` uses ``k_train_train + reg * I`` where ``reg`` is
`diag_reg` itself (``diag_reg_absolute_scale=True``) or `diag_reg` times the
mean of the diagonal of ``k_train_train`` (the default), exactly as
`gp_inference` does. For a GP, ``reg`` is the observation-noise variance.

Example:
  >>> import numpy as np
  >>> regs = check_regs([1e-2, 0.1])
  >>> absolute_regs(regs, mean_diagonal=4.0, absolute_scale=False)
  array([0.04, 0.4 ])
"""
import math
import numbers
from typing import Sequence, Union

import numpy as np

__all__ = ['check_regs', 'absolute_regs']


def check_regs(diag_reg: Union[float, Sequence[float]]) -> np.ndarray:
  """`diag_reg` (a number or a list) as a 1-D float64 array of valid values.

  Raises:
    ValueError: empty list, negative / NaN / infinite value, or duplicates.
    TypeError: not numbers.

  Example:
    >>> check_regs(0.5).tolist(), check_regs([0, 1e-3]).tolist()
    ([0.5], [0.0, 0.001])
  """
  values = [diag_reg] if isinstance(diag_reg, numbers.Number) or (
      isinstance(diag_reg, np.ndarray) and diag_reg.ndim == 0) else diag_reg
  try:
    values = list(values)
  except TypeError:
    raise TypeError(f'`diag_reg` must be a number or a list of numbers, got '
                    f'{diag_reg!r}.') from None
  if not values:
    raise ValueError('`diag_reg` is an empty list; give at least one value.')
  out = []
  for v in values:
    if isinstance(v, bool) or not isinstance(v, (numbers.Real, np.floating,
                                                 np.integer)):
      raise TypeError(f'`diag_reg` values must be real numbers, got {v!r}.')
    v = float(v)
    if not math.isfinite(v) or v < 0:
      raise ValueError(f'`diag_reg` values must be finite and non-negative, '
                       f'got {v!r}.')
    out.append(v)
  if len(set(out)) != len(out):
    raise ValueError(f'`diag_reg` lists a value twice: {values!r}.')
  return np.asarray(out, np.float64)


def absolute_regs(regs: np.ndarray, mean_diagonal: float,
                  absolute_scale: bool) -> np.ndarray:
  """The values added to the diagonal: `regs`, or `regs * mean_diagonal`.

  Example:
    >>> absolute_regs(np.array([0.1]), 10., absolute_scale=True)
    array([0.1])
  """
  regs = np.asarray(regs, np.float64)
  if absolute_scale:
    return regs.copy()
  if not math.isfinite(mean_diagonal):
    raise ValueError(f'The mean of the kernel\'s diagonal is {mean_diagonal}; '
                     f'the kernel has non-finite entries.')
  if mean_diagonal <= 0:
    # A kernel's diagonal holds variances; a relative regulariser would
    # scale by a non-positive number (and a negative one subtract).
    raise ValueError(f'The mean of the kernel\'s diagonal is '
                     f'{mean_diagonal:.6g} <= 0, so it is not the kernel of '
                     f'the training inputs with themselves (its diagonal '
                     f'holds variances) and `diag_reg` relative to it means '
                     f'nothing; check the kernel, or give absolute values '
                     f'with `diag_reg_absolute_scale=True` (--reg-absolute).')
  return regs * float(mean_diagonal)
