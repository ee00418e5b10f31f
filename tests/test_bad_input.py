"""Bad inputs raise errors that name the problem; dtypes and tracing.

Every check asserts the exception type and a substring of the message, so a
test fails both when nothing is raised and when an unrelated error (say, a
shape error deep inside TensorFlow) is.
"""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import stax


def mlp():
  return stax.serial(stax.Dense(8, 1.5, 0.1), stax.Relu(), stax.Dense(1))


def cnn():
  return stax.serial(stax.Conv(4, (3, 3), padding='SAME'), stax.Relu(),
                     stax.Flatten(), stax.Dense(1))


@pytest.fixture(scope='module')
def x():
  return np.random.RandomState(0).randn(3, 4)


@pytest.fixture(scope='module')
def kernel_fn():
  return mlp()[2]


# ----------------------------------------------------------------------------
# Shapes.
# ----------------------------------------------------------------------------
def test_mismatched_feature_sizes(kernel_fn, x):
  with pytest.raises(ValueError, match='same shape apart from the batch'):
    kernel_fn(x, np.ones((2, 5)))
  with pytest.raises(ValueError, match='same shape apart from the batch'):
    kernel_fn(x, np.ones((2, 4, 1)))


def test_rank_one_input(kernel_fn):
  with pytest.raises(ValueError, match=r'rank >= 2'):
    kernel_fn(np.ones(4))
  with pytest.raises(ValueError, match='same shape apart from the batch'):
    kernel_fn(np.ones((2, 4)), np.ones(4))


def test_conv_wrong_rank():
  kernel_fn = cnn()[2]
  # A 2-D convolution given rank-3 (N, W, C) or rank-5 inputs.
  with pytest.raises(ValueError, match='rank 3'):
    kernel_fn(np.ones((2, 5, 3)))
  with pytest.raises(ValueError, match='needs inputs of rank 4'):
    kernel_fn(np.ones((2, 5, 5, 5, 3)))
  # A 1-D convolution given images.
  with pytest.raises(ValueError, match='needs inputs of rank 3'):
    stax.Conv(4, (3,))[2](np.ones((2, 5, 5, 3)))


def test_empty_batch(kernel_fn):
  with pytest.raises(ValueError, match='empty batch'):
    kernel_fn(np.ones((0, 4)))


# ----------------------------------------------------------------------------
# Values and dtypes.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize('where', ['x1', 'x2'])
def test_non_finite_inputs(kernel_fn, x, bad, where):
  x_bad = x.copy()
  x_bad[1, 2] = bad
  args = (x_bad, None) if where == 'x1' else (x, x_bad)
  with pytest.raises(ValueError, match=rf'`{where}` has non-finite values'):
    kernel_fn(*args)
  # Also as a TensorFlow tensor.
  args = tuple(None if a is None else tf.constant(a) for a in args)
  with pytest.raises(ValueError, match=rf'`{where}` has non-finite values'):
    kernel_fn(*args)


def test_mixed_dtypes(kernel_fn, x):
  with pytest.raises(TypeError, match='same dtype'):
    kernel_fn(x, x.astype(np.float32))
  with pytest.raises(TypeError, match='same dtype'):
    kernel_fn(x.astype(np.float32), x)


def test_non_array_inputs(kernel_fn, x):
  with pytest.raises(TypeError, match='must be an array'):
    kernel_fn('abc')
  with pytest.raises(TypeError, match='real-valued'):
    kernel_fn(x.astype(np.complex128))


@pytest.mark.parametrize('make, match', [
    (lambda: stax.Dense(1, W_std=0.), '`W_std`.*must be positive'),
    (lambda: stax.Dense(1, W_std=-1.), '`W_std`.*must be positive'),
    (lambda: stax.Dense(1, b_std=-0.1), '`b_std`.*must be non-negative'),
    (lambda: stax.Dense(1, W_std=float('nan')), '`W_std` must be finite'),
    (lambda: stax.Dense(1, W_std=tf.constant(0.)), '`W_std`.*positive'),
    (lambda: stax.Conv(1, (3, 3), W_std=0.), '`W_std`.*must be positive'),
    (lambda: stax.Conv(1, (3, 3), b_std=-1.), '`b_std`.*non-negative'),
])
def test_non_positive_variances(make, match):
  with pytest.raises(ValueError, match=match):
    make()


