"""From the calls of a Keras graph to a stax network.

`parse(model, ...)` checks every call once and records, for each, how to
build its stax layer from hyperparameter values (`Plan`); `Plan.build(...)`
assembles the stax network. Parsing tracks per tensor:

* its layout (the channel axis; unknown for network inputs until a layer
  needs one),
* whether it is a zero-mean Gaussian process at infinite width (the output
  of a Dense/Conv layer, kept by linear parameter-free layers),
* its *sources*: the weight layers whose Gaussian outputs it is a function
  of without passing through another weight layer, and the network inputs
  it depends on directly. Branches with disjoint sources are uncorrelated
  (independent, for Gaussian branches), which is what the kernels of `Add`,
  `Multiply` and spatial `Concatenate` assume.
"""
import dataclasses
import functools
import numbers
from typing import Any, Callable, Dict, List

import keras
import numpy as np
import tensorflow as tf

from nt_gp import stax
from nt_gp.keras import _activations
from nt_gp.keras import _graph
from nt_gp.keras import _layers
from nt_gp.stax.dimension_numbers import conv_dimension_numbers

__all__ = ['parse', 'Plan']

_L = keras.layers


def _classes(*names):
  return tuple(c for c in (getattr(_L, n, None) for n in names)
               if c is not None)


_CONV = {c: n for n, c in ((1, getattr(_L, 'Conv1D', None)),
                           (2, getattr(_L, 'Conv2D', None)),
                           (3, getattr(_L, 'Conv3D', None))) if c is not None}
_CONV_T = {c: n for n, c in ((1, getattr(_L, 'Conv1DTranspose', None)),
                             (2, getattr(_L, 'Conv2DTranspose', None)),
                             (3, getattr(_L, 'Conv3DTranspose', None)))
           if c is not None}
_AVG_POOL = _classes('AveragePooling1D', 'AveragePooling2D', 'AveragePooling3D')
_GLOBAL_AVG = _classes('GlobalAveragePooling1D', 'GlobalAveragePooling2D',
                       'GlobalAveragePooling3D')
_IDENTITY = _classes('Dropout', 'SpatialDropout1D', 'SpatialDropout2D',
                     'SpatialDropout3D', 'GaussianNoise', 'GaussianDropout',
                     'AlphaDropout', 'ActivityRegularization', 'Identity')

_MAX_POOL = ('max pooling is not a linear or elementwise operation of Gaussian '
             'inputs; its infinite-width kernel has no closed form (use '
             'average pooling)')
_REASONS = {
    'MaxPooling1D': _MAX_POOL, 'MaxPooling2D': _MAX_POOL,
    'MaxPooling3D': _MAX_POOL, 'GlobalMaxPooling1D': _MAX_POOL,
    'GlobalMaxPooling2D': _MAX_POOL, 'GlobalMaxPooling3D': _MAX_POOL,
    'AdaptiveMaxPooling1D': _MAX_POOL, 'AdaptiveMaxPooling2D': _MAX_POOL,
    'AdaptiveMaxPooling3D': _MAX_POOL,
    'BatchNormalization': (
        'batch normalization divides by statistics over the batch (training) '
        'or by learned moving statistics (inference); neither is a function '
        'of the kernel of a pair of inputs (use LayerNormalization)'),
    'GroupNormalization': 'group normalization is not supported (use '
                          'LayerNormalization)',
    'UnitNormalization': 'unit normalization divides by the norm of a vector '
                         'whose length grows with the width, so its outputs '
                         'vanish at infinite width',
    'Softmax': 'softmax is not elementwise: it divides by a sum over all '
               'channels',
    'PReLU': 'its negative slope is a trained per-channel parameter, not '
             'supported',
    'DepthwiseConv1D': 'each output channel of a depthwise convolution sums a '
                       'fixed, finite number of terms of one input channel, so '
                       'it does not become Gaussian as the width grows',
    'DepthwiseConv2D': 'each output channel of a depthwise convolution sums a '
                       'fixed, finite number of terms of one input channel, so '
                       'it does not become Gaussian as the width grows',
    'SeparableConv1D': 'its depthwise stage sums a fixed, finite number of '
                       'terms per channel, so it does not become Gaussian as '
                       'the width grows',
    'SeparableConv2D': 'its depthwise stage sums a fixed, finite number of '
                       'terms per channel, so it does not become Gaussian as '
                       'the width grows',
    'Embedding': 'an embedding looks up rows by integer index; use a Dense '
                 'layer on one-hot inputs',
    'Lambda': 'a Lambda layer runs arbitrary code; give its kernel with '
              '`layer_kernels={name: stax layer}`',
    'Masking': 'masks are not supported',
}
for _n in ('LSTM', 'GRU', 'SimpleRNN', 'RNN', 'Bidirectional', 'ConvLSTM1D',
           'ConvLSTM2D', 'ConvLSTM3D', 'LSTMCell', 'GRUCell'):
  _REASONS[_n] = ('recurrent layers are not supported (their infinite-width '
                  'kernels are not implemented in nt_gp.stax)')
