"""`stax.describe`: the constructor call behind every layer.

Expected records are written out by hand from the constructors' documented
signatures (neural-tangents' argument names and defaults).
"""
import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from nt_gp import stax
from nt_gp.stax import LayerCall

DENSE_DEFAULTS = {'W_std': 1., 'b_std': None, 'batch_axis': 0,
                  'channel_axis': -1, 'parameterization': 'ntk', 's': (1, 1)}


def test_dense_arguments_bound_by_name_with_defaults():
  call = stax.describe(stax.Dense(8, W_std=2.))
  assert call.name == 'Dense'
  assert dict(call.arguments) == {**DENSE_DEFAULTS, 'out_dim': 8, 'W_std': 2.}


def test_positional_and_keyword_calls_give_the_same_record():
  a = stax.describe(stax.Conv(4, (3, 3), (1, 1), 'SAME', 1.5))
  b = stax.describe(stax.Conv(out_chan=4, filter_shape=(3, 3), W_std=1.5,
                              padding='SAME', strides=(1, 1)))
  assert a == b
  assert a.arguments['b_std'] is None and a.arguments['s'] == (1, 1)


@pytest.mark.parametrize('layer, name, arguments', [
    (lambda: stax.Relu(), 'Relu', {'do_stabilize': False}),
    (lambda: stax.LeakyRelu(0.1), 'LeakyRelu',
     {'alpha': 0.1, 'do_stabilize': False}),
    (lambda: stax.Abs(), 'Abs', {'do_stabilize': False}),
    (lambda: stax.ABRelu(-1., 2.), 'ABRelu',
     {'a': -1., 'b': 2., 'do_stabilize': False}),
    (lambda: stax.Erf(), 'Erf', {'a': 1., 'b': 1., 'c': 0.}),
    (lambda: stax.Sigmoid_like(), 'Sigmoid_like', {}),
    (lambda: stax.Gelu(), 'Gelu', {'approximate': False}),
    (lambda: stax.Cos(b=2.), 'Cos', {'a': 1., 'b': 2., 'c': 0.}),
    (lambda: stax.Sign(), 'Sign', {}),
    (lambda: stax.Monomial(2), 'Monomial', {'degree': 2}),
    (lambda: stax.Exp(), 'Exp', {'a': 1., 'b': 1.}),
    (lambda: stax.Rbf(0.5), 'Rbf', {'gamma': 0.5}),
    (lambda: stax.AvgPool((2, 2)), 'AvgPool',
     {'window_shape': (2, 2), 'strides': None, 'padding': 'VALID',
      'normalize_edges': False, 'batch_axis': 0, 'channel_axis': -1}),
    (lambda: stax.GlobalAvgPool(), 'GlobalAvgPool',
     {'batch_axis': 0, 'channel_axis': -1}),
    (lambda: stax.Flatten(), 'Flatten', {'batch_axis': 0, 'batch_axis_out': 0}),
    (lambda: stax.FanOut(2), 'FanOut', {'num': 2}),
    (lambda: stax.FanInSum(), 'FanInSum', {}),
    (lambda: stax.FanInConcat(), 'FanInConcat', {'axis': -1}),
    (lambda: stax.Identity(), 'Identity', {}),
    (lambda: stax.LayerNorm(), 'LayerNorm',
     {'axis': -1, 'eps': 1e-12, 'batch_axis': 0, 'channel_axis': -1}),
    (lambda: stax.Dropout(0.5), 'Dropout', {'rate': 0.5, 'mode': 'train'}),
])
def test_public_name_and_arguments(layer, name, arguments):
  call = stax.describe(layer())
  assert call.name == name
  assert dict(call.arguments) == arguments


def test_constructor_built_from_another_is_named_as_called():
  # Relu is ABRelu(0, 1); Sigmoid_like is an Erf; Cos is a shifted Sin.
  assert stax.describe(stax.Relu()).name == 'Relu'
  assert stax.describe(stax.ABRelu(0., 1.)).name == 'ABRelu'
  assert stax.describe(stax.Sigmoid_like()).name == 'Sigmoid_like'
  assert stax.describe(stax.Cos()).name == 'Cos'


