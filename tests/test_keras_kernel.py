"""Tests of `nt_gp.keras`: the infinite-width kernels of Keras models.

Each test model is built by a function of its width `w` and output units `o`,
so the same architecture exists narrow (converted) and wide (sampled):

(a) the converted kernel equals a hand-built `nt_gp.stax` network's (float64,
    relative tolerance 1e-8);
(b) the NNGP of the Keras model itself, re-initialised at width 512 (256 for
    convolutions) with `W ~ N(0, W_std² / fan_in)`, `b ~ N(0, b_std²)` over
    48 fixed seeds (1024 outputs each), matches the converted NNGP within 4
    Monte Carlo standard errors (estimated from the spread over seeds, about
    1-2% of the kernel) plus a finite-width allowance of 4 / width of the
    kernel's largest entry; the same check rejects the kernel of a 5% larger
    `W_std`;
(c) unsupported layers and options raise a `ValueError` naming the layer;
(d) the TFP and GPflow kernels give the converted matrix and train;
and `init_from_model=True` reproduces the Keras model's outputs exactly,
which checks padding alignment, layouts and the graph wiring.
"""
import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import nt_gp
import nt_gp.keras as nk
from nt_gp import stax

L = keras.layers
W_STD, B_STD = 1.3, 0.2
DEG = 64


# ----------------------------------------------------------------------------
# Models: builder(w, o) -> keras model; reference(W, b) -> stax network or a
# function (x, get) -> kernels; input shape.
# ----------------------------------------------------------------------------
def mlp(w, o):
  inp = keras.Input((3,))
  h = L.Dense(w, activation='relu', name='d1')(inp)
  h = L.Dropout(0.3)(h)
  h = L.Dense(w, activation='gelu', name='d2')(h)
  return keras.Model(inp, L.Dense(o, name='out')(h))


def mlp_ref(W, b):
  return stax.serial(stax.Dense(1, W, b), stax.Relu(), stax.Dense(1, W, b),
                     stax.Gelu(), stax.Dense(1, W, b))


def cnn(w, o):
  inp = keras.Input((8, 8, 2))
  h = L.Conv2D(w, 3, padding='same', activation='relu')(inp)
  h = L.AveragePooling2D(2)(h)
  h = L.Conv2D(w, 3, strides=2, padding='same', activation=tf.math.erf)(h)
  h = L.AveragePooling2D(3, strides=1, padding='same')(h)
  h = L.GlobalAveragePooling2D()(h)
  return keras.Model(inp, L.Dense(o)(h))


def cnn_ref(W, b):
  return stax.serial(
      stax.Conv(1, (3, 3), padding='SAME', W_std=W, b_std=b), stax.Relu(),
      stax.AvgPool((2, 2), (2, 2)),
      stax.Conv(1, (3, 3), (2, 2), 'SAME', W_std=W, b_std=b), stax.Erf(),
      stax.AvgPool((3, 3), (1, 1), 'SAME', normalize_edges=True),
      stax.GlobalAvgPool(), stax.Dense(1, W, b))


def residual(w, o):
  """A Gaussian residual sum, then a ResNet-v1 ReLU shortcut."""
  inp = keras.Input((5,))
  h = L.Dense(w)(inp)
  r = L.Dense(w)(L.ReLU()(h))
  a2 = L.Activation('relu')(L.Add()([h, r]))
  r2 = L.Dense(w, use_bias=False)(a2)
  s2 = L.Add()([a2, r2])
  return keras.Model(inp, L.Dense(o)(s2))


def residual_ref(W, b):
  block = stax.serial(
      stax.Dense(1, W, b), stax.FanOut(2),
      stax.parallel(stax.Identity(), stax.serial(stax.Relu(),
                                                 stax.Dense(1, W, b))),
      stax.FanInSum(), stax.Relu())
  _, _, k_a2 = block
  _, _, k_r2 = stax.serial(block, stax.Dense(1, W, None))

  def kernels(x, get):
    a, r = k_a2(x, None, ('nngp', 'ntk')), k_r2(x, None, ('nngp', 'ntk'))
    # The shortcut and the residual are uncorrelated: their kernels add.
    nngp = W**2 * (a.nngp + r.nngp) + b**2
    return {'nngp': nngp, 'ntk': nngp + W**2 * (a.ntk + r.ntk)}[get]
  return kernels


def concat(w, o):
  inp = keras.Input((4,))
  a = L.Dense(w, activation='relu')(inp)
  s = L.Activation(tf.sin)(L.Dense(2 * w)(inp))
  g = L.Multiply()([L.Dense(w)(inp), L.Dense(w)(inp)])
  c = L.Concatenate()([a, s, g])
  return keras.Model(inp, L.Dense(o)(c))


def concat_ref(W, b):
  # Channel widths 1 : 2 : 1 as w : 2w : w.
  return stax.serial(
      stax.FanOut(3),
      stax.parallel(
          stax.serial(stax.Dense(1, W, b), stax.Relu()),
          stax.serial(stax.Dense(2, W, b), stax.Sin()),
          stax.serial(stax.FanOut(2),
                      stax.parallel(stax.Dense(1, W, b), stax.Dense(1, W, b)),
                      stax.FanInProd())),
      stax.FanInConcat(), stax.Dense(1, W, b))


