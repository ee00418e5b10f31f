"""XLA compilation of covariance ops.

Kernel propagation runs as one TensorFlow graph per network; inside it, the
elementwise and spatial covariance ops are XLA clusters (each a
`tf.function(jit_compile=True)`), which fuses the many elementwise steps of a
nonlinearity or the slices of a convolution into single loops. Matrix products
(the input covariance) stay in TensorFlow's own kernels, which are faster on
CPU. `nt_gp.config.jit_compile = False` turns XLA off everywhere.

TensorFlow keeps every XLA executable it compiles for the life of the process,
keyed by the `tf.function` that made it. Layers built with the same static
configuration therefore share one compiled function (see `static_key`), so a
program that builds many networks (a hyperparameter search, a test suite)
compiles each distinct covariance op once instead of leaking a copy per layer.
"""
import functools
import types

import tensorflow as tf

from nt_gp import _config
from nt_gp.ops import prime
from nt_gp.ops import watching

__all__ = ['xla', 'static_key', 'lift_tensors', 'rule_scope', 'gradient_mask']

_SHARED = {}
_MAX_SHARED = 1024


def _freeze(value, depth=0):
  """A hashable, type-exact stand-in for a static value (TypeError if none)."""
  if depth > 8:
    raise TypeError('nested too deeply')
  if isinstance(value, (list, tuple)):
    return (type(value).__name__,) + tuple(_freeze(v, depth + 1)
                                           for v in value)
  if isinstance(value, dict):
    return ('dict',) + tuple(sorted((k, _freeze(v, depth + 1))
                                    for k, v in value.items()))
  if isinstance(value, types.FunctionType):
    return ('function', static_key(value, depth + 1))
  if isinstance(value, functools.partial):
    return ('partial', _freeze(value.func, depth + 1),
            _freeze(value.args, depth + 1), _freeze(value.keywords, depth + 1))
  if value is None or isinstance(value, (bool, int, float, str, complex,
                                         types.BuiltinFunctionType, type)):
    return (type(value).__name__, value)
  if isinstance(value, (tf.Tensor, tf.Variable)):
    raise TypeError('tensors are not static')
  hash(value)
  return (type(value).__qualname__, value)


def static_key(fn, _depth=0):
  """A hashable key that determines what `fn` computes, or `fn` itself.

  Two functions with the same code, defaults and closure values (compared by
  value and type: lists, tuples, dicts, numbers, strings, nested functions
  recursively) compute the same thing, so they may share one compiled
  function. Module-level functions are keyed by identity. A closure over a
  tensor or another unhashable object gets `fn` itself as its key (no
  sharing).

  Example:
    >>> make = lambda a: (lambda x: x * a)
    >>> static_key(make(2)) == static_key(make(2))
    True
    >>> static_key(make(2)) == static_key(make(3))
    False
  """
  if not isinstance(fn, types.FunctionType) or '<locals>' not in getattr(
      fn, '__qualname__', ''):
    return fn     # module-level (or builtin/callable object): its identity
  if not fn.__closure__ and not fn.__defaults__ and not fn.__kwdefaults__:
    return fn.__code__
  if _depth > 8:
    return fn
  try:
    cells = tuple(_freeze(c.cell_contents, _depth + 1)
                  for c in fn.__closure__ or ())
    return (fn.__code__, id(fn.__globals__), cells,
            _freeze(fn.__defaults__, _depth + 1),
            _freeze(fn.__kwdefaults__, _depth + 1))
  except (TypeError, ValueError):   # unhashable value or an empty cell
    return fn


class _Rebuild:
  """Makes copies of a closure with new values in its tensor cells."""

  def __init__(self, fn, slots):
    self._code, self._globals = fn.__code__, fn.__globals__
    self._name, self._defaults = fn.__name__, fn.__defaults__
    self._kwdefaults = fn.__kwdefaults__
    # Static cell values only: no reference to the tensors (or their graph).
    self._values = [None if i in slots else c.cell_contents
                    for i, c in enumerate(fn.__closure__)]
    self._slots = slots

  def __call__(self, tensors):
    values = list(self._values)
    for i, t in zip(self._slots, tensors):
      values[i] = t
    out = types.FunctionType(self._code, self._globals, self._name,
                             self._defaults,
                             tuple(types.CellType(v) for v in values))
    out.__kwdefaults__ = self._kwdefaults
    return out


