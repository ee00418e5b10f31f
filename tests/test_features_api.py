"""Feature maps: errors, reproducibility, dtypes and compilation."""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import features, stax

NET = stax.serial(stax.Dense(4, b_std=0.1), stax.Relu(), stax.Dense(1))
X = np.random.RandomState(0).randn(5, 3)


@pytest.mark.parametrize('layer, name', [
    (stax.LayerNorm(), 'LayerNorm'),
    (stax.Dropout(0.5, mode='train'), 'Dropout'),
    (stax.FanInProd(), 'FanInProd'),
    (stax.Sign(), 'Sign'),
])
def test_unsupported_layers_are_named(layer, name):
  net = stax.serial(stax.Dense(4), stax.FanOut(2), stax.parallel(
      stax.Identity(), stax.Identity()), stax.FanInSum(), layer, stax.Dense(1))
  with pytest.raises(ValueError, match=f'no feature map for the layer {name} '
                     r'\(at serial > ' + name):
    features.features_fn(net, 8)(X)


def test_not_a_stax_layer():
  with pytest.raises(TypeError, match='not built by an nt_gp.stax'):
    features.features_fn((lambda: 0, lambda: 0, lambda: 0), 8)


@pytest.mark.parametrize('bad', [0, -3])
def test_feature_dim_below_one(bad):
  with pytest.raises(ValueError, match='`feature_dim` must be >= 1'):
    features.features_fn(NET, bad)
  with pytest.raises(ValueError, match='`sketch_dim` must be >= 1'):
    features.features_fn(NET, 8, sketch_dim=bad)


def test_feature_dim_not_an_int():
  with pytest.raises(TypeError, match='`feature_dim` must be a positive int'):
    features.features_fn(NET, 8.5)


def test_other_options_are_checked():
  with pytest.raises(ValueError, match='activation_method'):
    features.features_fn(NET, 8, activation_method='exact')
  with pytest.raises(TypeError, match='seed'):
    features.features_fn(NET, 8, seed=-1)
  with pytest.raises(ValueError, match='`get'):
    features.features_fn(NET, 8)(X, get='cov1')


def test_inputs_of_the_wrong_shape():
  phi = features.features_fn(NET, 8)
  with pytest.raises(ValueError, match='rank >= 2'):
    phi(np.ones(3))
  with pytest.raises(ValueError, match='empty batch'):
    phi(np.ones((0, 3)))
  phi(X)
  with pytest.raises(ValueError, match=r'built for inputs of shape \(N, 3\), '
                     r'got \(N, 4\)'):
    phi(np.ones((2, 4)))
  conv = stax.serial(stax.Conv(2, (3, 3)), stax.Flatten(), stax.Dense(1))
  with pytest.raises(ValueError, match='needs inputs of rank 4'):
    features.features_fn(conv, 8)(X)
  with pytest.raises(ValueError, match='filter'):
    features.features_fn(conv, 8)(np.ones((2, 2, 2, 1)))


def test_bad_input_values():
  phi = features.features_fn(NET, 8)
  with pytest.raises(ValueError, match='NaN or inf'):
    phi(np.array([[1., np.nan, 0.]]))
  with pytest.raises(TypeError, match='real-valued'):
    phi(np.ones((2, 3), np.complex64))
  with pytest.raises(TypeError, match='must be an array'):
    phi('abc')


def test_network_ending_in_branches():
  net = stax.serial(stax.Dense(2), stax.FanOut(2))
  with pytest.raises(ValueError, match='ends in several branches'):
    features.features_fn(net, 8)(X)