def conv1d(w, o):
  inp = keras.Input((9, 2))
  h = L.Conv1D(w, 3, strides=2, padding='same', activation='relu')(inp)
  h = L.Conv1D(w, 2, padding='valid')(h)
  h = L.LeakyReLU(0.1)(h)
  h = L.Conv1DTranspose(w, 3, strides=2, padding='same', activation='relu')(h)
  h = L.Flatten()(h)
  return keras.Model(inp, L.Dense(o)(h))


def conv1d_ref(W, b):
  return stax.serial(
      stax.Conv(1, (3,), (2,), 'SAME', W, b), stax.Relu(),
      stax.Conv(1, (2,), None, 'VALID', W, b), stax.LeakyRelu(0.1),
      stax.ConvTranspose(1, (3,), (2,), 'SAME', W, b), stax.Relu(),
      stax.Flatten(), stax.Dense(1, W, b))


def conv_transpose(w, o):
  inp = keras.Input((3, 3, 2))
  h = L.Conv2D(w, 2, padding='same', activation='relu')(inp)
  h = L.Conv2DTranspose(w, 3, strides=2, padding='same', activation='relu')(h)
  h = L.Conv2DTranspose(w, 2, strides=2, padding='valid')(h)
  h = L.Flatten()(L.AveragePooling2D(4)(h))
  return keras.Model(inp, L.Dense(o)(h))


def conv_transpose_ref(W, b):
  return stax.serial(
      stax.Conv(1, (2, 2), None, 'SAME', W, b), stax.Relu(),
      stax.ConvTranspose(1, (3, 3), (2, 2), 'SAME', W, b), stax.Relu(),
      stax.ConvTranspose(1, (2, 2), (2, 2), 'VALID', W, b),
      stax.AvgPool((4, 4), (4, 4)), stax.Flatten(), stax.Dense(1, W, b))


def layer_norm(w, o):
  inp = keras.Input((6,))
  h = L.LayerNormalization(center=False, scale=False)(L.Dense(w)(inp))
  h = L.Dense(w)(L.ReLU()(h))
  h = L.LayerNormalization(epsilon=0.1)(h)
  return keras.Model(inp, L.Dense(o)(L.Activation('relu')(h)))


def layer_norm_ref(W, b):
  """The NNGP only: Keras' trained scale/offset add to the NTK."""
  return stax.serial(
      stax.Dense(1, W, b), stax.LayerNorm(eps=1e-3), stax.Relu(),
      stax.Dense(1, W, b), stax.LayerNorm(eps=0.1), stax.Relu(),
      stax.Dense(1, W, b))


def _gelu_tanh(x):
  return keras.activations.gelu(x, approximate=True)


def mixed(w, o):
  inp = keras.Input((4,))
  h = L.Dense(w, activation='tanh')(inp)
  h = L.Dense(w, activation='softplus')(h)
  h = L.LeakyReLU()(L.Dense(w)(h))
  h = L.Dense(w, activation=functools.partial(keras.activations.gelu,
                                              approximate=True))(h)
  h = L.Dense(w, activation=tf.sin)(h)
  return keras.Model(inp, L.Dense(o)(h))


def mixed_ref(W, b):
  A = keras.activations
  return stax.serial(
      stax.Dense(1, W, b), stax.ElementwiseNumerical(A.tanh, DEG),
      stax.Dense(1, W, b), stax.ElementwiseNumerical(A.softplus, DEG),
      stax.Dense(1, W, b), stax.LeakyRelu(0.3),
      stax.Dense(1, W, b), stax.ElementwiseNumerical(_gelu_tanh, DEG),
      stax.Dense(1, W, b), stax.Sin(), stax.Dense(1, W, b))


def channels_first(w, o):
  cf = 'channels_first'
  inp = keras.Input((2, 6, 6))
  h = L.Conv2D(w, 3, padding='same', data_format=cf, activation='relu')(inp)
  h = L.AveragePooling2D(2, data_format=cf)(h)
  h = L.Conv2D(w, 2, data_format=cf, activation='gelu')(h)
  h = L.GlobalAveragePooling2D(data_format=cf)(h)
  return keras.Model(inp, L.Dense(o)(h))


def channels_first_ref(W, b):
  dn = ('NCHW', 'HWIO', 'NCHW')
  return stax.serial(
      stax.Conv(1, (3, 3), None, 'SAME', W, b, dimension_numbers=dn),
      stax.Relu(), stax.AvgPool((2, 2), (2, 2), channel_axis=1),
      stax.Conv(1, (2, 2), None, 'VALID', W, b, dimension_numbers=dn),
      stax.Gelu(), stax.GlobalAvgPool(channel_axis=1), stax.Dense(1, W, b))


def nested(w, o):
  """A Sequential block inside a functional model; Subtract, Average,
  Rescaling."""
  inp = keras.Input((6,))
  x = L.Rescaling(0.5)(inp)
  block = keras.Sequential([keras.Input((6,)), L.Dense(w, activation='relu'),
                            L.Dense(w)], name='block')
  d = L.Subtract()([block(x), L.Dense(w)(x)])
  avg = L.Average()([d, L.Dense(w)(x)])
  return keras.Model(inp, L.Dense(o)(L.Activation('relu')(avg)))


def nested_ref(W, b):
  # relu((u - v + z) / 2) = ABRelu(0, 1/2)(u - v + z); the inputs are halved.
  _, _, kernel_fn = stax.serial(
      stax.FanOut(3),
      stax.parallel(stax.serial(stax.Dense(1, W, b), stax.Relu(),
                                stax.Dense(1, W, b)),
                    stax.Dense(1, W, b), stax.Dense(1, W, b)),
      stax.FanInSum(), stax.ABRelu(0., 0.5), stax.Dense(1, W, b))
  return lambda x, get: kernel_fn(0.5 * x, None, get)


