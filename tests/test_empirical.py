"""Empirical NNGP/NTK: Keras models, nested params/outputs, dtypes, `get`,
NTK-vector products, AUTO, the structured-derivative rules, and bad input.

References are explicit Jacobians (`tf.GradientTape.jacobian`, contracted
with numpy) and hand-computed kernels of linear models.
"""
import keras
import numpy as np
import pytest
import tensorflow as tf

import nt_gp
from nt_gp.empirical import structured

IMPLS = (1, 2, 3)


def _explicit_jacobian(fn, flat_params, x):
  """`(*f(x).shape, P)` Jacobian by `tape.jacobian` (no pfor)."""
  flat = [tf.convert_to_tensor(p) for p in flat_params]
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(flat)
    fx = fn(flat, x)
  js = tape.jacobian(fx, flat, experimental_use_pfor=False,
                     unconnected_gradients=tf.UnconnectedGradients.ZERO)
  shape = tuple(fx.shape)
  return np.concatenate([np.reshape(j, shape + (-1,)) for j in js], -1)


def _jjt(j1, j2):
  """Full kernel `(N1, N2, C, C)` of Jacobians `(N, C, P)`."""
  return np.einsum('ncp,mdp->nmcd', j1, j2)


def _rel(a, b):
  return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


# -- Keras -----------------------------------------------------------------
@pytest.fixture(scope='module')
def cnn():
  keras.utils.set_random_seed(1)
  inp = keras.Input((6, 6, 2))
  h = keras.layers.Conv2D(3, 3, padding='same', activation='relu')(inp)
  h = keras.layers.AveragePooling2D(2)(h)
  h = keras.layers.Conv2D(4, 2, padding='valid', activation='tanh')(h)
  h = keras.layers.MaxPooling2D(2)(h)
  h = keras.layers.Flatten()(h)
  out = keras.layers.Dense(2)(h)
  return keras.Model(inp, out)


@pytest.fixture(scope='module')
def cnn_data(cnn):
  rng = np.random.RandomState(0)
  x1 = rng.randn(3, 6, 6, 2).astype(np.float32)
  x2 = rng.randn(2, 6, 6, 2).astype(np.float32)
  fn = lambda flat, x: cnn.stateless_call(flat, [], x)[0]
  weights = [v.value for v in cnn.trainable_variables]
  full = _jjt(_explicit_jacobian(fn, weights, x1),
              _explicit_jacobian(fn, weights, x2))
  return x1, x2, full


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('vmap_axes', [None, 0])
def test_keras_cnn_matches_explicit_jacobians(cnn, cnn_data, impl, vmap_axes):
  x1, x2, full = cnn_data
  ntk = nt_gp.empirical_ntk_fn(cnn, (), (), vmap_axes, impl)(x1, x2)
  assert ntk.shape == (3, 2, 2, 2) and ntk.dtype == tf.float32
  assert _rel(ntk, full) < 1e-5
  traced = nt_gp.empirical_ntk_fn(cnn, vmap_axes=vmap_axes,
                                  implementation=impl)(x1, x2)
  assert _rel(traced, np.einsum('nmcc->nm', full) / 2) < 1e-5


def test_keras_params_default_and_explicit(cnn, cnn_data):
  x1, x2, full = cnn_data
  ntk_fn = nt_gp.empirical_ntk_fn(cnn, ())
  weights = [v.value for v in cnn.trainable_variables]
  np.testing.assert_allclose(ntk_fn(x1, x2, weights), ntk_fn(x1, x2),
                             rtol=1e-6)
  doubled = [2. * w for w in weights]
  fn = lambda flat, x: cnn.stateless_call(flat, [], x)[0]
  expected = _jjt(_explicit_jacobian(fn, doubled, x1),
                  _explicit_jacobian(fn, doubled, x2))
  assert _rel(ntk_fn(x1, x2, doubled), expected) < 1e-5
  assert _rel(ntk_fn(x1, x2, doubled), full) > 1e-2


def test_keras_nngp_is_output_outer_product(cnn, cnn_data):
  x1, x2, _ = cnn_data
  f1, f2 = np.asarray(cnn(x1)), np.asarray(cnn(x2))
  nngp = nt_gp.empirical_nngp_fn(cnn, ())(x1, x2)
  np.testing.assert_allclose(nngp, np.einsum('nc,md->nmcd', f1, f2),
                             rtol=1e-5, atol=1e-6)