def test_non_positive_variable_variance(x):
  """A variable cannot be checked at construction: the kernel checks it."""
  W = tf.Variable(0., dtype=tf.float64)
  kernel_fn = stax.serial(stax.Dense(1, W), stax.Relu(), stax.Dense(1))[2]
  with pytest.raises((ValueError, tf.errors.InvalidArgumentError),
                     match='W_std.*positive'):
    kernel_fn(x, None, 'nngp')
  W.assign(1.)
  assert np.all(np.isfinite(kernel_fn(x, None, 'nngp').numpy()))


# ----------------------------------------------------------------------------
# `get` and kernels.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('get, error, match', [
    ('ntkk', ValueError, "'ntkk'"),
    (('nngp', 'foo'), ValueError, "'foo'"),
    (3, TypeError, '`get` must be'),
    (b'ntk', TypeError, '`get` must be'),
    (('nngp', 3), TypeError, '`get` must be'),
    ((), ValueError, 'must not be empty'),
])
def test_bad_get(kernel_fn, x, get, error, match):
  with pytest.raises(error, match=match):
    kernel_fn(x, None, get)


def test_bad_get_on_kernel(kernel_fn, x):
  k = stax.Dense(1)[2](x)
  with pytest.raises(ValueError, match="'ntkk'"):
    kernel_fn(k, get='ntkk')


@pytest.mark.parametrize('net', [
    lambda: stax.serial(stax.Relu(), stax.Dense(1)),
    lambda: stax.serial(stax.Erf(), stax.Dense(1)),
    lambda: stax.Relu(),
    lambda: stax.serial(stax.Dense(1), stax.Relu(), stax.Relu()),
])
def test_nonlinearity_of_non_gaussian_input(net, x):
  with pytest.raises(ValueError, match='must be Gaussian'):
    net()[2](x, None, 'ntk')
  with pytest.raises(ValueError, match='must be Gaussian'):
    net()[2](x, None, 'nngp')


def test_kernel_with_x2(kernel_fn, x):
  k = stax.Dense(1)[2](x)
  with pytest.raises(TypeError, match='`x2` must be None when a Kernel'):
    kernel_fn(k, x)
  with pytest.raises(TypeError, match='Kernel'):
    kernel_fn(x, k)


# ----------------------------------------------------------------------------
# Convolutions and pooling.
# ----------------------------------------------------------------------------
WINDOW_TOO_BIG = r'(window of size 5 does not fit an axis of size 3|' \
                 r'larger than the input)'


def test_conv_window_larger_than_image():
  images = np.ones((2, 3, 3, 2))
  init_fn, _, kernel_fn = stax.Conv(1, (5, 5), padding='VALID')
  with pytest.raises(ValueError, match=WINDOW_TOO_BIG):
    kernel_fn(images)
  with pytest.raises(ValueError, match='larger than the input'):
    init_fn(0, images.shape)


def test_avgpool_window_larger_than_image():
  images = np.ones((2, 3, 3, 2))
  net = stax.serial(stax.Conv(1, (1, 1)), stax.AvgPool((5, 5)))
  with pytest.raises(ValueError, match=WINDOW_TOO_BIG):
    net[2](images)
  with pytest.raises(ValueError, match='larger than the input'):
    net[0](0, images.shape)
  with pytest.raises(ValueError, match=WINDOW_TOO_BIG):
    stax.AvgPool((5, 5))[2](images)


def test_channels_first_images_to_channels_last_conv():
  with pytest.raises(ValueError, match='looks channels-first'):
    cnn()[2](np.ones((2, 3, 32, 32)))
  # With explicit channels-first dimension numbers the same data is fine.
  _, _, kernel_fn = stax.serial(
      stax.Conv(4, (3, 3), padding='SAME',
                dimension_numbers=('NCHW', 'OIHW', 'NCHW')),
      stax.Relu(), stax.Flatten(), stax.Dense(1))
  out = kernel_fn(np.random.RandomState(0).randn(2, 3, 8, 8), None, 'nngp')
  assert out.shape == (2, 2)