def conv3d(w, o):
  inp = keras.Input((4, 4, 4, 1))
  h = L.Conv3D(w, 2, padding='same', activation='relu')(inp)
  h = L.AveragePooling3D(2)(h)
  h = L.Conv3DTranspose(w, 2, strides=2)(h)
  h = L.GlobalAveragePooling3D()(h)
  return keras.Model(inp, L.Dense(o)(h))


def conv3d_ref(W, b):
  return stax.serial(
      stax.Conv(1, (2, 2, 2), None, 'SAME', W, b), stax.Relu(),
      stax.AvgPool((2, 2, 2), (2, 2, 2)),
      stax.ConvTranspose(1, (2, 2, 2), (2, 2, 2), 'VALID', W, b),
      stax.GlobalAvgPool(), stax.Dense(1, W, b))


def spatial_concat(w, o):
  inp = keras.Input((5, 2))
  a = L.Conv1D(w, 3, padding='same')(inp)
  c = L.Conv1D(w, 2, padding='valid')(inp)
  h = L.Activation('relu')(L.Concatenate(axis=1)([a, c]))
  return keras.Model(inp, L.Dense(o)(L.Flatten()(h)))


def spatial_concat_ref(W, b):
  return stax.serial(
      stax.FanOut(2),
      stax.parallel(stax.Conv(1, (3,), None, 'SAME', W, b),
                    stax.Conv(1, (2,), None, 'VALID', W, b)),
      stax.FanInConcat(axis=1), stax.Relu(), stax.Flatten(),
      stax.Dense(1, W, b))


# name: (builder, reference, input shape, wide width for Monte Carlo)
MODELS = {
    'mlp': (mlp, mlp_ref, (3,), 512),
    'cnn': (cnn, cnn_ref, (8, 8, 2), 256),
    'residual': (residual, residual_ref, (5,), 512),
    'concat': (concat, concat_ref, (4,), 512),
    'conv1d': (conv1d, conv1d_ref, (9, 2), 256),
    'conv_transpose': (conv_transpose, conv_transpose_ref, (3, 3, 2), 256),
    'layer_norm': (layer_norm, layer_norm_ref, (6,), 512),
    'mixed': (mixed, mixed_ref, (4,), 512),
    'channels_first': (channels_first, channels_first_ref, (2, 6, 6), 256),
    'nested': (nested, nested_ref, (6,), 512),
    'conv3d': (conv3d, conv3d_ref, (4, 4, 4, 1), 128),
    'spatial_concat': (spatial_concat, spatial_concat_ref, (5, 2), 256),
}


def _inputs(shape, n=4, seed=0, dtype=np.float64):
  return np.random.RandomState(seed).randn(n, *shape).astype(dtype)


def _reference(name, x, get):
  ref = MODELS[name][1](W_STD, B_STD)
  if isinstance(ref, tuple):
    return ref[2](x, None, get)
  return ref(x, get)


@pytest.fixture(scope='module')
def narrow_models():
  keras.utils.set_random_seed(0)
  return {name: spec[0](3, 1) for name, spec in MODELS.items()}


class _Converted:
  """A converted model with variable W_std/b_std (one compiled kernel per
  input shape and dtype, shared by the tests; changing the variables does
  not retrace)."""

  def __init__(self, model):
    self.W = tf.Variable(W_STD, dtype=tf.float64)
    self.b = tf.Variable(B_STD, dtype=tf.float64)
    _, _, self.kernel_fn = nk.kernel_fn_from_model(model, self.W, self.b,
                                                   quadrature_deg=DEG)

  def __call__(self, x1, x2=None, get=('nngp', 'ntk'), W=W_STD, b=B_STD):
    self.W.assign(W)
    self.b.assign(b)
    try:
      return self.kernel_fn(x1, x2, get)
    finally:
      self.W.assign(W_STD)
      self.b.assign(B_STD)


@pytest.fixture(scope='module')
def converted(narrow_models):
  return {name: _Converted(m) for name, m in narrow_models.items()}


# ----------------------------------------------------------------------------
# (a) Converted kernels equal the hand-built stax networks.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('name', sorted(MODELS))
def test_matches_hand_built_stax(converted, name):
  x1 = _inputs(MODELS[name][2], 4, seed=1)
  got = converted[name](x1)
  gets = ('nngp',) if name == 'layer_norm' else ('nngp', 'ntk')
  for get in gets:
    want = np.asarray(_reference(name, x1, get))
    np.testing.assert_allclose(getattr(got, get), want, rtol=1e-8,
                               atol=1e-12, err_msg=f'{name} {get}')
  if name in ('cnn', 'concat'):
    x2 = _inputs(MODELS[name][2], 3, seed=2)
    got = converted[name](x1, x2, 'ntk').numpy()
    want = MODELS[name][1](W_STD, B_STD)[2](x1, x2, 'ntk').numpy()
    np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-12)


