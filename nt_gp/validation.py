"""Checks of the arguments users pass throughout nt_gp, written once.

Each check raises a `TypeError` (wrong kind of value) or `ValueError` (right
kind, wrong value) whose message names the argument and what it must be, and
returns the canonical value.
"""
import collections
import numbers
from typing import Optional, Sequence, Tuple

import numpy as np

__all__ = ['is_number', 'check_int', 'check_positive_int',
           'check_positive_ints', 'check_parameterization',
           'canonicalize_get', 'check_kernel_name', 'namedtuple_of',
           'check_kernel_dtype']

KERNEL_NAMES = ('nngp', 'ntk')


def is_number(value) -> bool:
  """Whether `value` is a real Python/numpy number (not a bool or tensor).

  Example:
    >>> is_number(2), is_number(np.float32(0.5)), is_number(True)
    (True, True, False)
  """
  return (isinstance(value, (numbers.Real, np.number)) and
          not isinstance(value, (bool, np.bool_)))


def check_kernel_dtype(name: str, dtype, fix: Optional[str] = None):
  """Refuses floating dtypes other than float32 and float64 for kernel
  inputs and kernels; returns `dtype`.

  Half precision (float16, bfloat16, the float8 types) keeps about 3
  significant digits or fewer and overflows above 65504 (float16): a kernel
  computed in it would be silently inaccurate, and its round-off guards
  (floors of 1e-12 and the like) underflow to zero. Integer and boolean
  dtypes are not refused here (callers cast them to float32).

  Args:
    name: what has the dtype, for the message (an argument's name is
      quoted).
    dtype: a `tf.DType` (or anything `tf.as_dtype` takes).
    fix: what the user should do (default: cast it with `tf.cast`).

  Example:
    >>> import tensorflow as tf
    >>> check_kernel_dtype('x1', tf.float64).name
    'float64'
    >>> check_kernel_dtype('x1', tf.float16)
    Traceback (most recent call last):
    ...
    TypeError: `x1` has dtype float16; kernels are computed in float32 or float64 only (half precision keeps 3 significant digits or fewer): cast it, e.g. tf.cast(x, tf.float32).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  dtype = tf.as_dtype(dtype)
  if dtype.is_floating and dtype not in (tf.float32, tf.float64):
    what = f'`{name}`' if name.isidentifier() else name
    raise TypeError(f'{what} has dtype {dtype.name}; kernels are computed '
                    f'in float32 or float64 only (half precision keeps 3 '
                    f'significant digits or fewer): '
                    f'{fix or "cast it, e.g. tf.cast(x, tf.float32)"}.')
  return dtype


def check_int(name: str, value, lower: int = 0) -> int:
  """Validates an integer argument (not a bool) ``>= lower``; returns it.

  Example:
    >>> check_int('degree', 3)
    3
    >>> check_int('degree', 2.)
    Traceback (most recent call last):
    ...
    TypeError: `degree` must be an int, got 2.0.
  """
  if isinstance(value, (bool, np.bool_)) or not isinstance(
      value, (int, np.integer)):
    raise TypeError(f'`{name}` must be an int, got {value!r}.')
  if value < lower:
    what = 'a positive int' if lower == 1 else f'an int >= {lower}'
    raise ValueError(f'`{name}` must be {what}, got {value!r}.')
  return int(value)


def check_positive_int(name: str, value) -> int:
  """Validates a size (an int ``>= 1``, not a bool); returns it.

  Example:
    >>> check_positive_int('out_dim', 0)
    Traceback (most recent call last):
    ...
    ValueError: `out_dim` must be a positive int, got 0.
  """
  return check_int(name, value, lower=1)


def check_positive_ints(name: str, values,
                        n: Optional[int] = None) -> Tuple[int, ...]:
  """Validates a sequence of positive ints (of length `n` if given).

  Example:
    >>> check_positive_ints('strides', [2, 1], n=2)
    (2, 1)
  """
  try:
    values = tuple(int(v) for v in values)
  except (TypeError, ValueError):
    raise TypeError(f'`{name}` must be a sequence of ints, got {values!r}.'
                    ) from None
  if n is not None and len(values) != n:
    raise ValueError(f'`{name}` must have {n} entries, got {values}.')
  if any(v < 1 for v in values):
    raise ValueError(f'`{name}` entries must be positive, got {values}.')
  return values


def check_parameterization(parameterization: str) -> str:
  """`'ntk'` or `'standard'` (any case), as neural-tangents' layers take.

  Example:
    >>> check_parameterization('NTK')
    'ntk'
  """
  p = str(parameterization).lower()
  if p not in ('ntk', 'standard'):
    raise ValueError(f'`parameterization` must be "ntk" or "standard", got '
                     f'{parameterization!r}.')
  return p


def check_kernel_name(get) -> str:
  """Validates a single kernel name, `'nngp'` or `'ntk'` (as a GP model's
  `get` argument takes); returns it.

  Example:
    >>> check_kernel_name('ntk')
    'ntk'
    >>> check_kernel_name('cov1')
    Traceback (most recent call last):
    ...
    ValueError: `get` must be "nngp" or "ntk", got 'cov1'.
  """
  if not isinstance(get, str):
    raise TypeError(f'`get` must be "nngp" or "ntk", got {get!r}.')
  if get not in KERNEL_NAMES:
    raise ValueError(f'`get` must be "nngp" or "ntk", got {get!r}.')
  return get


def canonicalize_get(get, allowed: Sequence[str],
                     default: Optional[Sequence[str]] = None):
  """Validates a `get` argument: None, a name, or a tuple/list of names.

  Names are compared in lower case and must be unique.

  Args:
    get: the user's argument.
    allowed: the names this function computes.
    default: the names `get=None` stands for (None: the caller decides, e.g.
      the whole `Kernel`).

  Returns:
    `(single, names)`: whether one name was given as a string (the caller
    returns one value rather than a namedtuple), and the tuple of names
    (`default` for `get=None`).

  Example:
    >>> canonicalize_get('NTK', ('nngp', 'ntk'))
    (True, ('ntk',))
    >>> canonicalize_get(None, ('nngp', 'ntk'), ('nngp', 'ntk'))
    (False, ('nngp', 'ntk'))
    >>> canonicalize_get(('nngp', 'cov1'), ('nngp', 'ntk'))
    Traceback (most recent call last):
    ...
    ValueError: `get='cov1'` is not available here; choose from ('nngp', 'ntk').
  """
  if get is None:
    return False, None if default is None else tuple(default)
  if isinstance(get, str):
    single, names = True, (get,)
  elif isinstance(get, (tuple, list)) and all(isinstance(g, str) for g in get):
    single, names = False, tuple(get)
  else:
    raise TypeError(f'`get` must be None, a string or a tuple of strings, got '
                    f'{get!r}.')
  if not names:
    raise ValueError('`get` must not be empty.')
  names = tuple(g.lower() for g in names)
  if len(set(names)) != len(names):
    raise ValueError(f'All entries of `get` must be unique, got {names}.')
  for g in names:
    if g not in allowed:
      raise ValueError(f'`get={g!r}` is not available here; choose from '
                       f'{tuple(allowed)}.')
  return single, names


_NAMEDTUPLES = {}


def namedtuple_of(name: str, fields: Sequence[str]):
  """The namedtuple class `name` with `fields`, one class per pair (so that
  equal `get` arguments give outputs of equal types).

  Example:
    >>> namedtuple_of('Kernels', ('nngp', 'ntk')) is namedtuple_of(
    ...     'Kernels', ['nngp', 'ntk'])
    True
  """
  key = (name, tuple(fields))
  if key not in _NAMEDTUPLES:
    _NAMEDTUPLES[key] = collections.namedtuple(name, key[1])
  return _NAMEDTUPLES[key]