for _n in ('MultiHeadAttention', 'Attention', 'AdditiveAttention',
           'GroupQueryAttention'):
  _REASONS[_n] = ('attention layers are not supported (see '
                  'nt_gp.stax.GlobalSelfAttention for a stax attention layer)')


def unsupported(call_or_op, reason: str) -> ValueError:
  op = getattr(call_or_op, 'op', call_or_op)
  return ValueError(f'{_graph.label(op)} has no infinite-width kernel: '
                    f'{reason}.')


# ----------------------------------------------------------------------------
# Per-tensor facts.
# ----------------------------------------------------------------------------
class _Cell:
  """The channel axis of a tensor (shared by tensors with the same layout)."""

  def __init__(self, axis=None):
    self.axis = axis


@dataclasses.dataclass
class _Meta:
  rank: int
  cell: _Cell
  gaussian: bool
  sources: frozenset

  @property
  def deterministic(self) -> bool:
    return any(s[0] == 'input' for s in self.sources)


def _need_axis(call, meta: _Meta, axis: int, what: str):
  axis = axis % meta.rank
  if meta.cell.axis is None:
    meta.cell.axis = axis
  elif meta.cell.axis != axis:
    raise unsupported(call, (
        f'{what} its input\'s axis {axis}, but the channels of that tensor '
        f'are on axis {meta.cell.axis} (from the layers before it); only the '
        f'channel axis grows with the width'))
  return axis


def _unify(call, metas: List[_Meta]) -> _Cell:
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


# ----------------------------------------------------------------------------
# Hyperparameters at build time.
# ----------------------------------------------------------------------------
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


def _as_float_tensor(value):
  return tf.convert_to_tensor(value, tf.float32) if not isinstance(
      value, tf.Variable) else tf.cast(value, tf.float32)


def _affine_params(opts, kernel, bias, W_std, b_std, fan_in, b_shape):
  """stax parameters reproducing Keras weights `kernel`, `bias`."""
  if bias is not None and b_std is None:
    raise ValueError('init_from_model=True needs b_std (not None) for layers '
                     'with a bias: b_std=None drops the biases the model '
                     'has.')
  W = tf.constant(np.asarray(kernel), tf.float32)
  b = None if bias is None else tf.reshape(
      tf.constant(np.asarray(bias), tf.float32), b_shape)
  if opts.parameterization == 'ntk':
    W = W * (fan_in ** 0.5) / _as_float_tensor(W_std)
    if b is not None:
      b_std_value = _as_float_tensor(b_std)
      if tf.executing_eagerly() and float(b_std_value) == 0:
        raise ValueError('init_from_model=True with parameterization="ntk" '
                         'needs b_std > 0 for layers with a bias (the NTK '
                         'parameterization stores bias / b_std).')
      b = b / b_std_value
  return W, b


@dataclasses.dataclass
class _Step:
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