def test_per_layer_override(narrow_models):
  _, _, kernel_fn = nk.kernel_fn_from_model(
      narrow_models['mlp'], W_STD, B_STD,
      per_layer={'d2': {'W_std': 0.7}, 'out': {'b_std': 0.5}})
  _, _, ref = stax.serial(
      stax.Dense(1, W_STD, B_STD), stax.Relu(), stax.Dense(1, 0.7, B_STD),
      stax.Gelu(), stax.Dense(1, W_STD, 0.5))
  x = _inputs((3,))
  np.testing.assert_allclose(kernel_fn(x, None, 'ntk'), ref(x, None, 'ntk'),
                             rtol=1e-10)
  with pytest.raises(ValueError, match="'dropout'.*not a weight layer"):
    nk.kernel_fn_from_model(narrow_models['mlp'],
                            per_layer={'dropout': {'W_std': 1.}})
  with pytest.raises(ValueError, match='keys among'):
    nk.kernel_fn_from_model(narrow_models['mlp'],
                            per_layer={'d1': {'w_std': 1.}})


def test_layer_norm_ntk_of_scale_and_offset(narrow_models):
  """Without scale/offset, the NTK is stax.LayerNorm's; with them, the NTK
  gains nngp (scale) + 1 (offset) right after the normalisation."""
  inp = keras.Input((6,))
  h = L.LayerNormalization(center=False, scale=False)(L.Dense(3)(inp))
  plain = keras.Model(inp, L.Dense(1)(L.ReLU()(h)))
  _, _, kernel_fn = nk.kernel_fn_from_model(plain, W_STD, B_STD)
  _, _, ref = stax.serial(stax.Dense(1, W_STD, B_STD),
                          stax.LayerNorm(eps=1e-3), stax.Relu(),
                          stax.Dense(1, W_STD, B_STD))
  x = _inputs((6,))
  np.testing.assert_allclose(kernel_fn(x, None, 'ntk'), ref(x, None, 'ntk'),
                             rtol=1e-10)
  inp = keras.Input((6,))
  h = L.LayerNormalization()(L.Dense(3)(inp))
  affine = keras.Model(inp, L.Dense(1)(h))
  _, _, kernel_fn = nk.kernel_fn_from_model(affine, W_STD, B_STD)
  _, _, before = stax.serial(stax.Dense(1, W_STD, B_STD),
                             stax.LayerNorm(eps=1e-3))
  k = before(x, None, ('nngp', 'ntk'))
  want = W_STD**2 * (k.nngp + k.ntk + k.nngp + 1) + B_STD**2
  np.testing.assert_allclose(kernel_fn(x, None, 'ntk'), want, rtol=1e-10)


def test_float32_and_float64(converted):
  for name in ('cnn', 'mixed'):
    x = _inputs(MODELS[name][2], 4, seed=1)
    k64 = converted[name](x).ntk
    k32 = converted[name](x.astype(np.float32)).ntk
    assert k64.dtype == tf.float64 and k32.dtype == tf.float32
    np.testing.assert_allclose(k32, k64, rtol=2e-4, atol=1e-5)


def test_hyperparameter_gradients(converted):
  x = _inputs((8, 8, 2), 4, seed=1)
  k = converted['cnn']
  with tf.GradientTape() as tape:
    total = tf.reduce_sum(k.kernel_fn(x, None, 'nngp'))
  grads = tape.gradient(total, [k.W, k.b])
  assert all(g is not None and np.isfinite(g.numpy()) for g in grads)
  eps = 1e-6
  finite_difference = (tf.reduce_sum(k(x, None, 'nngp', W=W_STD + eps)) -
                       tf.reduce_sum(k(x, None, 'nngp', W=W_STD - eps))) / (
                           2 * eps)
  np.testing.assert_allclose(grads[0], finite_difference, rtol=1e-6)


def test_several_inputs_and_outputs():
  a, b = keras.Input((3,)), keras.Input((5,))
  h = L.Concatenate()([L.Dense(4, activation='relu')(a),
                       L.Dense(4, activation='relu')(b)])
  model = keras.Model([a, b], [L.Dense(1)(h),
                               L.Dense(2)(L.Dense(3, activation='relu')(a))])
  _, _, kernel_fn = nk.kernel_fn_from_model(model, W_STD, B_STD)
  xa, xb = _inputs((3,), 3), _inputs((5,), 3, seed=1)
  k1, k2 = kernel_fn([xa, xb], None, 'ntk')
  _, _, ref1 = stax.serial(
      stax.parallel(stax.serial(stax.Dense(1, W_STD, B_STD), stax.Relu()),
                    stax.serial(stax.Dense(1, W_STD, B_STD), stax.Relu())),
      stax.FanInConcat(), stax.Dense(1, W_STD, B_STD))
  _, _, ref2 = stax.serial(stax.Dense(1, W_STD, B_STD), stax.Relu(),
                           stax.Dense(1, W_STD, B_STD))
  np.testing.assert_allclose(k1, ref1([xa, xb], None, 'ntk'), rtol=1e-10)
  np.testing.assert_allclose(k2, ref2(xa, None, 'ntk'), rtol=1e-10)


# ----------------------------------------------------------------------------
# init_from_model: the stax network computes the Keras model.
# ----------------------------------------------------------------------------
def _randomize(model, seed, W, b):
  """Keras weights W ~ N(0, W² / fan_in), b ~ N(0, b²) (in place)."""
  rng = np.random.default_rng(seed)
  for layer in _layers(model):
    kernel = getattr(layer, 'kernel', None)
    if kernel is None or isinstance(layer, keras.Model):
      continue
    shape = tuple(kernel.shape)
    if 'Transpose' in type(layer).__name__:
      fan_in = int(np.prod(shape[:-2])) * shape[-1]
    else:
      fan_in = int(np.prod(shape[:-1]))
    kernel.assign(rng.standard_normal(shape, np.float32) *
                  np.float32(W / np.sqrt(fan_in)))
    if getattr(layer, 'bias', None) is not None:
      layer.bias.assign(rng.standard_normal(tuple(layer.bias.shape),
                                            np.float32) * np.float32(b))