def test_unbuilt_keras_model_is_rejected():
  model = keras.Sequential([keras.layers.Dense(3)])
  with pytest.raises(ValueError, match='not been built'):
    nt_gp.empirical_ntk_fn(model)


def test_keras_params_must_match_variables(cnn, cnn_data):
  x1, _, _ = cnn_data
  weights = [v.value for v in cnn.trainable_variables]
  with pytest.raises(ValueError, match='trainable variables'):
    nt_gp.empirical_ntk_fn(cnn)(x1, None, weights[:-1])
  with pytest.raises(ValueError, match='shape'):
    nt_gp.empirical_ntk_fn(cnn)(x1, None, weights[:-1] + [weights[0]])


# -- functions over nested params ------------------------------------------
def _mlp(params, x):
  h = tf.tanh(x @ params['layers'][0]['w'] + params['layers'][0]['b'])
  return h @ params['layers'][1]['w'], tf.reduce_sum(h ** 2, -1,
                                                      keepdims=True)


def _mlp_params(dtype):
  rng = np.random.RandomState(3)
  return {'layers': [{'w': rng.randn(4, 5).astype(dtype),
                      'b': rng.randn(5).astype(dtype)},
                     {'w': rng.randn(5, 3).astype(dtype)}]}


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
@pytest.mark.parametrize('impl', IMPLS)
def test_nested_params_and_outputs(dtype, impl):
  params = _mlp_params(dtype)
  flat = tf.nest.flatten(params)
  x1 = np.random.RandomState(1).randn(3, 4).astype(dtype)
  x2 = np.random.RandomState(2).randn(2, 4).astype(dtype)
  ntk = nt_gp.empirical_ntk_fn(_mlp, (), implementation=impl,
                               vmap_axes=0)(x1, x2, params)
  assert isinstance(ntk, tuple) and len(ntk) == 2
  tol = 1e-5 if dtype == np.float32 else 1e-12
  for k, out in enumerate(ntk):
    fn = lambda fl, x, k=k: _mlp(tf.nest.pack_sequence_as(params, fl), x)[k]
    expected = _jjt(_explicit_jacobian(fn, flat, x1),
                    _explicit_jacobian(fn, flat, x2))
    assert out.dtype == tf.as_dtype(dtype)
    assert _rel(out, expected) < tol


def test_dtype_follows_inputs(cnn, cnn_data):
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  init_fn, apply_fn, _ = stax.serial(stax.Dense(4), stax.Relu(), stax.Dense(1))
  _, params = init_fn(0, (-1, 3))   # float32 weights
  for dtype in (np.float32, np.float64):
    k = nt_gp.empirical_kernel_fn(apply_fn)(np.ones((2, 3), dtype), None,
                                            ('nngp', 'ntk'), params)
    assert k.nngp.dtype == k.ntk.dtype == tf.as_dtype(dtype)
  x1 = cnn_data[0].astype(np.float64)
  assert nt_gp.empirical_ntk_fn(cnn)(x1).dtype == tf.float64


def test_get_variants():
  f = lambda p, x: x @ p
  p = np.array([[1.], [2.]])
  x = np.array([[1., 0.], [0., 1.], [1., 1.]])
  kernel_fn = nt_gp.empirical_kernel_fn(f)
  nngp = np.outer(x @ p, x @ p)
  ntk = x @ x.T
  np.testing.assert_allclose(kernel_fn(x, None, 'nngp', p), nngp)
  k = kernel_fn(x, None, ('ntk', 'nngp'), p)
  assert type(k).__name__ == 'EmpiricalKernel' and k._fields == ('ntk', 'nngp')
  np.testing.assert_allclose(k.ntk, ntk)
  default = kernel_fn(x, None, None, p)
  np.testing.assert_allclose(default.nngp, nngp)
  with pytest.raises(ValueError, match='cov1'):
    kernel_fn(x, None, 'cov1', p)


