"""Kernels that became NaN or infinite are errors, not results.

A kernel overflows when its inputs are too large for the dtype (float32
inputs of norm above about 1e19 have squared norms above float32's 3.4e38;
float64 overflows near 1e154), and some layers can meet undefined operations.
`kernel_fn` then raises `NonFiniteKernelError` (a `ValueError`) naming the
quantity and what to do, instead of returning NaN/inf entries. The kernel
store (`nt_gp.distributed.compute_kernel`) never records such a block.

Inside a `tf.function` the check is an assertion op on one fused
`is_finite` reduction (an `InvalidArgumentError` carrying the same message
when it runs). It costs one multi-threaded pass over the outputs (5 ms for
a 4000 x 4000 float64 kernel here; `tf.debugging.check_numerics`, which
scans on one thread, took 40 ms); `finite_checks(False)` turns it off.

XLA drops assertions (and `check_numerics`), so where nt_gp compiles a
kernel with XLA itself (`nt_gp.config.jit_compile = True`) it checks the
result after the compiled call instead. A kernel traced inside a user's
`tf.function(jit_compile=True)` cannot be checked there: it warns (a
`NonFiniteCheckWarning`) that the result must be checked after the call.

Example:
  >>> import numpy as np
  >>> from nt_gp import stax
  >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu(), stax.Dense(1))
  >>> x = np.full((2, 3), 1e30, np.float32)
  >>> kernel_fn(x, None, 'nngp')  # doctest: +ELLIPSIS
  Traceback (most recent call last):
  ...
  nt_gp.nonfinite.NonFiniteKernelError: the kernel's `nngp` has 4 non-finite (NaN or inf) entries of 4 ...
  >>> bool(np.all(np.isfinite(kernel_fn(x.astype(np.float64), None, 'nngp'))))
  True
"""
import contextlib
import functools
import threading
import warnings

import numpy as np
import tensorflow as tf

from nt_gp import _callsite
from nt_gp import _graph_context

__all__ = ['NonFiniteKernelError', 'NonFiniteCheckWarning', 'finite_checks',
           'checked_after', 'check_output', 'check_values', 'check_kernel',
           'non_finite_message']

_CHECKED = ('nngp', 'ntk', 'cov1', 'cov2')
_enabled = [True]
_STATE = threading.local()


class NonFiniteKernelError(ValueError):
  """A kernel has NaN or infinite entries (see the module docstring).

  Example:
    >>> issubclass(NonFiniteKernelError, ValueError)
    True
  """


class NonFiniteCheckWarning(RuntimeWarning):
  """A kernel is computed inside a user's XLA-compiled function, where its
  finiteness cannot be checked (see the module docstring).

  Example:
    >>> issubclass(NonFiniteCheckWarning, RuntimeWarning)
    True
  """


_XLA_MESSAGE = (
    'nt_gp: a kernel is computed inside a function compiled with XLA '
    '(jit_compile=True), which drops assertions: NaN or inf kernel entries '
    'cannot raise NonFiniteKernelError there. Check the result after the '
    'compiled call (e.g. tf.debugging.check_numerics outside it), or call the '
    'kernel outside the compiled function.')


def checked_after(fn):
  """`fn` for the body of one of nt_gp's compiled functions whose results
  are checked when the compiled call returns: kernels it traces into an
  XLA-compiled function need no warning (this thread, while `fn` runs).

  Example:
    >>> checked_after(lambda: 1)()
    1
  """
  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    old = getattr(_STATE, 'after', False)
    _STATE.after = True
    try:
      return fn(*args, **kwargs)
    finally:
      _STATE.after = old
  return wrapper


@contextlib.contextmanager
def finite_checks(enabled: bool):
  """Temporarily turns the check of kernel outputs on or off.

  Example:
    >>> with finite_checks(False):
    ...   pass
  """
  old = _enabled[0]
  _enabled[0] = bool(enabled)
  try:
    yield
  finally:
    _enabled[0] = old