def _layers(model):
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      yield from _layers(layer)
    else:
      yield layer


@pytest.mark.parametrize('name', sorted(MODELS))
def test_init_from_model_reproduces_keras(name):
  keras.utils.set_random_seed(1)
  model = MODELS[name][0](5, 2)
  _randomize(model, 3, W_STD, B_STD)
  for layer in _layers(model):
    if isinstance(layer, L.LayerNormalization) and layer.scale:
      layer.gamma.assign(np.linspace(0.5, 1.5, layer.gamma.shape[0]))
      if layer.center:
        layer.beta.assign(np.linspace(-1, 1, layer.beta.shape[0]))
  x = _inputs(MODELS[name][2], 3).astype(np.float32)
  for parameterization in ('standard', 'ntk'):
    init_fn, apply_fn, _ = nk.kernel_fn_from_model(
        model, W_STD, B_STD, parameterization=parameterization,
        init_from_model=True)
    _, params = init_fn(0, x.shape)
    np.testing.assert_allclose(apply_fn(params, x), model(x), rtol=1e-4,
                               atol=1e-5, err_msg=parameterization)


# ----------------------------------------------------------------------------
# (b) Monte Carlo NNGP of the wide Keras model itself.
# ----------------------------------------------------------------------------
N_SEEDS, N_OUT = 48, 1024


def _monte_carlo_nngp(model, x, W, b, seeds=N_SEEDS):
  """Per-seed estimates `f(x) f(x)^T / outputs` of the NNGP."""
  estimates = []
  for seed in range(seeds):
    _randomize(model, seed, W, b)
    out = model(x, training=False).numpy().astype(np.float64)
    estimates.append(out @ out.T / out.shape[1])
  return np.stack(estimates)


def _check_monte_carlo(estimates, kernel, width, what):
  mean = estimates.mean(0)
  se = estimates.std(0, ddof=1) / np.sqrt(len(estimates))
  allowance = 4 / width * np.abs(kernel).max()
  excess = np.abs(mean - kernel) - (4 * se + allowance)
  assert excess.max() <= 0, (
      f'{what}: Monte Carlo NNGP {mean} vs converted {kernel}; standard '
      f'errors {se}, allowance {allowance}')
  return np.abs(mean - kernel) / (4 * se + allowance)


MC_MODELS = ['mlp', 'cnn', 'residual', 'concat', 'conv1d', 'conv_transpose',
             'layer_norm', 'mixed', 'channels_first', 'nested']


@pytest.mark.parametrize('name', MC_MODELS)
def test_monte_carlo_of_wide_keras_model(converted, name):
  builder, _, shape, width = MODELS[name]
  keras.utils.set_random_seed(0)
  wide = builder(width, N_OUT)
  x = _inputs(shape, 4, seed=5)
  estimates = _monte_carlo_nngp(wide, x.astype(np.float32), W_STD, B_STD)
  kernel = converted[name](x).nngp.numpy()
  _check_monte_carlo(estimates, kernel, width, name)
  # The test can fail: a kernel with W_std 5% off (10% in the NNGP) is
  # rejected.
  wrong = converted[name](x, W=1.05 * W_STD).nngp.numpy()
  with pytest.raises(AssertionError):
    _check_monte_carlo(estimates, wrong, width, name)


# ----------------------------------------------------------------------------
# NTK of the layers the converter adds (LayerNormalization's scale/offset, a
# ReLU shortcut): Monte Carlo of the converted finite network, whose
# `apply_fn` equals the Keras model (test_init_from_model_reproduces_keras).
# ----------------------------------------------------------------------------
def _ntk_samples(init_fn, apply_fn, x, seeds):
  x = tf.constant(x, tf.float64)

  @tf.function(autograph=False)
  def sample(seed):
    _, params = init_fn(seed, tuple(x.shape))
    flat = [tf.cast(p, tf.float64) for p in tf.nest.flatten(params)]
    with tf.GradientTape() as tape:
      tape.watch(flat)
      f = apply_fn(tf.nest.pack_sequence_as(params, flat), x)
    jacobians = tape.jacobian(f, flat, experimental_use_pfor=True)
    n, n_out = f.shape
    ntk = tf.zeros((n, n), tf.float64)
    for j in jacobians:
      j = tf.reshape(j, (n, n_out, -1))
      ntk += tf.einsum('iap,jap->ij', j, j)
    return ntk / n_out

  return np.stack([sample(tf.constant([7, s], tf.int64)).numpy()
                   for s in range(seeds)])


def norm_shortcut(w, o):
  inp = keras.Input((5,))
  a = L.ReLU()(L.LayerNormalization()(L.Dense(w)(inp)))
  s = L.Add()([a, L.Dense(w)(a)])
  return keras.Model(inp, L.Dense(o)(s))


def norm_gelu(w, o):
  inp = keras.Input((5,))
  h = L.Rescaling(0.8)(L.LayerNormalization()(L.Dense(w)(inp)))
  return keras.Model(inp, L.Dense(o)(L.Activation('gelu')(h)))


