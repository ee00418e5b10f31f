"""What parsing a Keras graph knows: per-tensor facts, steps, build options.

Parsing tracks per tensor (`Meta`):

* its layout (the channel axis, a `Cell` shared by tensors of one layout;
  unknown for network inputs until a layer needs one),
* whether it is a zero-mean Gaussian process at infinite width (the output
  of a Dense/Conv layer, kept by linear parameter-free layers),
* its *sources*: the weight layers whose Gaussian outputs it is a function
  of without passing through another weight layer, and the network inputs
  it depends on directly. Branches with disjoint sources are uncorrelated
  (independent, for Gaussian branches), which is what the kernels of `Add`,
  `Multiply` and spatial `Concatenate` assume.
"""
import dataclasses
from typing import Any, Callable, Dict, List

from nt_gp.keras import _graph

__all__ = ['unsupported', 'Cell', 'Meta', 'need_axis', 'unify',
           'check_gaussian', 'BuildOptions', 'Step']


def unsupported(call_or_op, reason: str) -> ValueError:
  """The error for a Keras call (or layer) without an infinite-width kernel."""
  op = getattr(call_or_op, 'op', call_or_op)
  return ValueError(f'{_graph.label(op)} has no infinite-width kernel: '
                    f'{reason}.')


class Cell:
  """The channel axis of a tensor (shared by tensors with the same layout)."""

  def __init__(self, axis=None):
    self.axis = axis


@dataclasses.dataclass
class Meta:
  """What is known about one tensor of the graph (see module docstring)."""
  rank: int
  cell: Cell
  gaussian: bool
  sources: frozenset

  @property
  def deterministic(self) -> bool:
    return any(s[0] == 'input' for s in self.sources)


def need_axis(call, meta: Meta, axis: int, what: str):
  """Records that `call` needs `axis` of its input to be the channel axis
  (raises if the input's channels are known to be elsewhere)."""
  axis = axis % meta.rank
  if meta.cell.axis is None:
    meta.cell.axis = axis
  elif meta.cell.axis != axis:
    raise unsupported(call, (
        f'{what} its input\'s axis {axis}, but the channels of that tensor '
        f'are on axis {meta.cell.axis} (from the layers before it); only the '
        f'channel axis grows with the width'))
  return axis


def unify(call, metas: List[Meta]) -> Cell:
  """The common layout of the inputs of a merge (raises if they differ)."""
  known = {m.cell.axis for m in metas if m.cell.axis is not None}
  if len(known) > 1:
    raise unsupported(call, f'its inputs have channels on different axes '
                      f'{sorted(known)}')
  axis = known.pop() if known else None
  cell = next((m.cell for m in metas if m.cell.axis is not None), metas[0].cell)
  for m in metas:
    if m.cell.axis is None:
      m.cell.axis = axis
      if axis is None:
        m.cell = cell
  return cell


def check_gaussian(call, meta: Meta, what: str):
  """Raises unless the input of `call` is Gaussian at infinite width."""
  if not meta.gaussian:
    raise unsupported(call, (
        f'{what} needs a Gaussian input at infinite width (the output of a '
        f'Dense or convolution layer, possibly pooled, added or normalised); '
        f'its input is a nonlinear function of one, or a network input. Put '
        f'a Dense/Conv layer before it'))


@dataclasses.dataclass
class BuildOptions:
  """Hyperparameters and options of one `Plan.build`."""
  W_std: Any
  b_std: Any
  per_layer: Dict[str, Dict[str, Any]]
  parameterization: str
  from_model: bool

  def W(self, name):
    return self.per_layer.get(name, {}).get('W_std', self.W_std)

  def b(self, name, use_bias):
    if not use_bias:
      return None
    return self.per_layer.get(name, {}).get('b_std', self.b_std)


@dataclasses.dataclass
class Step:
  """One call of the graph and how to build its stax layer."""
  call: _graph.Call
  inputs: List[int]
  output: int
  build: Callable  # BuildOptions -> (init_fn, apply_fn, kernel_fn)
  kind: str = ''
  # For layer normalisation: where the NTK of its trained scale is added
  # ('norm': at its output; 'activation': by the activation after it).
  scale_ntk: str = 'norm'
  # For activations: the input carries a normalisation scale's gradient.
  fused_scale: bool = False
  # For activations: the activation function.
  activation: Any = None
