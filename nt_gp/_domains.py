"""The domain of each hyperparameter of an architecture function.

A hyperparameter is *positive* (a weight standard deviation `W_std`),
*non-negative* (a bias standard deviation `b_std`, which may be 0) or *real*
(the slopes of `stax.ABRelu(a, b)`, which may be negative). The stax layers
check the numbers they are given, so the domain of each hyperparameter is
found by building the network with that hyperparameter set to -1, then to 0
(the others at their given values): the first value the layers accept
decides. The adapters give each domain its default transform: TFP's
`Softplus(low=eps)` / GPflow's `positive()` for positive, `Softplus()` for
non-negative, the identity for real.
"""
from typing import Callable, Dict

import numpy as np
import tensorflow as tf

__all__ = ['POSITIVE', 'NON_NEGATIVE', 'REAL', 'DOMAINS', 'infer',
           'representative', 'check_value', 'contains']

POSITIVE, NON_NEGATIVE, REAL = 'positive', 'non-negative', 'real'
DOMAINS = (POSITIVE, NON_NEGATIVE, REAL)


def representative(value) -> float:
  """A float standing for `value` when probing (its first entry, or 1)."""
  if isinstance(value, (bool, np.bool_)):
    return 1.
  try:
    if hasattr(value, 'pretransformed_input') or isinstance(value,
                                                            tf.Variable):
      value = tf.convert_to_tensor(value)
    if tf.is_tensor(value):
      if not hasattr(value, 'numpy'):
        return 1.
      value = value.numpy()
    arr = np.asarray(value, dtype=np.float64).ravel()
  except (TypeError, ValueError):
    return 1.
  return float(arr[0]) if arr.size and np.isfinite(arr[0]) else 1.


def _accepts(architecture: Callable, values: Dict) -> bool:
  try:
    architecture(**values)
  except Exception:  # pylint: disable=broad-except
    return False
  return True


def infer(architecture: Callable, values: Dict) -> Dict[str, str]:
  """`{name: domain}` for the hyperparameters in `values` (see module doc).

  Example:
    >>> from nt_gp import stax
    >>> arch = lambda W_std, b_std, a: stax.serial(
    ...     stax.Dense(1, W_std, b_std), stax.ABRelu(a, 1.), stax.Dense(1))
    >>> infer(arch, dict(W_std=1., b_std=0., a=-0.5))
    {'W_std': 'positive', 'b_std': 'non-negative', 'a': 'real'}
  """
  # The given values stand for the others while one is probed; if the
  # network refuses them (a value out of its domain), ones do.
  for base in ({n: representative(v) for n, v in values.items()},
               {n: 1. for n in values}):
    if _accepts(architecture, base):
      break
  else:
    # The network cannot be built from numbers: nothing to learn from
    # probing, keep the strictest domain.
    return {n: POSITIVE for n in values}
  out = {}
  for n in values:
    if _accepts(architecture, dict(base, **{n: -1.})):
      out[n] = REAL
    elif _accepts(architecture, dict(base, **{n: 0.})):
      out[n] = NON_NEGATIVE
    else:
      out[n] = POSITIVE
  return out


def contains(domain: str, arr: np.ndarray) -> bool:
  """Whether every entry of `arr` is finite and in `domain`."""
  if not np.all(np.isfinite(arr)):
    return False
  if domain == POSITIVE:
    return bool(np.all(arr > 0))
  if domain == NON_NEGATIVE:
    return bool(np.all(arr >= 0))
  return True


def check_value(name: str, value, domain: str):
  """Raises if a concrete hyperparameter value is outside `domain`.

  Numbers, lists, numpy arrays and eager tensors are checked; variables
  (whose values change) are not.

  Example:
    >>> check_value('b_std', 0., NON_NEGATIVE)
    >>> check_value('W_std', 0., POSITIVE)
    Traceback (most recent call last):
    ...
    ValueError: Hyperparameter `W_std` must be positive and finite, got 0.0.
  """
  if isinstance(value, (bool, np.bool_, str, bytes)):
    raise TypeError(f'Hyperparameter `{name}` must be a number or a float '
                    f'tensor, got {value!r}.')
  if isinstance(value, tf.Variable) or hasattr(value, 'pretransformed_input'):
    return
  if tf.is_tensor(value):
    if not hasattr(value, 'numpy'):
      return
    arr = value.numpy()
  elif isinstance(value, (int, float, np.number, list, tuple, np.ndarray)):
    try:
      arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
      raise TypeError(f'Hyperparameter `{name}` must be numeric, got '
                      f'{value!r}.') from e
  else:
    return
  if arr.dtype.kind not in 'fiu':
    raise TypeError(f'Hyperparameter `{name}` must be real-valued, got dtype '
                    f'{arr.dtype}.')
  if not contains(domain, np.asarray(arr, np.float64)):
    shown = arr.tolist()
    raise ValueError(f'Hyperparameter `{name}` must be '
                     f'{"" if domain == REAL else domain + " and "}finite, '
                     f'got {shown}.')