def _without_norm_affine(builder):
  """The kernel of `builder`'s model with LayerNormalization scale/offset
  left out of the NTK (stax.LayerNorm alone)."""
  def plain(w, o):
    model = builder(w, o)
    for layer in _layers(model):
      if isinstance(layer, L.LayerNormalization):
        layer.scale = layer.center = False
    return model
  return plain


@pytest.mark.parametrize('builder', [norm_shortcut, norm_gelu])
def test_ntk_monte_carlo_of_norm_affine(builder):
  width, seeds = 512, 24
  x = _inputs((5,), 4, seed=3)
  init_fn, apply_fn, _ = nk.kernel_fn_from_model(builder(width, 16), W_STD,
                                                 B_STD)
  samples = _ntk_samples(init_fn, apply_fn, x, seeds)
  _, _, kernel_fn = nk.kernel_fn_from_model(builder(3, 1), W_STD, B_STD)
  analytic = kernel_fn(x, None, 'ntk').numpy()
  mean = samples.mean(0)
  se = samples.std(0, ddof=1) / np.sqrt(seeds)
  band = 4 * se + 4 / width * np.abs(analytic).max()
  assert np.all(np.abs(mean - analytic) <= band), (mean, analytic, se)
  # Without the NTK of the scale and offset the band is missed.
  _, _, wrong_fn = nk.kernel_fn_from_model(
      _without_norm_affine(builder)(3, 1), W_STD, B_STD)
  wrong = wrong_fn(x, None, 'ntk').numpy()
  assert np.any(np.abs(mean - wrong) > band)


# ----------------------------------------------------------------------------
# (c) Unsupported layers and options.
# ----------------------------------------------------------------------------
class Doubling(L.Layer):
  """A custom layer (not convertible)."""

  def call(self, x):
    return 2 * x


class MyDense(L.Dense):
  """A subclass of Dense may change `call`: treated as custom."""


def _seq(*layers, shape=(4,)):
  return keras.Sequential([keras.Input(shape)] + list(layers))


def _functional(fn, shapes=((4,),)):
  inputs = [keras.Input(s) for s in shapes]
  out = fn(*inputs)
  return keras.Model(inputs if len(inputs) > 1 else inputs[0], out)


def _shared_dense():
  d = L.Dense(4, name='shared')
  return _functional(lambda x: L.Concatenate()([d(x), d(L.Dense(4)(x))]))


def _add_self():
  def fn(x):
    h = L.Dense(4, name='h')(x)
    return L.Add(name='twice')([h, L.Dropout(0.1)(h)])
  return _functional(fn)


def _add_pooled():
  def fn(x):
    h = L.Conv1D(3, 2, padding='same', name='c')(x)
    return L.Add(name='sum')([h, L.AveragePooling1D(3, 1, 'same')(h)])
  return _functional(fn, ((6, 2),))


def _add_relus():
  def fn(x):
    return L.Add(name='relus')([L.Dense(3, activation='relu')(x),
                                L.Dense(3, activation='relu')(x)])
  return _functional(fn)


def _multiply_inputs():
  return _functional(lambda a, b: L.Multiply(name='prod')([a, b]),
                     ((4,), (4,)))


def _dense_on_channels_first():
  return _seq(L.Conv1D(3, 2, data_format='channels_first'),
              L.Dense(2, name='dense_cf'), shape=(2, 5))


