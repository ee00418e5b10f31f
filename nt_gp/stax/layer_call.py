"""What a layer is: the public constructor call that built it (`describe`).

Every public constructor of `nt_gp.stax` records, for the `kernel_fn` it
returns, a `LayerCall`: the constructor's name and its arguments bound by
name (defaults applied), with layer arguments (the `*layers` of `serial`,
`repeat`'s `layer`, ...) replaced by their own `LayerCall`s. A network is
thus a tree of records that other code can walk (e.g. to build another
representation of the same architecture) without a second description.

`stax.layer` makes the record: every public constructor is a `@layer`
function (one built from another, like `Relu` from `ABRelu`'s rule, shares
that rule's code, not its public constructor), so the call the user made is
the record.
"""
import dataclasses
import functools
import inspect
import types
import weakref
from typing import Any, Callable, Mapping

__all__ = ['LayerCall', 'describe', 'record']

# kernel_fn -> LayerCall. Weak keys: a record lives as long as its layer.
_CALLS = weakref.WeakKeyDictionary()


@dataclasses.dataclass(frozen=True)
class LayerCall:
  """The constructor call that built a layer.

  Attributes:
    name: the public constructor as the user called it (`'Dense'`, `'Relu'`,
      `'serial'`, or the name of a user's own `@stax.layer` function).
    arguments: read-only mapping of the constructor's arguments by name,
      defaults applied. Arguments that are layers are `LayerCall`s (a tuple
      of them for `*layers`); hyperparameters are kept as given (numbers,
      tensors or `tf.Variable`s).

  Example:
    >>> from nt_gp import stax
    >>> call = stax.describe(stax.Dense(8, W_std=2.))
    >>> call.name, call.arguments['W_std'], call.arguments['b_std']
    ('Dense', 2.0, None)
  """
  name: str
  arguments: Mapping[str, Any]

  def __post_init__(self):
    if not isinstance(self.arguments, types.MappingProxyType):
      object.__setattr__(self, 'arguments',
                         types.MappingProxyType(dict(self.arguments)))

  def __repr__(self):
    return f'LayerCall(name={self.name!r}, arguments={dict(self.arguments)!r})'


def _record_of(obj):
  """The `LayerCall` of a `kernel_fn` or `(init_fn, apply_fn, kernel_fn)`."""
  if isinstance(obj, (tuple, list)) and len(obj) == 3:
    obj = obj[2]
  if not callable(obj):
    return None
  try:
    return _CALLS.get(obj)
  except TypeError:      # not weak-referenceable: not a recorded kernel_fn
    return None


def _as_record(value):
  """`value` with layers (and tuples/lists of layers) replaced by records."""
  record = _record_of(value)
  if record is not None:
    return record
  if isinstance(value, (tuple, list)) and value:
    records = tuple(_record_of(v) for v in value)
    if all(r is not None for r in records):
      return records
  return value


@functools.lru_cache(maxsize=512)
def _signature(fn) -> inspect.Signature:
  return inspect.signature(fn)


def record(kernel_fn: Callable, constructor: Callable, args, kwargs):
  """Records that `constructor(*args, **kwargs)` built `kernel_fn`."""
  bound = _signature(constructor).bind(*args, **kwargs)
  bound.apply_defaults()
  arguments = {name: _as_record(value)
               for name, value in bound.arguments.items()}
  _CALLS[kernel_fn] = LayerCall(constructor.__name__, arguments)


def describe(layer) -> LayerCall:
  """The constructor call that built a layer, as a `LayerCall`.

  Args:
    layer: an `(init_fn, apply_fn, kernel_fn)` triple returned by an
      `nt_gp.stax` constructor (or a user's `@stax.layer` function), or just
      its `kernel_fn`.

  Returns:
    A frozen `LayerCall(name, arguments)`; layer arguments are `LayerCall`s
    themselves, so a network is described as a tree.

  Raises:
    TypeError: if `layer` was not built by an `nt_gp.stax` constructor.

  Example:
    >>> from nt_gp import stax
    >>> net = stax.serial(stax.Dense(8, W_std=2.), stax.Relu())
    >>> call = stax.describe(net)
    >>> call.name, [c.name for c in call.arguments['layers']]
    ('serial', ['Dense', 'Relu'])
    >>> call.arguments['layers'][1]
    LayerCall(name='Relu', arguments={'do_stabilize': False})
  """
  record_ = _record_of(layer)
  if record_ is None:
    raise TypeError(
        f'{layer!r} was not built by an nt_gp.stax constructor; `describe` '
        f'takes the (init_fn, apply_fn, kernel_fn) triple (or the kernel_fn) '
        f'returned by one, e.g. stax.Dense(1) or stax.serial(...).')
  return record_
