"""From the calls of a Keras graph to a stax network.

`parse(model, ...)` checks every call once and records, for each, how to
build its stax layer from hyperparameter values (`Step`); `Plan.build(...)`
assembles the stax network. Parsing tracks per tensor its layout, whether it
is Gaussian at infinite width and what it depends on (`_facts`). Each call
goes to the converter of its layer family (`_dispatch`: `_convert_affine`,
`_convert_pooling`, `_convert_pointwise`, `_convert_merges`), which checks
it and records a step.
"""
from typing import Any, Dict, List

from nt_gp import stax
from nt_gp.keras import _activations
from nt_gp.keras import _dispatch
from nt_gp.keras import _graph
from nt_gp.keras import _layers
# BuildOptions is part of this module's interface (nt_gp.keras builds them).
from nt_gp.keras._facts import BuildOptions, Cell, Meta, Step, unsupported

__all__ = ['parse', 'Plan', 'BuildOptions']


class _Parser:
  """The state of parsing one graph; converters record its steps."""

  def __init__(self, graph, deg, activation_kernels, layer_kernels):
    self.graph = graph
    self.deg = deg
    self.activation_kernels = activation_kernels
    self.layer_kernels = layer_kernels
    self.meta: Dict[int, Meta] = {}
    self.alias: Dict[int, int] = {}
    self.steps: List[Step] = []
    self.weight_layers: Dict[str, Any] = {}
    self.input_cells = []
    for i, t in enumerate(graph.inputs):
      cell = Cell()
      self.input_cells.append(cell)
      self.meta[t] = Meta(len(graph.shapes[t]), cell, False,
                          frozenset([('input', i)]))

  def resolve(self, t):
    while t in self.alias:
      t = self.alias[t]
    return t

  def run(self):
    users = {}
    for call in self.graph.calls:
      if getattr(call.op, 'weights', None):
        users.setdefault(id(call.op), []).append(call)
    for calls in users.values():
      if len(calls) > 1:
        raise unsupported(calls[0], (
            f'it is called {len(calls)} times and so shares its weights '
            f'between its calls; the outputs of shared weights are correlated, '
            f'which kernels of independent layers do not describe'))
    for call in self.graph.calls:
      ins = [self.resolve(t) for t in call.inputs]
      metas = [self.meta[t] for t in ins]
      self.convert(call, ins, metas)
    self.place_norm_scale_ntk()

  def place_norm_scale_ntk(self):
    """Decides where the NTK of each trained `LayerNormalization` scale goes.

    The gradient of the scale `gamma_c` is the normalised activation `u_c`
    itself (at initialisation), correlated with the activation. Linear layers
    carry it along; a weight layer (or the network output) averages it over
    channels into `nngp`, so if every path from the normalisation reaches one
    through linear layers it is added at the normalisation. If the only path
    is a chain of single-input linear layers (pooling, flatten, rescaling)
    into one elementwise activation `phi`, that activation adds
    `E[u phi'(u) u' phi'(u')]`. Other cases raise.
    """
    consumers = {}
    for step in self.steps:
      for t in dict.fromkeys(step.inputs):
        consumers.setdefault(t, []).append(step)
    outputs = {self.resolve(t) for t in self.graph.outputs}
    for norm in self.steps:
      if norm.kind != 'layer_norm_scale':
        continue
      terminals, chain = [], True
      frontier = [norm.output]
      while frontier:
        t = frontier.pop()
        users = consumers.get(t, [])
        if len(users) + (t in outputs) > 1:
          chain = False
        if t in outputs:
          terminals.append(('output', None))
        for user in users:
          if user.kind == 'linear':
            frontier.append(user.output)
          elif user.kind == 'merge':
            chain = False
            frontier.append(user.output)
          else:
            terminals.append((user.kind, user))
      if all(kind in ('weight', 'output') for kind, _ in terminals):
        norm.scale_ntk = 'norm'
      elif chain and len(terminals) == 1 and terminals[0][0] == 'activation':
        act = terminals[0][1]
        try:
          _activations.scale_gradient_layer(act.activation, self.deg)
        except ValueError as e:
          raise unsupported(norm.call, (
              f'the NTK of its trained scale through {act.call.label} needs '
              f'the derivative of its activation ({e}); use scale=False'))
        norm.scale_ntk = 'activation'
        act.fused_scale = True
      else:
        others = sorted({s.call.label for kind, s in terminals
                         if kind not in ('weight', 'output')})
        raise unsupported(norm.call, (
            f'the NTK of its trained scale (gamma) is implemented where the '
            f'normalised tensor reaches weight layers through linear layers, '
            f'or one activation through pooling/flatten/rescaling; here it '
            f'also reaches {", ".join(others)}. Use scale=False, or a Dense '
            f'or convolution layer after the normalisation'))

  # --------------------------------------------------------------------------
  # What converters use.
  def add_step(self, call, ins, build, meta, kind):
    """Records that `call` becomes the layer `build(opts)`; its output has
    the facts `meta`; `kind` is one of 'weight', 'linear', 'activation',
    'merge', 'multiply', 'layer_norm', 'layer_norm_scale', 'custom'."""
    step = Step(call, ins, call.output, build, kind)
    self.steps.append(step)
    self.meta[call.output] = meta
    return step

  def set_alias(self, call, t):
    """`call`'s output is the tensor `t` (an identity at initialisation)."""
    self.alias[call.output] = t

  def activation_net(self, call, fn):
    """The stax layer of a Keras activation function (None: identity)."""
    try:
      return _activations.activation_layer(fn, self.deg,
                                           self.activation_kernels)
    except ValueError as e:
      raise unsupported(call, str(e).rstrip('.')) from None

  def convert(self, call, ins, metas):
    op = call.op
    if op.name in self.layer_kernels:
      return self.custom(call, ins, metas, self.layer_kernels[op.name])
    if call.extra_args:
      raise unsupported(call, f'it is called with extra arguments '
                        f'{call.extra_args!r}')
    return _dispatch.converter_for(call)(self, call, ins, metas)

  def custom(self, call, ins, metas, net):
    """A layer whose kernel the user gave (`layer_kernels`)."""
    if len(ins) != 1:
      raise unsupported(call, '`layer_kernels` replaces layers with one input '
                        'only')
    meta = metas[0]
    rank = len(self.graph.shapes[call.output])
    cell = meta.cell if rank == meta.rank else Cell(rank - 1)

    def build(opts):
      return net() if callable(net) and not isinstance(net, tuple) else net
    self.add_step(call, ins, build, Meta(
        rank, cell, False, meta.sources | {('layer', id(call.op))}), 'custom')


