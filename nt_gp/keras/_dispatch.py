"""Which converter handles a Keras call: a table from Keras layer classes
to the per-family converters (`_convert_*` modules), and the reasons given
for layers without an infinite-width kernel."""
import keras

from nt_gp.keras import _convert_affine as affine
from nt_gp.keras import _convert_merges as merges
from nt_gp.keras import _convert_pointwise as pointwise
from nt_gp.keras import _convert_pooling as pooling
from nt_gp.keras._facts import unsupported

__all__ = ['converter_for', 'alias']

_L = keras.layers


def _classes(*names):
  return tuple(c for c in (getattr(_L, n, None) for n in names)
               if c is not None)


def alias(parser, call, ins, metas):
  """Layers that are the identity at initialisation (dropout, noise): the
  output is the input."""
  return parser.set_alias(call, ins[0])


def _table():
  table = {
      _L.Dense: affine.dense,
      _L.Flatten: pooling.flatten,
      getattr(_L, 'Rescaling', None): pooling.rescaling,
      _L.LayerNormalization: pointwise.layer_norm,
      _L.Activation: pointwise.activation,
      _L.ReLU: pointwise.relu,
      _L.LeakyReLU: pointwise.leaky_relu,
      getattr(_L, 'ELU', None): pointwise.elu,
      _L.Add: merges.add,
      _L.Subtract: merges.add,
      _L.Average: merges.add,
      _L.Multiply: merges.multiply,
      _L.Concatenate: merges.concatenate,
  }
  for cls in (*affine.CONV, *affine.CONV_TRANSPOSE):
    table[cls] = affine.conv
  for cls in _classes('AveragePooling1D', 'AveragePooling2D',
                      'AveragePooling3D'):
    table[cls] = pooling.avg_pool
  for cls in _classes('GlobalAveragePooling1D', 'GlobalAveragePooling2D',
                      'GlobalAveragePooling3D'):
    table[cls] = pooling.global_avg
  for cls in _classes('Dropout', 'SpatialDropout1D', 'SpatialDropout2D',
                      'SpatialDropout3D', 'GaussianNoise', 'GaussianDropout',
                      'AlphaDropout', 'ActivityRegularization', 'Identity'):
    table[cls] = alias
  table.pop(None, None)
  return table


CONVERTERS = _table()
# keras.ops operations applied to Keras tensors, by class name.
_OPS = {'Add': merges.add, 'Subtract': merges.add, 'Multiply': merges.multiply}

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


def _is_op(op) -> bool:
  return (not isinstance(op, _L.Layer) and
          type(op).__module__.startswith('keras.src.ops'))


def converter_for(call):
  """The converter `(parser, call, ins, metas) -> None` of a Keras call.

  Raises:
    ValueError: the call has no infinite-width kernel (the message says why
      and what to use instead).
  """
  op = call.op
  cls = type(op)
  if cls in CONVERTERS:
    return CONVERTERS[cls]
  if _is_op(op) and cls.__name__ in _OPS:
    return _OPS[cls.__name__]
  if cls.__name__ in _REASONS and cls.__module__.startswith('keras'):
    raise unsupported(call, _REASONS[cls.__name__])
  if _is_op(op):
    raise unsupported(call, (
        f'the keras.ops operation {cls.__name__!r} is not supported (only '
        f'add, subtract and multiply of tensors are)'))
  raise unsupported(call, (
      f'{cls.__name__!r} is not a Keras layer with a known infinite-width '
      f'kernel (custom layers included); give its kernel with '
      f"`layer_kernels={{'{op.name}': stax layer}}`"))