@pytest.mark.parametrize('make', [
    lambda: stax.Conv(1, (3, 3), strides=(0, 1)),
    lambda: stax.Conv(1, (3, 3), strides=(1, -1)),
    lambda: stax.AvgPool((2, 2), strides=(0, 1)),
])
def test_non_positive_strides(make):
  with pytest.raises(ValueError, match='`strides` entries must be positive'):
    make()


def test_bad_filter_shapes():
  with pytest.raises(ValueError, match='`filter_shape` entries must be'):
    stax.Conv(1, (0, 3))
  with pytest.raises(ValueError, match='`strides` must have 2 entries'):
    stax.Conv(1, (3, 3), strides=(1,))


@pytest.mark.parametrize('make', [
    lambda: stax.Conv(1, (3, 3), padding='FULL'),
    lambda: stax.AvgPool((2, 2), padding='full'),
    lambda: stax.Conv(1, (3, 3), padding=None),
])
def test_unknown_padding(make):
  with pytest.raises(ValueError, match='`padding` must be one of'):
    make()


# ----------------------------------------------------------------------------
# parallel.
# ----------------------------------------------------------------------------
def test_parallel_given_non_list(x):
  init_fn, apply_fn, kernel_fn = stax.parallel(stax.Dense(1), stax.Dense(1))
  with pytest.raises(ValueError, match='needs a list of 2 inputs'):
    kernel_fn(x)
  with pytest.raises(ValueError, match='needs a list of 2 inputs'):
    apply_fn(((), ()), x)
  # A list of the wrong length.
  net = stax.serial(stax.FanOut(3),
                    stax.parallel(stax.Dense(1), stax.Dense(1)))
  with pytest.raises(ValueError, match='needs a list of 2 inputs'):
    net[2](x)
  # init_fn with a single shape (3 branches: not confusable with 3 shapes).
  init3 = stax.parallel(stax.Dense(1), stax.Dense(1), stax.Dense(1))[0]
  with pytest.raises(ValueError, match='needs a list of 3 inputs'):
    init3(0, (3, 4))


def test_parallel_init_fn_given_single_shape():
  init_fn = stax.parallel(stax.Dense(1), stax.Dense(1))[0]
  with pytest.raises(ValueError, match='list'):
    init_fn(0, (3, 4))


def test_parallel_given_list_of_layers():
  with pytest.raises((ValueError, TypeError), match='layer'):
    stax.parallel([stax.Dense(1), stax.Dense(1)])