ERRORS = [
    (lambda: _seq(L.Reshape((4, 1)), L.MaxPooling1D(2, name='mp')),
     r"'reshape' \(Reshape\) has no infinite-width kernel"),
    (lambda: _seq(L.Conv1D(3, 2), L.MaxPooling1D(2, name='mp'), shape=(6, 2)),
     r"'mp' \(MaxPooling1D\) has no infinite-width kernel: max pooling is "
     r'not a linear or elementwise operation of Gaussian inputs; its '
     r'infinite-width kernel has no closed form'),
    (lambda: _seq(L.Conv1D(3, 2), L.GlobalMaxPooling1D(name='gmp'),
                  shape=(6, 2)),
     r"'gmp' \(GlobalMaxPooling1D\).*max pooling"),
    (lambda: _seq(L.Dense(3), L.BatchNormalization(name='bn')),
     r"'bn' \(BatchNormalization\).*batch normalization"),
    (lambda: _seq(Doubling(name='twice')),
     r"'twice' \(Doubling\).*not a Keras layer with a known infinite-width "
     r"kernel.*layer_kernels=\{'twice'"),
    (lambda: _seq(MyDense(3, name='mine')), r"'mine' \(MyDense\)"),
    (lambda: _seq(L.Conv2D(3, 2, dilation_rate=2, name='dil'),
                  shape=(6, 6, 2)),
     r"'dil' \(Conv2D\).*dilation_rate=\(2, 2\)"),
    (lambda: _seq(L.Conv2D(4, 2, groups=2, name='grp'), shape=(6, 6, 2)),
     r"'grp' \(Conv2D\).*groups=2"),
    (lambda: _seq(L.Conv1D(4, 2, padding='causal', name='causal'),
                  shape=(6, 2)),
     r"'causal' \(Conv1D\).*padding='causal'"),
    (lambda: _seq(L.Conv2DTranspose(4, 3, strides=2, output_padding=1,
                                    name='tp'), shape=(3, 3, 2)),
     r"'tp' \(Conv2DTranspose\).*output_padding"),
    (lambda: _seq(L.LSTM(3, name='rnn'), shape=(5, 2)),
     r"'rnn' \(LSTM\).*recurrent"),
    (lambda: _seq(L.DepthwiseConv2D(2, name='dw'), shape=(5, 5, 2)),
     r"'dw' \(DepthwiseConv2D\).*does not become Gaussian"),
    (lambda: _seq(L.Embedding(10, 3, name='emb'), shape=(5,)),
     r"'emb' \(Embedding\).*one-hot"),
    (lambda: _seq(L.Lambda(lambda x: x * 2, name='lam')),
     r"'lam' \(Lambda\).*layer_kernels"),
    (lambda: _seq(L.Dense(3, activation='softmax', name='sm')),
     r"'sm' \(Dense\).*'softmax' is not elementwise"),
    (lambda: _seq(L.Dense(3, activation=lambda x: x, name='anon')),
     r"'anon' \(Dense\).*not a known elementwise.*activation_kernels"),
    (lambda: _seq(L.Dense(3, activation='hard_shrink', name='hs')),
     r"'hs' \(Dense\).*discontinuous"),
    (lambda: _seq(L.Dense(3, activation='relu'), L.Activation('tanh',
                                                              name='act2')),
     r"'act2' \(Activation\).*needs a Gaussian input"),
    (lambda: _seq(L.LayerNormalization(name='ln')),
     r"'ln' \(LayerNormalization\).*needs a Gaussian input"),
    (lambda: _seq(L.Dense(3), L.LayerNormalization(
        axis=[0, 1], center=False, scale=False, name='ln0')),
     r"'ln0' \(LayerNormalization\).*batch axis"),
    (_shared_dense, r"'shared' \(Dense\).*called 2 times"),
    (_add_self, r"'twice' \(Add\).*inputs 0 and 1 both depend on Keras layer "
                r"'h' \(Dense\)"),
    (_add_pooled, r"'sum' \(Add\).*both depend on Keras layer 'c'"),
    (_add_relus, r"'relus' \(Add\).*not zero-mean Gaussian"),
    (_multiply_inputs, r"'prod' \(Multiply\).*network inputs directly"),
    (_dense_on_channels_first,
     r"'dense_cf' \(Dense\).*channels of that tensor are on axis 1"),
    (lambda: _seq(L.Conv1D(3, 2), L.GlobalAveragePooling1D(keepdims=True,
                                                           name='gk'),
                  shape=(5, 2)), r"'gk' .*keepdims"),
    (lambda: _seq(L.Rescaling(2., offset=1., name='resc')),
     r"'resc' \(Rescaling\).*offset"),
    (lambda: _functional(lambda x: L.Dense(3)(x) * 2.),
     r'\(Multiply\).*extra arguments'),
    (lambda: _functional(lambda x: keras.ops.sum(L.Dense(3)(x), axis=-1,
                                                 keepdims=True)),
     r"keras.ops operation 'Sum' is not supported"),
]


@pytest.mark.parametrize('index', range(len(ERRORS)))
def test_unsupported_layers_raise_named_errors(index):
  build, pattern = ERRORS[index]
  model = build()
  with pytest.raises(ValueError, match=pattern):
    nk.kernel_fn_from_model(model)


def test_bad_models_and_options():
  with pytest.raises(TypeError, match='Keras 3 model'):
    nk.kernel_fn_from_model(stax.Dense(1))

  class Subclassed(keras.Model):

    def __init__(self):
      super().__init__()
      self.d = L.Dense(2)

    def call(self, x):
      return self.d(x)
  sub = Subclassed()
  sub(np.ones((1, 3), np.float32))
  with pytest.raises(ValueError, match='subclassed model'):
    nk.kernel_fn_from_model(sub)
  with pytest.raises(ValueError, match='not built'):
    nk.kernel_fn_from_model(keras.Sequential([L.Dense(2)]))
  model = _seq(L.Dense(2))
  with pytest.raises(ValueError, match='parameterization'):
    nk.kernel_fn_from_model(model, parameterization='mean_field')
  with pytest.raises(ValueError, match='quadrature_deg'):
    nk.kernel_fn_from_model(model, quadrature_deg=0)
  with pytest.raises(ValueError, match='W_std'):
    nk.kernel_fn_from_model(model, W_std=-1.)


def test_layer_and_activation_overrides():
  """`layer_kernels` replaces a custom layer; errors of its stax layer name
  the Keras layer."""
  model = _seq(L.Dense(3, name='d'), Doubling(name='dbl'), L.Dense(1))
  _, _, kernel_fn = nk.kernel_fn_from_model(
      model, W_STD, B_STD, layer_kernels={'dbl': stax.Erf(a=2., b=1.)})
  _, _, ref = stax.serial(stax.Dense(1, W_STD, B_STD), stax.Erf(a=2., b=1.),
                          stax.Dense(1, W_STD, B_STD))
  x = _inputs((4,))
  np.testing.assert_allclose(kernel_fn(x, None, 'ntk'), ref(x, None, 'ntk'),
                             rtol=1e-10)
  model = _seq(Doubling(name='dbl'), L.Dense(1))
  _, _, kernel_fn = nk.kernel_fn_from_model(
      model, layer_kernels={'dbl': stax.Erf()})
  with pytest.raises(ValueError, match=r"Keras layer 'dbl' \(Doubling\).*"
                     r'must be Gaussian'):
    kernel_fn(x, None, 'nngp')

  def cube(x):
    return x ** 3
  model = _seq(L.Dense(3, activation=cube), L.Dense(1))
  _, _, kernel_fn = nk.kernel_fn_from_model(
      model, W_STD, B_STD, activation_kernels={cube: stax.Monomial(3)})
  _, _, ref = stax.serial(stax.Dense(1, W_STD, B_STD), stax.Monomial(3),
                          stax.Dense(1, W_STD, B_STD))
  np.testing.assert_allclose(kernel_fn(x, None, 'ntk'), ref(x, None, 'ntk'),
                             rtol=1e-10)