# ----------------------------------------------------------------------------
# The converters, one per kind of layer.
# ----------------------------------------------------------------------------
class _Parser:

  def __init__(self, graph, deg, activation_kernels, layer_kernels):
    self.graph = graph
    self.deg = deg
    self.activation_kernels = activation_kernels
    self.layer_kernels = layer_kernels
    self.meta: Dict[int, _Meta] = {}
    self.alias: Dict[int, int] = {}
    self.steps: List[_Step] = []
    self.weight_layers: Dict[str, Any] = {}
    self.input_cells = []
    for i, t in enumerate(graph.inputs):
      cell = _Cell()
      self.input_cells.append(cell)
      self.meta[t] = _Meta(len(graph.shapes[t]), cell, False,
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
  def add_step(self, call, ins, build, meta, kind):
    step = _Step(call, ins, call.output, build, kind)
    self.steps.append(step)
    self.meta[call.output] = meta
    return step

  def set_alias(self, call, t):
    self.alias[call.output] = t

  def convert(self, call, ins, metas):
    op = call.op
    cls = type(op)
    name = op.name
    if name in self.layer_kernels:
      return self.custom(call, ins, metas, self.layer_kernels[name])
    if call.extra_args:
      raise unsupported(call, f'it is called with extra arguments '
                        f'{call.extra_args!r}')
    if cls is _L.Dense:
      return self.dense(call, ins, metas)
    if cls in _CONV or cls in _CONV_T:
      return self.conv(call, ins, metas)
    if cls in _AVG_POOL:
      return self.avg_pool(call, ins, metas)
    if cls in _GLOBAL_AVG:
      return self.global_avg(call, ins, metas)
    if cls is _L.Flatten:
      return self.flatten(call, ins, metas)
    if cls is _L.LayerNormalization:
      return self.layer_norm(call, ins, metas)
    if cls in _IDENTITY:
      return self.set_alias(call, ins[0])
    if cls is _L.Activation:
      return self.activation(call, ins, metas, op.activation)
    if cls is _L.ReLU:
      return self.activation(call, ins, metas, functools.partial(
          keras.activations.relu, negative_slope=float(op.negative_slope),
          max_value=None if op.max_value is None else float(op.max_value),
          threshold=float(op.threshold)))
    if cls is _L.LeakyReLU:
      return self.activation(call, ins, metas, functools.partial(
          keras.activations.leaky_relu,
          negative_slope=float(op.negative_slope)))
    if cls is getattr(_L, 'ELU', None):
      return self.activation(call, ins, metas, functools.partial(
          keras.activations.elu, alpha=float(op.alpha)))
    if cls is getattr(_L, 'Rescaling', None):
      return self.rescaling(call, ins, metas)
    if cls in (_L.Add, _L.Subtract, _L.Average) or self._is_op(
        op, ('Add', 'Subtract')):
      return self.sum(call, ins, metas)
    if cls is _L.Multiply or self._is_op(op, ('Multiply',)):
      return self.multiply(call, ins, metas)
    if cls is _L.Concatenate:
      return self.concatenate(call, ins, metas)
    if cls.__name__ in _REASONS and cls.__module__.startswith('keras'):
      raise unsupported(call, _REASONS[cls.__name__])
    if self._is_op(op, None):
      raise unsupported(call, (
          f'the keras.ops operation {cls.__name__!r} is not supported (only '
          f'add, subtract and multiply of tensors are)'))
    raise unsupported(call, (
        f'{cls.__name__!r} is not a Keras layer with a known infinite-width '
        f'kernel (custom layers included); give its kernel with '
        f"`layer_kernels={{'{name}': stax layer}}`"))

  @staticmethod
  def _is_op(op, names):
    if isinstance(op, _L.Layer):
      return False
    module = type(op).__module__
    if not module.startswith('keras.src.ops'):
      return False
    return names is None or type(op).__name__ in names

  def activation_net(self, call, fn):
    try:
      return _activations.activation_layer(fn, self.deg,
                                           self.activation_kernels)
    except ValueError as e:
      raise unsupported(call, str(e).rstrip('.')) from None

  def _check_gaussian(self, call, meta, what):
    if not meta.gaussian:
      raise unsupported(call, (
          f'{what} needs a Gaussian input at infinite width (the output of a '
          f'Dense or convolution layer, possibly pooled, added or normalised); '
          f'its input is a nonlinear function of one, or a network input. Put '
          f'a Dense/Conv layer before it'))

  # --------------------------------------------------------------------------
  def dense(self, call, ins, metas):
    op, meta = call.op, metas[0]
    _need_axis(call, meta, -1, 'Dense acts on')
    act = self.activation_net(call, op.activation)
    units, use_bias, name, rank = int(op.units), bool(op.use_bias), op.name, \
        meta.rank
    self.weight_layers[name] = op
    token = ('layer', id(op))

    def build(opts: BuildOptions):
      W, b = opts.W(name), opts.b(name, use_bias)
      net = stax.Dense(units, W, b, channel_axis=-1,
                       parameterization=opts.parameterization)
      if opts.from_model:
        fan_in = int(op.kernel.shape[0])
        params = _affine_params(opts, op.kernel.numpy(),
                                op.bias.numpy() if use_bias else None, W, b,
                                fan_in, [1] * (rank - 1) + [units])
        net = _layers.FixedParams(net, params)
      a = self.activation_net(call, op.activation)
      return net if a is None else stax.serial(net, a)

    self.add_step(call, ins, build, _Meta(
        rank, _Cell(rank - 1), act is None, frozenset([token])), 'weight')

  def conv(self, call, ins, metas):
    op, meta = call.op, metas[0]
    transpose = type(op) in _CONV_T
    n = (_CONV_T if transpose else _CONV)[type(op)]
    if tuple(op.dilation_rate) != (1,) * n:
      raise unsupported(call, f'dilation_rate={tuple(op.dilation_rate)} is '
                        f'not supported (nt_gp.stax convolutions are not '
                        f'dilated)')
    if getattr(op, 'groups', 1) != 1:
      raise unsupported(call, (
          f'groups={op.groups}: each output channel of a grouped convolution '
          f'sees a fixed fraction of the input channels, which nt_gp.stax '
          f'convolutions do not model'))
    if transpose and getattr(op, 'output_padding', None) is not None:
      raise unsupported(call, f'output_padding={op.output_padding} is not '
                        f'supported')
    padding = str(op.padding).lower()
    if padding not in ('valid', 'same'):
      raise unsupported(call, f'padding={op.padding!r} is not supported (only '
                        f'"valid" and "same")')
    channels_first = op.data_format == 'channels_first'
    rank = meta.rank
    if rank != n + 2:
      raise unsupported(call, f'its input has rank {rank}, not {n + 2}')
    ca = _need_axis(call, meta, 1 if channels_first else -1,
                    f'{type(op).__name__}({op.data_format}) convolves over')
    act = self.activation_net(call, op.activation)
    lhs, rhs, _ = conv_dimension_numbers(n, channels_first)
    spatial = rhs[:n]
    rhs = spatial + ('OI' if transpose else 'IO')
    dn = (lhs, rhs, lhs)
    filters, use_bias, name = int(op.filters), bool(op.use_bias), op.name
    kernel_size, strides = tuple(op.kernel_size), tuple(op.strides)
    self.weight_layers[name] = op
    layer_fn = stax.ConvTranspose if transpose else stax.Conv

    def build(opts: BuildOptions):
      W, b = opts.W(name), opts.b(name, use_bias)
      net = layer_fn(filters, kernel_size, strides, padding.upper(), W, b,
                     dimension_numbers=dn,
                     parameterization=opts.parameterization)
      if opts.from_model:
        kernel = op.kernel.numpy()
        c_in = kernel.shape[n + 1] if transpose else kernel.shape[n]
        if transpose:   # Keras convolves with the flipped kernel.
          kernel = kernel[tuple([slice(None, None, -1)] * n)]
        fan_in = c_in * int(np.prod(kernel_size))
        b_shape = [filters if c == 'C' else 1 for c in lhs]
        params = _affine_params(opts, kernel,
                                op.bias.numpy() if use_bias else None, W, b,
                                fan_in, b_shape)
        net = _layers.FixedParams(net, params)
      a = self.activation_net(call, op.activation)
      return net if a is None else stax.serial(net, a)

    self.add_step(call, ins, build, _Meta(
        rank, _Cell(ca), act is None, frozenset([('layer', id(op))])),
                  'weight')

  def _spatial_layout(self, call, meta, data_format, what):
    channels_first = data_format == 'channels_first'
    return _need_axis(call, meta, 1 if channels_first else -1, what)

  def avg_pool(self, call, ins, metas):
    op, meta = call.op, metas[0]
    padding = str(op.padding).lower()
    if padding not in ('valid', 'same'):
      raise unsupported(call, f'padding={op.padding!r} is not supported')
    ca = self._spatial_layout(call, meta, op.data_format,
                              f'{type(op).__name__}({op.data_format}) keeps')
    window = tuple(int(w) for w in op.pool_size)
    strides = tuple(int(s) for s in (op.strides or op.pool_size))

    def build(opts):
      # Keras (TensorFlow) averages over the non-padded entries of a window.
      return stax.AvgPool(window, strides, padding.upper(),
                          normalize_edges=padding == 'same', batch_axis=0,
                          channel_axis=ca)
    self.add_step(call, ins, build, dataclasses.replace(meta), 'linear')

  def global_avg(self, call, ins, metas):
    op, meta = call.op, metas[0]
    if getattr(op, 'keepdims', False):
      raise unsupported(call, 'keepdims=True is not supported')
    ca = self._spatial_layout(call, meta, op.data_format,
                              f'{type(op).__name__}({op.data_format}) keeps')

    def build(opts):
      return stax.GlobalAvgPool(batch_axis=0, channel_axis=ca)
    self.add_step(call, ins, build, _Meta(2, _Cell(1), meta.gaussian,
                                          meta.sources), 'linear')

  def flatten(self, call, ins, metas):
    meta = metas[0]
    if meta.rank == 2:
      return self.set_alias(call, ins[0])

    def build(opts):
      return stax.Flatten()
    # As stax.Flatten: the output is not treated as Gaussian.
    self.add_step(call, ins, build, _Meta(2, _Cell(1), False, meta.sources),
                  'linear')

  def layer_norm(self, call, ins, metas):
    op, meta = call.op, metas[0]
    self._check_gaussian(call, meta, 'LayerNormalization')
    axis = op.axis
    axes = [axis] if isinstance(axis, numbers.Integral) else list(axis)
    axes = sorted(int(a) % meta.rank for a in axes)
    if 0 in axes:
      raise unsupported(call, 'normalising over the batch axis is not '
                        'supported')
    ca = meta.cell.axis
    if ca is None or ca not in axes:
      raise unsupported(call, (
          f'it normalises over axes {axes}, which must include the channel '
          f'axis ({ca}) to have an infinite-width limit'))
    eps = float(op.epsilon)
    center = bool(op.center) and not getattr(op, 'rms_scaling', False)
    scale = bool(op.scale)

    step = None

    def build(opts):
      net = stax.LayerNorm(axis=tuple(axes), eps=eps, batch_axis=0,
                           channel_axis=ca)
      if not (scale or center):
        return net
      affine = _layers.NormAffine(scale, center, ca,
                                  scale_ntk=step.scale_ntk == 'norm')
      if opts.from_model:
        shape = [1] * meta.rank
        shape[ca] = -1
        gamma = tf.reshape(tf.constant(op.gamma.numpy()), shape) if scale \
            else None
        beta = tf.reshape(tf.constant(op.beta.numpy()), shape) if center \
            else None
        affine = _layers.FixedParams(affine, (gamma, beta))
      return stax.serial(net, affine)
    step = self.add_step(call, ins, build, dataclasses.replace(meta),
                         'layer_norm_scale' if scale else 'layer_norm')

  def activation(self, call, ins, metas, fn):
    meta = metas[0]
    net = self.activation_net(call, fn)
    if net is None:
      return self.set_alias(call, ins[0])
    self._check_gaussian(call, meta, 'a nonlinearity')

    step = None

    def build(opts):
      net = self.activation_net(call, fn)
      if step.fused_scale:
        net = _layers.FusedScaleActivation(
            net, _activations.scale_gradient_layer(fn, self.deg))
      return net
    step = self.add_step(call, ins, build, _Meta(meta.rank, meta.cell, False,
                                                 meta.sources), 'activation')
    step.activation = fn

  def rescaling(self, call, ins, metas):
    op, meta = call.op, metas[0]
    scale, offset = np.asarray(op.scale), np.asarray(op.offset)
    if scale.size != 1:
      raise unsupported(call, 'a per-channel scale is not supported')
    if np.any(offset != 0):
      raise unsupported(call, 'a non-zero offset is not supported')
    c = float(scale.reshape(()))

    def build(opts):
      return _layers.Scale(c)
    self.add_step(call, ins, build, dataclasses.replace(meta), 'linear')

  # --------------------------------------------------------------------------
  def _check_merge(self, call, ins, metas):
    shapes = [tuple(self.graph.shapes[t][1:]) for t in ins]
    if any(s != shapes[0] for s in shapes[1:]):
      raise unsupported(call, f'its inputs have different shapes {shapes} '
                        f'(broadcasting is not supported)')
    self._check_sources(call, metas)
    return _unify(call, metas)

  def _check_sources(self, call, metas):
    for i in range(len(metas)):
      for j in range(i + 1, len(metas)):
        common = metas[i].sources & metas[j].sources
        if common:
          raise unsupported(call, (
              f'its inputs {i} and {j} both depend on {self._describe(common)} '
              f'without a weight layer of their own in between, so they are '
              f'correlated; the kernel of this merge assumes uncorrelated '
              f'(independent) branches'))

  def _describe(self, sources):
    names = []
    for kind, key in sorted(sources, key=str):
      if kind == 'input':
        names.append(f'network input {key}')
      else:
        op = next((c.op for c in self.graph.calls if id(c.op) == key), None)
        names.append(_graph.label(op) if op is not None else 'a layer')
    return ', '.join(names)

  def sum(self, call, ins, metas):
    op = call.op
    cell = self._check_merge(call, ins, metas)
    non_gaussian = [i for i, m in enumerate(metas) if not m.gaussian]
    if len(non_gaussian) > 1:
      raise unsupported(call, (
          f'its inputs {non_gaussian} are not zero-mean Gaussian (they are '
          f'nonlinear functions of Gaussians, or network inputs); the sum of '
          f'two such inputs is correlated through their means. At most one '
          f'summand may be one'))
    subtract = type(op) is _L.Subtract or type(op).__name__ == 'Subtract'
    average = type(op) is _L.Average
    n = len(ins)

    def build(opts):
      total = stax.FanInSum() if not non_gaussian else \
          _layers.SumUncorrelated()
      if subtract:
        return stax.serial(stax.parallel(stax.Identity(), _layers.Scale(-1.)),
                           total)
      if average:
        return stax.serial(total, _layers.Scale(1. / n))
      return total
    self.add_step(call, ins, build, _Meta(
        metas[0].rank, cell, not non_gaussian,
        frozenset().union(*[m.sources for m in metas])), 'merge')

  def multiply(self, call, ins, metas):
    cell = self._check_merge(call, ins, metas)
    det = [i for i, m in enumerate(metas) if m.deterministic]
    if len(det) > 1:
      raise unsupported(call, (
          f'its inputs {det} depend on network inputs directly (not only '
          f'through weight layers); the kernel of a product of such inputs is '
          f'not the product of their kernels'))

    def build(opts):
      return stax.FanInProd()
    self.add_step(call, ins, build, _Meta(
        metas[0].rank, cell, len(ins) == 1 and metas[0].gaussian,
        frozenset().union(*[m.sources for m in metas])), 'multiply')

  def concatenate(self, call, ins, metas):
    op = call.op
    rank = metas[0].rank
    axis = int(op.axis) % rank
    if axis == 0:
      raise unsupported(call, 'concatenation along the batch axis is not '
                        'supported')
    cell = _unify(call, metas)
    if cell.axis is None:
      cell.axis = rank - 1
    channel = axis == cell.axis
    if not channel:
      self._check_sources(call, metas)
      for m in metas:
        self._check_gaussian(call, m, 'Concatenate along a spatial axis')

    def build(opts):
      return stax.FanInConcat(axis)
    self.add_step(call, ins, build, _Meta(
        rank, cell, not channel,
        frozenset().union(*[m.sources for m in metas])), 'merge')

  def custom(self, call, ins, metas, net):
    if len(ins) != 1:
      raise unsupported(call, '`layer_kernels` replaces layers with one input '
                        'only')
    meta = metas[0]
    rank = len(self.graph.shapes[call.output])
    cell = meta.cell if rank == meta.rank else _Cell(rank - 1)

    def build(opts):
      return net() if callable(net) and not isinstance(net, tuple) else net
    self.add_step(call, ins, build, _Meta(
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
