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
  h = L.Flatten()(h)
  return keras.Model(inp, L.Dense(o)(h))


def conv_transpose_ref(W, b):
  return stax.serial(
      stax.Conv(1, (2, 2), None, 'SAME', W, b), stax.Relu(),
      stax.ConvTranspose(1, (3, 3), (2, 2), 'SAME', W, b), stax.Relu(),
      stax.ConvTranspose(1, (2, 2), (2, 2), 'VALID', W, b),
      stax.Flatten(), stax.Dense(1, W, b))


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


# ----------------------------------------------------------------------------
# init_from_model: the stax network computes the Keras model.
# ----------------------------------------------------------------------------
def _randomize(model, seed, W, b):
  """Keras weights W ~ N(0, W² / fan_in), b ~ N(0, b²) (in place)."""
  rng = np.random.RandomState(seed)
  for layer in _layers(model):
    kernel = getattr(layer, 'kernel', None)
    if kernel is None or isinstance(layer, keras.Model):
      continue
    shape = tuple(kernel.shape)
    if 'Transpose' in type(layer).__name__:
      fan_in = int(np.prod(shape[:-2])) * shape[-1]
    else:
      fan_in = int(np.prod(shape[:-1]))
    kernel.assign((rng.randn(*shape) * W / np.sqrt(fan_in)).astype(
        np.float32))
    if getattr(layer, 'bias', None) is not None:
      layer.bias.assign((rng.randn(*layer.bias.shape) * b).astype(
          np.float32))


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