def test_same_seed_same_features_any_batch_and_dtype():
  a = features.features_fn(NET, 64, seed=7)(X)
  b = features.features_fn(NET, 64, seed=7)
  parts = [b(X[:2]), b(X[2:])]
  for j in range(2):
    np.testing.assert_allclose(
        np.concatenate([p[j].numpy() for p in parts]), a[j].numpy(),
        rtol=1e-12)
  c = features.features_fn(NET, 64, seed=8)(X)
  assert not np.allclose(a[0].numpy(), c[0].numpy())
  f32 = features.features_fn(NET, 64, seed=7)(X.astype(np.float32))
  assert f32[0].dtype == tf.float32 and a[0].dtype == tf.float64
  np.testing.assert_allclose(f32[0].numpy(), a[0].numpy(), rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_allclose(f32[1].numpy(), a[1].numpy(), rtol=1e-4,
                             atol=1e-5)


def test_get_one_kind_equals_the_pair():
  phi = features.features_fn(NET, 32, seed=1)
  both = phi(X)
  np.testing.assert_allclose(phi(X, 'nngp').numpy(), both[0].numpy())
  np.testing.assert_allclose(phi(X, 'ntk').numpy(), both[1].numpy())


def test_hyperparameter_variables_are_read_at_call_time():
  w = tf.Variable(1.0, dtype=tf.float64)
  net = stax.serial(stax.Dense(4, W_std=w), stax.Relu(), stax.Dense(1, W_std=w))
  phi = features.features_fn(net, 32)
  before = phi(X, 'nngp').numpy()
  w.assign(2.0)
  after = phi(X, 'nngp').numpy()
  # Two layers scale by W_std each: the features scale by 4.
  np.testing.assert_allclose(after, 4 * before, rtol=1e-12)


def test_float32_inputs_of_a_deep_cnn_stay_finite_and_close():
  net = stax.serial(stax.Conv(4, (3, 3), padding='SAME'), stax.Relu(),
                    stax.AvgPool((2, 2)), stax.Conv(4, (3, 3)), stax.Erf(),
                    stax.GlobalAvgPool(), stax.Dense(1))
  x = np.random.RandomState(1).randn(2, 6, 6, 3)
  phi = features.features_fn(net, 64, seed=2)
  a64, b64 = phi(x)
  a32, b32 = phi(x.astype(np.float32))
  np.testing.assert_allclose(a32.numpy(), a64.numpy(), rtol=1e-3, atol=1e-4)
  np.testing.assert_allclose(b32.numpy(), b64.numpy(), rtol=1e-3, atol=1e-4)


def test_feature_map_is_compiled_once_per_dtype_and_shared_across_seeds():
  from nt_gp.features import feature_map  # pylint: disable=g-import-not-at-top
  net = stax.serial(stax.Dense(3), stax.Relu(), stax.Dense(1))
  for seed in range(3):
    features.features_fn(net, 16, seed=seed)(X)
  fns = [v[0] for k, v in feature_map._COMPILED.items()  # pylint: disable=protected-access
         if v[1] is stax.describe(net)]
  assert len(fns) == 1
  assert fns[0].experimental_get_tracing_count() == 1


def test_truncated_hermite_series_refuses_instead_of_biasing():
  net = stax.serial(stax.Dense(4, W_std=3.), stax.Erf(), stax.Dense(1))
  x = np.random.RandomState(0).randn(3, 2)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='raise hermite_degree'):
    features.features_fn(net, 16, activation_method='hermite',
                         hermite_degree=4)(x)
  # A looser tolerance, smaller variances, or random features: no error.
  features.features_fn(net, 16, activation_method='hermite',
                       hermite_degree=4, hermite_tolerance=0.9)(x)
  small = stax.serial(stax.Dense(4, W_std=0.5), stax.Erf(), stax.Dense(1))
  features.features_fn(small, 16, activation_method='hermite',
                       hermite_degree=16)(x)
  features.features_fn(net, 16)(x)


def test_feature_dim_per_nonlinearity():
  net = stax.serial(stax.Dense(4, b_std=0.1), stax.Relu(), stax.Dense(4),
                    stax.Erf(), stax.Dense(1, b_std=0.1))
  phi = features.features_fn(net, (8, 24), input_shape=(3,))
  # The last nonlinearity's width (24) plus the readout's bias coordinate;
  # the NTK's sketch_dim defaults to the last width.
  assert phi.nngp_dim == 25
  assert phi.ntk_dim == 25 + 24
  with pytest.raises(ValueError, match='`feature_dim` must be >= 1'):
    features.features_fn(net, (8, 0))
  with pytest.raises(ValueError, match='empty'):
    features.features_fn(net, ())


def test_batched_call_equals_one_call():
  phi = features.features_fn(NET, 16, seed=3)
  whole = phi(X)
  parts = phi(X, batch_size=2)
  for a, b in zip(whole, parts):
    np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-12)
  with pytest.raises(ValueError, match='batch_size'):
    phi(X, batch_size=0)