def non_finite_message(name: str, values) -> str:
  """What is wrong with `values` (an array with non-finite entries) and
  what to do about it.

  Example:
    >>> non_finite_message('ntk', np.array([1., np.inf]))[:60]
    "the kernel's `ntk` has 1 non-finite (NaN or inf) entries of "
  """
  a = np.asarray(values)
  bad = ~np.isfinite(a)
  first = tuple(int(i) for i in np.argwhere(bad)[0]) if bad.any() else ()
  dtype = a.dtype.name
  fix = ('use float64 inputs (--dtype float64) or rescale the inputs (e.g. '
         'to unit variance per feature)' if dtype == 'float32' else
         'rescale the inputs (e.g. to unit variance per feature)')
  return (f'the kernel\'s `{name}` has {int(bad.sum())} non-finite (NaN or '
          f'inf) entries of {a.size} ({dtype}, first at {first}): the '
          f'computation overflowed (inputs too large for {dtype}) or met an '
          f'undefined operation; {fix}.')


def _all_finite(t):
  # Eagerly, two ops are as fast as a `tf.function` of them (5 ms for a
  # 4000 x 4000 float64 kernel here), without its first-use cost (15-25 ms to
  # trace and instantiate, on every process's first kernel).
  return tf.reduce_all(tf.math.is_finite(t))


def _checked(name, t):
  if t is None or not hasattr(t, 'dtype') or not (
      tf.as_dtype(t.dtype).is_floating):
    return t
  if isinstance(t, np.ndarray):
    if not np.all(np.isfinite(t)):
      raise NonFiniteKernelError(non_finite_message(name, t))
    return t
  if tf.executing_eagerly() and not tf.inside_function():
    if not bool(_all_finite(t)):
      raise NonFiniteKernelError(non_finite_message(name, t.numpy()))
    return t
  if _graph_context.in_xla_context():
    # XLA would drop the assertion.
    if not getattr(_STATE, 'after', False):
      warnings.warn(_XLA_MESSAGE, NonFiniteCheckWarning,
                    stacklevel=_callsite.user_stacklevel())
    return t
  # One fused, multi-threaded reduction (tf.debugging.check_numerics scans
  # on one thread: 40 ms instead of 5 for a 4000 x 4000 float64 kernel).
  ok = _all_finite(t)
  check = tf.debugging.Assert(ok, [
      f'the kernel\'s `{name}` has non-finite (NaN or inf) entries: the '
      f'computation overflowed (inputs too large for {t.dtype.name}) or met '
      f'an undefined operation; use float64 inputs or rescale them.'])
  with tf.control_dependencies([check]):
    return tf.identity(t)


def check_output(out, single: bool, names):
  """The result of ``kernel_fn(x1, x2, get)`` (a tensor, namedtuple,
  `Kernel`, or a list of them for several outputs), checked to be finite.

  Args:
    out: the result.
    single: whether `get` was one name (`out` is then that tensor).
    names: the names of `get` (None: `out` is a whole `Kernel`).

  Example:
    >>> check_output(np.ones(2), True, ('ntk',))
    array([1., 1.])
  """
  if not _enabled[0]:
    return out
  if names is None:
    return check_kernel(out)
  if isinstance(out, list) or (isinstance(out, tuple) and
                               not hasattr(out, '_fields')):
    return type(out)(check_output(o, single, names) for o in out)
  values = check_values((out,) if single else tuple(out), names)
  return values[0] if single else type(out)(*values)


def check_values(values: tuple, names: tuple) -> tuple:
  """`values` (one per name of `names`), each checked to be finite.

  Raises:
    NonFiniteKernelError: a checked quantity (nngp, ntk, cov1, cov2) has a
      NaN or infinite entry (eagerly; inside a `tf.function` an assertion op
      is added instead).

  Example:
    >>> check_values((np.ones(2),), ('nngp',))[0]
    array([1., 1.])
  """
  if not _enabled[0]:
    return values
  return tuple(_checked(n, v) if n in _CHECKED else v
               for n, v in zip(names, values))


def check_kernel(k):
  """A `Kernel` (or a list/tuple of them) with its nngp, ntk, cov1 and cov2
  checked as by `check_values`.

  Example:
    >>> check_kernel([]) == []
    True
  """
  if not _enabled[0]:
    return k
  if isinstance(k, (list, tuple)) and not hasattr(k, 'replace'):
    return type(k)(check_kernel(x) for x in k)
  if not all(hasattr(k, n) for n in _CHECKED):
    return k
  return k.replace(**{n: _checked(n, getattr(k, n)) for n in _CHECKED})