# ----------------------------------------------------------------------------
# Plans.
# ----------------------------------------------------------------------------
class Plan:
  """A parsed Keras model: the stax layer of each call and the routing."""

  def __init__(self, model, parser: _Parser):
    graph = parser.graph
    self.model_name = model.name
    self.steps = parser.steps
    self.inputs = list(graph.inputs)
    self.outputs = [parser.resolve(t) for t in graph.outputs]
    self.weight_layers = dict(parser.weight_layers)
    self.input_shapes = [graph.shapes[t] for t in graph.inputs]
    self.channel_axis = self._input_channel_axis(parser)

  def _input_channel_axis(self, parser):
    axes = []
    for t, cell in zip(self.inputs, parser.input_cells):
      rank = parser.meta[t].rank
      axes.append((rank, rank - 1 if cell.axis is None else cell.axis))
    rank0, axis0 = axes[0]
    for c in (axis0 - rank0, axis0):
      if all(c % r == a for r, a in axes):
        return c
    raise ValueError(
        f"The inputs of the model '{self.model_name}' have their channels on "
        f'axes {[a for _, a in axes]} (ranks {[r for r, _ in axes]}); nt_gp '
        f'kernels need one channel axis for all inputs.')

  def build(self, opts: BuildOptions):
    """The stax network `(init_fn, apply_fn, kernel_fn)`."""
    last_use = {}
    for i, step in enumerate(self.steps):
      for t in step.inputs:
        last_use[t] = i
    for t in self.outputs:
      last_use[t] = len(self.steps)
    live = list(dict.fromkeys(self.inputs))
    single_input = len(self.inputs) == 1
    stages = []
    first = [True]

    def route(spec):
      if first[0]:
        first[0] = False
        return _layers.Route(spec, single_input, axes=(0, self.channel_axis))
      return _layers.Route(spec, False)

    if len(self.inputs) != len(live):
      raise ValueError(f"The model '{self.model_name}' lists an input twice.")
    for i, step in enumerate(self.steps):
      kept = [t for t in live if last_use.get(t, -1) > i]
      ins = [live.index(t) for t in step.inputs]
      spec = [live.index(t) for t in kept] + [
          ins if step.call.structured else ins[0]]
      if first[0] or spec != list(range(len(live))):
        stages.append(route(spec))
      net = _layers.Named(step.call.label, step.build(opts))
      stages.append(stax.parallel(*([_layers.Keep()] * len(kept)), net))
      live = kept + [step.output]
    outs = [live.index(t) for t in self.outputs]
    stages.append(route(outs[0] if len(outs) == 1 else outs))
    return stax.serial(*stages)


def parse(model, deg: int, activation_kernels=None, layer_kernels=None):
  """Parses `model` into a `Plan` (raises `ValueError` for what it cannot)."""
  graph = _graph.walk(model)
  parser = _Parser(graph, deg, dict(activation_kernels or {}),
                   dict(layer_kernels or {}))
  parser.run()
  return Plan(model, parser)