def test_ntk_vp_matches_kernel_times_vector():
  params = _mlp_params(np.float64)
  f = lambda p, x: _mlp(p, x)[0]
  x1 = np.random.RandomState(1).randn(3, 4)
  x2 = np.random.RandomState(2).randn(2, 4)
  v = np.random.RandomState(4).randn(2, 3)
  flat = tf.nest.flatten(params)
  fn = lambda fl, x: f(tf.nest.pack_sequence_as(params, fl), x)
  full = _jjt(_explicit_jacobian(fn, flat, x1), _explicit_jacobian(fn, flat, x2))
  vp = nt_gp.empirical_ntk_vp_fn(f, x1, x2, params)(v)
  np.testing.assert_allclose(vp, np.einsum('nmcd,md->nc', full, v),
                             rtol=1e-10)


def test_auto_picks_a_timed_implementation():
  params = _mlp_params(np.float64)
  f = lambda p, x: _mlp(p, x)[0]
  x = np.random.RandomState(1).randn(3, 4)
  ntk_fn = nt_gp.empirical_ntk_fn(f, implementation=nt_gp.NtkImplementation.AUTO)
  k = ntk_fn(x, None, params)
  assert ntk_fn.implementation_used in (1, 2, 3)
  assert set(ntk_fn.timings) == {1, 2, 3}
  assert ntk_fn.implementation_used == min(ntk_fn.timings,
                                           key=ntk_fn.timings.get)
  ref = nt_gp.empirical_ntk_fn(f, implementation=1)(x, None, params)
  np.testing.assert_allclose(k, ref, rtol=1e-12)


# -- structured derivative rules -------------------------------------------
def _conv_explicit(p, x):
  h = tf.nn.conv2d(x, p['w1'], strides=[1, 2, 1, 1],
                   padding=[[0, 0], [1, 2], [0, 1], [0, 0]])
  h = tf.nn.conv2d(tf.tanh(h), p['w2'], strides=1, padding='SAME')
  return tf.reduce_mean(h, axis=(1, 2))


def _conv1d(p, x):
  h = tf.nn.relu(tf.nn.conv1d(x, p[0], stride=1, padding='VALID'))
  return tf.reduce_sum(h, axis=1) @ p[1]


def _matmul_weight_first(p, x):
  h = tf.tanh(tf.transpose(tf.matmul(p[0], x, transpose_b=True)))
  return h @ p[1]


def _batch_matmul(p, x):
  h = tf.sin(tf.matmul(x, p[0]))
  return tf.reduce_sum(tf.matmul(h, p[1], transpose_b=True), 1)


_RNG = np.random.RandomState(5)
_RULES = {
    'conv2d': (_conv_explicit,
               {'w1': _RNG.randn(3, 2, 3, 4), 'w2': _RNG.randn(2, 2, 4, 2)},
               (7, 6, 3)),
    'conv1d': (_conv1d, [_RNG.randn(3, 3, 4), _RNG.randn(4, 2)], (9, 3)),
    'matmul': (_matmul_weight_first, [_RNG.randn(5, 3), _RNG.randn(5, 2)],
               (3,)),
    'batch_matmul': (_batch_matmul, [_RNG.randn(3, 5), _RNG.randn(2, 5)],
                     (4, 3)),
}


@pytest.mark.parametrize('rule', sorted(_RULES))
def test_structured_rules_match_explicit_jacobians(rule, monkeypatch):
  f, params, shape = _RULES[rule]
  found = []
  find_use = structured._find_use
  monkeypatch.setattr(structured, '_worth_it', lambda *a: True)
  monkeypatch.setattr(structured, '_find_use',
                      lambda p: found.append(find_use(p)) or found[-1])
  x1 = np.random.RandomState(6).randn(3, *shape)
  x2 = np.random.RandomState(7).randn(2, *shape)
  flat = tf.nest.flatten(params)
  fn = lambda fl, x: f(tf.nest.pack_sequence_as(params, fl), x)
  expected = _jjt(_explicit_jacobian(fn, flat, x1),
                  _explicit_jacobian(fn, flat, x2))
  for vmap_axes in (None, 0):
    found.clear()
    ntk = nt_gp.empirical_ntk_fn(f, (), vmap_axes=vmap_axes,
                                 implementation=3)(x1, x2, params)
    assert _rel(ntk, expected) < 1e-12
    assert found and all(u is not None for u in found), found