@pytest.mark.parametrize('name, args', [
    ('Dense', (1,)), ('Conv', (1, (2,))), ('ConvTranspose', (1, (2,))),
    ('ConvLocal', (1, (2,))), ('Relu', ()), ('Erf', ()), ('Gelu', ()),
    ('Sin', ()), ('Gabor', ()), ('Gaussian', ()), ('ExpNormalized', ()),
    ('Hermite', (2,)), ('Polynomial', ([0., 1.],)),
    ('RectifiedMonomial', (1,)), ('SumPool', ((2,),)), ('GlobalSumPool', ()),
    ('FanInProd', ()), ('Index', (stax.Slice[:, :2],)),
    ('ImageResize', ((4, 4, 1), 'linear')),
    ('GlobalSelfAttention', (4, 4, 4, 2)), ('Aggregate', ()),
    ('Elementwise', (tf.sin, lambda c, v1, v2: c)),
    ('ElementwiseNumerical', (tf.sin, 4)),
])
def test_every_constructor_is_described_by_its_own_name(name, args):
  assert stax.describe(getattr(stax, name)(*args)).name == name


def test_keyword_only_constructor():
  call = stax.describe(stax.DotGeneral(lhs=2.))
  assert call.name == 'DotGeneral' and call.arguments['lhs'] == 2.


def test_serial_parallel_repeat_hold_records_of_their_layers():
  dense, relu = stax.Dense(8, W_std=2.), stax.Relu()
  call = stax.describe(stax.serial(dense, relu))
  assert call == LayerCall('serial', {'layers': (
      LayerCall('Dense', {**DENSE_DEFAULTS, 'out_dim': 8, 'W_std': 2.}),
      LayerCall('Relu', {'do_stabilize': False}))})

  par = stax.describe(stax.parallel(stax.Identity(), stax.Dense(1)))
  assert par.name == 'parallel'
  assert [c.name for c in par.arguments['layers']] == ['Identity', 'Dense']

  rep = stax.describe(stax.repeat(stax.serial(dense, relu), 3))
  assert rep.name == 'repeat' and rep.arguments['n'] == 3
  assert rep.arguments['layer'] == call


def test_nested_network_is_a_tree():
  block = stax.serial(stax.Conv(4, (3, 3), padding='SAME'), stax.Relu())
  net = stax.serial(
      stax.FanOut(2), stax.parallel(block, stax.Identity()), stax.FanInSum(),
      stax.GlobalAvgPool(), stax.Dense(1))
  call = stax.describe(net)
  names = [c.name for c in call.arguments['layers']]
  assert names == ['FanOut', 'parallel', 'FanInSum', 'GlobalAvgPool', 'Dense']
  inner = call.arguments['layers'][1].arguments['layers'][0]
  assert [c.name for c in inner.arguments['layers']] == ['Conv', 'Relu']
  assert inner.arguments['layers'][0].arguments['padding'] == 'SAME'


def test_hyperparameters_are_kept_as_given():
  w = tf.Variable(1.5, dtype=tf.float64)
  t = tf.constant(0.1)
  call = stax.describe(stax.Dense(4, W_std=w, b_std=t))
  assert call.arguments['W_std'] is w
  assert call.arguments['b_std'] is t


def test_kernel_fn_alone_is_described():
  _, _, kernel_fn = stax.Erf(a=2.)
  assert stax.describe(kernel_fn) == LayerCall('Erf', {'a': 2., 'b': 1.,
                                                      'c': 0.})


def test_user_layer_gets_its_function_name():
  @stax.layer
  def Scale(c, shift=0.):
    init_fn = stax.make_init_fn(lambda s: s)
    def rule(k, **kw):
      return k
    return init_fn, (lambda params, x, **kw: c * x), rule

  call = stax.describe(stax.serial(stax.Dense(1), Scale(3.)))
  assert call.arguments['layers'][1] == LayerCall('Scale',
                                                  {'c': 3., 'shift': 0.})


def test_record_is_frozen_and_read_only():
  call = stax.describe(stax.Dense(2))
  with pytest.raises(dataclasses.FrozenInstanceError):
    call.name = 'Conv'
  with pytest.raises(TypeError):
    call.arguments['out_dim'] = 3


def test_repr_reads_like_the_call():
  call = stax.describe(stax.serial(stax.Relu()))
  assert repr(call) == ("LayerCall(name='serial', arguments={'layers': "
                        "(LayerCall(name='Relu', arguments={'do_stabilize': "
                        "False}),)})")


@pytest.mark.parametrize('obj', [
    (lambda *a: None, lambda *a: None, lambda *a: None),
    lambda *a: None, 'Dense', None, np.ones(3),
])
def test_anything_else_is_a_type_error_naming_it(obj):
  with pytest.raises(TypeError, match='not built by an nt_gp.stax '
                     'constructor') as info:
    stax.describe(obj)
  assert repr(obj)[:20] in str(info.value)