def lift_tensors(fn):
  """Separates the tensors a closure captures from what is static about it.

  Kernel rules build their elementwise maps as closures over hyperparameter
  tensors of the graph being traced. Passing those tensors as arguments
  instead lets one compiled function serve every trace (and every network)
  that uses the same map.

  Returns:
    `(key, rebuild, tensors)`: `rebuild(new_tensors)` is `fn` with its tensor
    cells replaced, in the order of `tensors`; `key` is hashable and equal for
    two functions whose rebuilds compute the same thing given the same
    tensors (None where `fn` cannot be split, e.g. a closure over a
    variable: then `rebuild` returns `fn` and `tensors` is empty).

  Example:
    >>> import tensorflow as tf
    >>> make = lambda a: (lambda x: x * a)
    >>> k1, rebuild, ts = lift_tensors(make(tf.constant(2.)))
    >>> k2, _, _ = lift_tensors(make(tf.constant(5.)))
    >>> k1 == k2, float(rebuild([tf.constant(3.)])(1.))
    (True, 3.0)
  """
  keep = lambda ts: fn
  if fn is None:
    return ('none',), keep, ()
  if not isinstance(fn, types.FunctionType) or not fn.__closure__ or (
      '<locals>' not in fn.__qualname__):
    # A module-level function or callable: its identity, which lives as long
    # as the module. A nested function without closure: its code.
    return ('fn', static_key(fn)), keep, ()
  try:
    values = [c.cell_contents for c in fn.__closure__]
  except ValueError:      # an empty cell (a name bound later)
    return None, keep, ()
  slots = [i for i, v in enumerate(values) if isinstance(v, tf.Tensor)]
  try:
    cells = tuple(
        ('tensor', v.dtype.name, tuple(v.shape.as_list()) if v.shape.rank
         is not None else None) if i in slots else _freeze(v)
        for i, v in enumerate(values))
    key = (fn.__code__, id(fn.__globals__), cells, _freeze(fn.__defaults__),
           _freeze(fn.__kwdefaults__))
  except (TypeError, ValueError):
    return None, keep, ()
  return key, _Rebuild(fn, slots), tuple(values[i] for i in slots)


RULE_SCOPE = 'nt_gp_rule'
_MAX_WALK = 64


def rule_scope():
  """The name scope layer rules run in (`tf.name_scope`).

  A constant created in it — a plain-number hyperparameter cast to the
  kernel's dtype, a literal of the rule's formulas — is the library's own:
  no user code holds it, so nothing can ask for its gradient
  (`gradient_mask`).

  Example:
    >>> with rule_scope():
    ...   pass
  """
  return tf.name_scope(RULE_SCOPE)


def _library_constant(t) -> bool:
  """Whether graph tensor `t` is computed only from constants created in
  `rule_scope` (walking at most `_MAX_WALK` ops back; False beyond)."""
  ops, seen = [t.op], set()
  while ops:
    op = ops.pop()
    if op.name in seen:
      continue
    seen.add(op.name)
    if len(seen) > _MAX_WALK:
      return False
    if not op.inputs and (op.type != 'Const' or RULE_SCOPE not in {
        part.rstrip('_0123456789') for part in op.name.split('/')[:-1]}):
      return False
    ops.extend(i.op for i in op.inputs)
  return True


def gradient_mask(tensors) -> tuple:
  """One bool per tensor: whether a gradient may be asked for it.

  An eager tensor: whether a tape or forward accumulator watches it. A graph
  tensor: True unless it is computed only from constants of `rule_scope`
  (any other graph tensor could be differentiated with `tf.gradients`
  later, e.g. a user's `tf.constant` passed as a hyperparameter).

  Example:
    >>> gradient_mask([tf.constant(1.)])
    (False,)
  """
  watched = watching.watched_mask(list(tensors))
  out = []
  for t, w in zip(tensors, watched):
    if w or not hasattr(t, 'op'):  # eager tensors have no `op`
      out.append(bool(w))
    else:
      out.append(not _library_constant(t))
  return tuple(out)


def xla(fn, share=True):
  """Returns `fn` compiled with XLA (one trace per distinct static argument).

  With `share`, functions with equal `static_key`s share one compiled
  function (kept for the life of the process, like TensorFlow's executables).

  Example:
    >>> import numpy as np
    >>> double = xla(lambda x: 2 * x)
    >>> float(double(np.float32(1.5)))
    3.0
  """
  key = static_key(fn) if share else None
  compiled = _SHARED.get(key) if share else None
  if compiled is None:
    compiled = tf.function(fn, jit_compile=True, autograph=False)
    if share and key is not fn:   # identity keys would pin `fn` forever
      if len(_SHARED) >= _MAX_SHARED:
        _SHARED.clear()
      _SHARED[key] = compiled

  @functools.wraps(fn)
  def run(*args, **kwargs):
    if _config.config.jit_compile is False:
      return fn(*args, **kwargs)
    if not kwargs:
      prime.maybe_prime(compiled, args)
    return compiled(*args, **kwargs)
  return run
