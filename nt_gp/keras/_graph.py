"""A Keras 3 model's graph as a flat list of layer calls.

`walk(model)` follows the symbolic tensors of a functional (or built
Sequential) model from its outputs back to its inputs, inlines nested
functional/Sequential models, and returns the layer calls in topological
order. Each distinct tensor gets an integer id.
"""
import contextlib
import dataclasses
import sys
from typing import Any, Dict, List, Tuple

import keras

__all__ = ['Call', 'Graph', 'walk', 'label']


def label(op) -> str:
  """`'name' (Class)` of a Keras layer or operation, for messages."""
  return f"Keras layer '{getattr(op, 'name', '?')}' ({type(op).__name__})"


@dataclasses.dataclass
class Call:
  """One call of a Keras layer (or `keras.ops` operation) in the graph.

  Attributes:
    op: the layer.
    inputs: ids of the input tensors, in the order of the call's arguments.
    output: id of the output tensor.
    structured: whether the first argument was a list of tensors (merges).
    extra_args: positional arguments after the tensors (non-tensors).
  """
  op: Any
  inputs: List[int]
  output: int
  structured: bool
  extra_args: Tuple = ()

  @property
  def label(self) -> str:
    return label(self.op)


@dataclasses.dataclass
class Graph:
  """Calls in topological order, model input/output ids, tensor shapes."""
  calls: List[Call]
  inputs: List[int]
  outputs: List[int]
  shapes: Dict[int, tuple]


def _functional_class():
  try:
    from keras.src.models.functional import Functional  # pylint: disable=g-import-not-at-top
    return Functional
  except ImportError:  # pragma: no cover
    return None


def is_model(op) -> bool:
  return isinstance(op, keras.Model)


def graph_of(model):
  """The functional graph (inputs/outputs) of a functional or Sequential model."""
  if not isinstance(model, keras.Model):
    raise TypeError(
        f'Expected a Keras 3 model (keras.Model, keras.Sequential), got '
        f'{type(model).__module__}.{type(model).__name__}. (tf.keras / Keras 2 '
        f'models are not supported.)')
  if isinstance(model, keras.Sequential):
    functional = getattr(model, '_functional', None)
    if functional is None:
      raise ValueError(
          f"The Sequential model '{model.name}' is not built, so its input "
          f'shape is unknown: start it with keras.Input(shape) or call '
          f'model.build((None, *input_shape)).')
    return functional
  functional = _functional_class()
  if functional is not None and isinstance(model, functional):
    return model
  raise ValueError(
      f"The model '{model.name}' ({type(model).__name__}) is a subclassed "
      f'model: its `call` is Python code without a static graph of layers. '
      f'Build it with the functional API or keras.Sequential.')


def _flatten(x):
  return list(keras.tree.flatten(x))


class _Walker:
  """Depth-first walk from the outputs; calls are emitted in post-order."""

  def __init__(self):
    self.calls = []
    self.shapes = {}
    self._memo = {}
    self._count = 0

  def new_tensor(self, shape) -> int:
    tid = self._count
    self._count += 1
    self.shapes[tid] = tuple(shape)
    return tid

  def walk_model(self, model, bound=None):
    graph = graph_of(model)
    inputs = _flatten(graph.inputs)
    if bound is None:
      bound = [self.new_tensor(t.shape) for t in inputs]
    elif len(bound) != len(inputs):
      raise ValueError(
          f"The nested model '{model.name}' takes {len(inputs)} input(s) but "
          f'was called on {len(bound)}.')
    scope = object()
    bindings = {id(t): b for t, b in zip(inputs, bound)}
    outputs = [self.visit(t, bindings, scope, model)
               for t in _flatten(graph.outputs)]
    return bound, outputs

  def visit(self, tensor, bindings, scope, model) -> int:
    if id(tensor) in bindings:
      return bindings[id(tensor)]
    history = getattr(tensor, '_keras_history', None)
    if history is None:
      raise ValueError(f"The model '{model.name}' has a tensor {tensor!r} "
                       f'that no layer produced.')
    op, node_index, tensor_index = history
    node = op._inbound_nodes[node_index]  # pylint: disable=protected-access
    key = (id(scope), id(node))
    if key not in self._memo:
      self._memo[key] = self._expand(op, node, bindings, scope, model)
    outs = self._memo[key]
    return outs[tensor_index]

  def _expand(self, op, node, bindings, scope, model):
    if isinstance(op, keras.layers.InputLayer):
      raise ValueError(
          f"{label(op)} is an input of the model '{model.name}' that is not "
          f'among its declared inputs.')
    args = tuple(node.arguments.args)
    kwargs = dict(node.arguments.kwargs)
    if not args:
      raise ValueError(f'{label(op)} was called without positional inputs.')
    first = args[0]
    structured = isinstance(first, (list, tuple, dict))
    first_tensors = _flatten(first)
    rest = args[1:]
    rest_tensors = [t for t in _flatten(rest) if keras.ops.is_tensor(t) or
                    hasattr(t, '_keras_history')]
    extra_kw = [k for k, v in kwargs.items() if any(
        hasattr(t, '_keras_history') for t in _flatten(v))]
    if extra_kw:
      raise ValueError(
          f'{label(op)} is called with tensors as keyword arguments '
          f'{extra_kw} (e.g. masks); only positional inputs are supported.')
    if rest_tensors:
      if structured or rest_tensors != list(_flatten(rest)):
        raise ValueError(
            f'{label(op)} is called with a mix of tensors and other values; '
            f'only tensor arguments are supported.')
      first_tensors = first_tensors + rest_tensors
      structured = True
      rest = ()
    ins = [self.visit(t, bindings, scope, model) for t in first_tensors]
    if is_model(op):
      if rest:
        raise ValueError(f'{label(op)} is called with extra arguments.')
      _, outs = self.walk_model(op, ins)
      return outs
    outputs = _flatten(node.output_tensors)
    if len(outputs) != 1:
      raise ValueError(
          f'{label(op)} has {len(outputs)} outputs; only layers with one '
          f'output are supported.')
    out = self.new_tensor(outputs[0].shape)
    self.calls.append(Call(op, ins, out, structured, tuple(rest)))
    return [out]


@contextlib.contextmanager
def _recursion_limit(n):
  old = sys.getrecursionlimit()
  sys.setrecursionlimit(max(old, n))
  try:
    yield
  finally:
    sys.setrecursionlimit(old)


def walk(model) -> Graph:
  """The calls of `model` in topological order (nested models inlined).

  Example:
    >>> import keras
    >>> m = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> g = walk(m)
    >>> [type(c.op).__name__ for c in g.calls], g.inputs, g.outputs
    (['Dense'], [0], [1])
  """
  walker = _Walker()
  with _recursion_limit(20000):
    inputs, outputs = walker.walk_model(model)
  return Graph(walker.calls, inputs, outputs, walker.shapes)