# ----------------------------------------------------------------------------
# dtypes of outputs.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('make, shape', [(mlp, (3, 4)), (cnn, (2, 5, 5, 2))])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_output_dtype_follows_input(make, shape, dtype):
  x = np.random.RandomState(1).randn(*shape).astype(dtype)
  kernel_fn = make()[2]
  for args in ((x, None), (x, x[:1])):
    k = kernel_fn(*args, ('nngp', 'ntk', 'cov1'))
    for name, t in zip(('nngp', 'ntk', 'cov1'), k):
      assert t.dtype == tf.as_dtype(dtype), (name, t.dtype)
  k32 = kernel_fn(x.astype(np.float32), None, 'nngp').numpy()
  k64 = kernel_fn(x.astype(np.float64), None, 'nngp').numpy()
  np.testing.assert_allclose(k32, k64, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('dtype', [tf.float16, tf.bfloat16])
@pytest.mark.parametrize('get', ['nngp', ('nngp', 'ntk')])
def test_half_precision_inputs_refused(kernel_fn, x, dtype, get):
  """float16/bfloat16 keep 3 significant digits or fewer: refused by name,
  not an error from deep inside TensorFlow nor a silently rough kernel."""
  with pytest.raises(TypeError, match=f'`x1` has dtype {dtype.name}; '
                                      'kernels are computed in float32 or '
                                      'float64'):
    kernel_fn(tf.cast(x, dtype), None, get)
  with pytest.raises(TypeError, match=f'`x2` has dtype {dtype.name}'):
    kernel_fn(tf.cast(x, tf.float32), tf.cast(x, dtype), get)


def _mlp_of(W_std, b_std):
  return stax.serial(stax.Dense(8, W_std, b_std), stax.Relu(),
                     stax.Dense(1, W_std, b_std))


def test_half_precision_refused_by_the_adapters(x):
  """The same check in the TFP and GPflow kernels, feature maps and
  predict."""
  import gpflow  # pylint: disable=g-import-not-at-top
  from nt_gp import features, predict  # pylint: disable=g-import-not-at-top
  from nt_gp import gpflow as nt_gpflow  # pylint: disable=g-import-not-at-top
  from nt_gp import tfp as nt_tfp  # pylint: disable=g-import-not-at-top
  x16 = x.astype(np.float16)
  tk = nt_tfp.NeuralKernel(_mlp_of, W_std=1.5, b_std=0.1)
  with pytest.raises(TypeError, match='NeuralKernel: an input has dtype '
                                      'float16'):
    tk.matrix(x16, x16)
  with pytest.raises(TypeError, match='a hyperparameter has dtype '
                                      'float16.*float32 or float64 values'):
    nt_tfp.NeuralKernel(_mlp_of, W_std=np.float16(1.5),
                        b_std=np.float16(0.1))
  # Lower-precision inputs to a float64 kernel are cast up, as before.
  tk64 = nt_tfp.NeuralKernel(_mlp_of, W_std=np.float64(1.5),
                             b_std=np.float64(0.1))
  assert tk64.matrix(x16, x16).dtype == tf.float64
  with gpflow.config.as_context(gpflow.config.Config(float=np.float16)):
    gk = nt_gpflow.NeuralKernel(_mlp_of, W_std=1.5, b_std=0.1)
  with pytest.raises(TypeError, match=r'parameters\) has dtype float16.*'
                                      'set_default_float'):
    gk(x, x)
  with pytest.raises(TypeError, match='`x` has dtype float16'):
    features.features_fn(mlp(), 8)(x16)
  with pytest.raises(TypeError, match='`k_train_train` has dtype float16'):
    predict.gradient_descent_mse(np.eye(3, dtype=np.float16),
                                 np.ones((3, 1), np.float16))


def test_integer_inputs_give_float32(kernel_fn):
  out = kernel_fn(np.arange(8).reshape(2, 4), None, 'nngp')
  assert out.dtype == tf.float32


# ----------------------------------------------------------------------------
# Tracing.
# ----------------------------------------------------------------------------
def counting_layer(counter):
  """An identity layer whose kernel rule counts how often it runs in Python,
  which happens only while `kernel_fn`'s compiled graph is traced."""
  @stax.layer
  def Count():
    init_fn = stax.make_init_fn(lambda shape: shape)

    def apply_fn(params, inputs, **kwargs):
      return inputs

    @stax.requires(diagonal_spatial=stax.Diagonal())
    def rule(k, **kwargs):
      counter['traces'] += 1
      return k
    return init_fn, apply_fn, rule
  return Count()


def test_no_retracing_for_same_shapes():
  counter = {'traces': 0}
  kernel_fn = stax.serial(stax.Dense(8, 1.5, 0.1), counting_layer(counter),
                          stax.Relu(), stax.Dense(1))[2]
  rng = np.random.RandomState(0)
  xs = [rng.randn(4, 3) for _ in range(3)]
  outs = [kernel_fn(x, None, ('nngp', 'ntk')) for x in xs]
  assert counter['traces'] == 1
  # The results are those of the respective inputs (no stale constants).
  for x, out in zip(xs, outs):
    fresh = stax.serial(stax.Dense(8, 1.5, 0.1), stax.Relu(),
                        stax.Dense(1))[2](x, None, 'nngp')
    np.testing.assert_allclose(out.nngp.numpy(), fresh.numpy(), rtol=1e-12)
  # numpy and TensorFlow inputs of the same shape/dtype share the trace.
  kernel_fn(tf.constant(xs[0]), None, ('nngp', 'ntk'))
  assert counter['traces'] == 1
  # Cross kernels: one more trace, then none.
  for x in xs:
    kernel_fn(x, x[:2], ('nngp', 'ntk'))
  assert counter['traces'] == 2
  # A new shape or dtype traces once more, then is reused.
  for x in xs:
    kernel_fn(np.concatenate([x, x]), None, ('nngp', 'ntk'))
  assert counter['traces'] == 3
  for x in xs:
    kernel_fn(x.astype(np.float32), None, ('nngp', 'ntk'))
  assert counter['traces'] == 4
  # Asking only for the NNGP compiles a graph without the NTK, once.
  for x in xs:
    kernel_fn(x, None, 'nngp')
  assert counter['traces'] == 5