def test_weight_used_twice_falls_back():
  f = lambda p, x: tf.tanh(x @ p) @ tf.transpose(p)
  p = np.random.RandomState(8).randn(3, 3)
  x = np.random.RandomState(9).randn(2, 3)
  expected = _jjt(*[_explicit_jacobian(lambda fl, x: f(fl[0], x), [p], x)] * 2)
  ntk = nt_gp.empirical_ntk_fn(f, (), implementation=3)(x, None, p)
  assert _rel(ntk, expected) < 1e-12


# -- bad input ---------------------------------------------------------------
def _linear(p, x):
  return x @ p


def test_mismatched_non_batch_shapes():
  with pytest.raises(ValueError, match='same shape apart from the batch'):
    nt_gp.empirical_ntk_fn(_linear)(np.ones((2, 3)), np.ones((2, 4)),
                                    np.ones((3, 1)))
  with pytest.raises(ValueError, match='same shape apart from the batch'):
    nt_gp.empirical_nngp_fn(_linear)(np.ones((2, 3)), np.ones((2, 4)),
                                     np.ones((3, 1)))


def test_axes_out_of_range():
  x, p = np.ones((2, 3)), np.ones((3, 1))
  with pytest.raises(ValueError, match='trace_axes.*out of range'):
    nt_gp.empirical_ntk_fn(_linear, trace_axes=(2,))(x, None, p)
  with pytest.raises(ValueError, match='diagonal_axes.*out of range'):
    nt_gp.empirical_nngp_fn(_linear, diagonal_axes=(-3,))(x, None, p)


def test_axes_overlapping_or_malformed():
  with pytest.raises(ValueError, match='both'):
    nt_gp.empirical_ntk_fn(_linear, trace_axes=(-1,), diagonal_axes=(1,))(
        np.ones((2, 3)), None, np.ones((3, 1)))
  with pytest.raises(ValueError, match='both'):
    nt_gp.empirical_kernel_fn(_linear, trace_axes=(0,), diagonal_axes=(0,))
  with pytest.raises(TypeError, match='trace_axes'):
    nt_gp.empirical_ntk_fn(_linear, trace_axes='last')


def test_bad_implementation_and_f():
  with pytest.raises(ValueError, match='implementation'):
    nt_gp.empirical_ntk_fn(_linear, implementation=4)
  with pytest.raises(TypeError, match='implementation'):
    nt_gp.empirical_ntk_fn(_linear, implementation='fast')
  with pytest.raises(TypeError, match='Keras model'):
    nt_gp.empirical_ntk_fn(42)
  with pytest.raises(ValueError, match='params'):
    nt_gp.empirical_ntk_fn(_linear)(np.ones((2, 3)), None, None)


def test_ntk_vector_products_in_chunks(monkeypatch):
  """Columns vectorised a few at a time give the same kernel."""
  from nt_gp.empirical import ntvp  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(ntvp, '_CHUNK_BYTES', 1)   # one column per chunk
  params = _mlp_params(np.float64)
  f = lambda p, x: _mlp(p, x)[0]
  x1 = np.random.RandomState(1).randn(3, 4)
  x2 = np.random.RandomState(2).randn(2, 4)
  flat = tf.nest.flatten(params)
  fn = lambda fl, x: f(tf.nest.pack_sequence_as(params, fl), x)
  full = _jjt(_explicit_jacobian(fn, flat, x1), _explicit_jacobian(fn, flat, x2))
  for vmap_axes in (None, 0):
    ntk = nt_gp.empirical_ntk_fn(f, (), vmap_axes=vmap_axes,
                                 implementation=2)(x1, x2, params)
    assert _rel(ntk, full) < 1e-12


def test_docstring_examples_run():
  import doctest  # pylint: disable=g-import-not-at-top
  import importlib  # pylint: disable=g-import-not-at-top
  for name in ('nt_gp.empirical', 'nt_gp.empirical.kernel',
               'nt_gp.empirical.nngp', 'nt_gp.empirical.ntk',
               'nt_gp.empirical.ntvp', 'nt_gp.monte_carlo',
               'nt_gp.linearize'):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, name
    assert result.failed == 0, name