# ----------------------------------------------------------------------------
# (d) TFP and GPflow kernels.
# ----------------------------------------------------------------------------
def test_tfp_kernel_matches_and_trains(narrow_models):
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  for name, get in (('mlp', 'nngp'), ('cnn', 'ntk')):
    kernel = nk.tfp_kernel_from_model(narrow_models[name], get=get,
                                      W_std=W_STD, b_std=B_STD)
    assert sorted(kernel.hyperparameters) == ['W_std', 'b_std']
    assert kernel.feature_ndims == len(MODELS[name][2])
    x1, x2 = _inputs(MODELS[name][2], 4, 1), _inputs(MODELS[name][2], 3, 2)
    _, _, kernel_fn = nk.kernel_fn_from_model(narrow_models[name], W_STD,
                                              B_STD)
    np.testing.assert_allclose(kernel.matrix(x1, x2),
                               kernel_fn(x1, x2, get), rtol=1e-10)
  # One optimizer step on the GP marginal likelihood moves both.
  kernel = nk.tfp_kernel_from_model(narrow_models['mlp'], W_std=W_STD,
                                    b_std=B_STD)
  x = _inputs((3,), 6, 4)
  y = np.sin(x[:, 0])
  before = {n: float(tf.convert_to_tensor(v))
            for n, v in kernel.hyperparameters.items()}
  optimizer = keras.optimizers.Adam(0.05)
  variables = kernel.trainable_variables
  with tf.GradientTape() as tape:
    gp = tfp.distributions.GaussianProcess(
        kernel, index_points=x, observation_noise_variance=0.01)
    loss = -gp.log_prob(y)
  grads = tape.gradient(loss, variables)
  assert len(variables) == 2
  assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
  optimizer.apply_gradients(zip(grads, variables))
  after = {n: float(tf.convert_to_tensor(v))
           for n, v in kernel.hyperparameters.items()}
  assert all(after[n] != before[n] for n in before), (before, after)


def test_tfp_per_layer_hyperparameters(narrow_models):
  kernel = nk.tfp_kernel_from_model(
      narrow_models['mlp'], get='ntk', W_std=W_STD, b_std=B_STD,
      per_layer_hyperparameters=True, per_layer={'d2': {'W_std': 0.7}})
  assert sorted(kernel.hyperparameters) == [
      'W_std_d1', 'W_std_d2', 'W_std_out', 'b_std_d1', 'b_std_d2',
      'b_std_out']
  x = _inputs((3,), 4, 1)
  _, _, kernel_fn = nk.kernel_fn_from_model(
      narrow_models['mlp'], W_STD, B_STD, per_layer={'d2': {'W_std': 0.7}})
  np.testing.assert_allclose(kernel.matrix(x, x), kernel_fn(x, None, 'ntk'),
                             rtol=1e-10)
  # No bias anywhere: no b_std.
  model = _seq(L.Dense(3, use_bias=False), L.Dense(1, use_bias=False))
  assert list(nk.tfp_kernel_from_model(model).hyperparameters) == ['W_std']
  with pytest.raises(ValueError, match='positive'):
    nk.tfp_kernel_from_model(model, W_std=0.)
  two_outputs = _functional(lambda x: [L.Dense(1)(x), L.Dense(1)(x)])
  with pytest.raises(ValueError, match='exactly one'):
    nk.tfp_kernel_from_model(two_outputs)


def test_gpflow_kernel_matches_and_trains(narrow_models):
  import gpflow  # pylint: disable=g-import-not-at-top
  model = narrow_models['cnn']
  kernel = nk.gpflow_kernel_from_model(model, get='nngp', W_std=W_STD,
                                       b_std=B_STD)
  x = _inputs((8, 8, 2), 5, 1)
  X = x.reshape(5, -1)
  _, _, kernel_fn = nk.kernel_fn_from_model(model, W_STD, B_STD)
  np.testing.assert_allclose(kernel(X), kernel_fn(x, None, 'nngp'),
                             rtol=1e-10)
  np.testing.assert_allclose(kernel(X, full_cov=False),
                             np.diag(kernel_fn(x, None, 'nngp')), rtol=1e-10)
  gp = gpflow.models.GPR((X, np.sin(X[:, :1])), kernel, noise_variance=0.1)
  gpflow.set_trainable(gp.likelihood, False)
  before = (kernel.W_std.numpy(), kernel.b_std.numpy())
  with tf.GradientTape() as tape:
    loss = gp.training_loss()
  variables = gp.trainable_variables
  grads = tape.gradient(loss, variables)
  assert len(variables) == 2
  assert all(g is not None and np.all(np.isfinite(g)) for g in grads)
  keras.optimizers.Adam(0.05).apply_gradients(zip(grads, variables))
  after = (kernel.W_std.numpy(), kernel.b_std.numpy())
  assert after[0] != before[0] and after[1] != before[1]
