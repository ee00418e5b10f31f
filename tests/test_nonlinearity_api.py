"""Finite-width functions, dtypes and argument checks of the nonlinearities,
LayerNorm and Dropout."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import special

from nt_gp import stax

_X = np.linspace(-2.5, 2.5, 11)

# layer, numpy reference of its activation
APPLY = {
    'gelu': (stax.Gelu(), lambda x: x * 0.5 * (1 + special.erf(x / 2**0.5))),
    'gelu_tanh': (stax.Gelu(approximate=True), lambda x: 0.5 * x * (1 + np.tanh(
        (2 / np.pi)**0.5 * (x + 0.044715 * x**3)))),
    'sign': (stax.Sign(), np.sign),
    'sin': (stax.Sin(1.2, 0.8, 0.3), lambda x: 1.2 * np.sin(0.8 * x + 0.3)),
    'cos': (stax.Cos(0.9, 1.1, 0.2), lambda x: 0.9 * np.cos(1.1 * x + 0.2)),
    'gabor': (stax.Gabor(), lambda x: np.exp(-x**2) * np.sin(x)),
    'rbf': (stax.Rbf(0.7), lambda x: 2**0.5 * np.sin(1.4**0.5 * x + np.pi / 4)),
    'exp': (stax.Exp(0.8, 0.5), lambda x: 0.8 * np.exp(0.5 * x)),
    'gaussian': (stax.Gaussian(0.9, -0.6), lambda x: 0.9 * np.exp(-0.6 * x**2)),
    'monomial': (stax.Monomial(3), lambda x: x**3),
    'monomial0': (stax.Monomial(0), np.ones_like),
    'rectified_monomial': (stax.RectifiedMonomial(2),
                           lambda x: np.where(x >= 0, x**2, 0.)),
    'step': (stax.RectifiedMonomial(0), lambda x: (x >= 0).astype(float)),
    'polynomial': (stax.Polynomial([0.3, -0.5, 0.4, 0.1]),
                   np.polynomial.Polynomial([0.3, -0.5, 0.4, 0.1])),
    'hermite': (stax.Hermite(3), lambda x: (x**3 - 3 * x) / 6**0.5),
    'elementwise': (stax.Elementwise(tf.tanh, lambda c, v1, v2: c), np.tanh),
    'numerical': (stax.ElementwiseNumerical(tf.tanh, deg=5), np.tanh),
    'dropout_test': (stax.Dropout(0.5, mode='test'), lambda x: x),
}


@pytest.mark.parametrize('name', sorted(APPLY))
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_apply_fn(name, dtype):
  (_, apply_fn, _), ref = APPLY[name]
  x = _X.astype(dtype).reshape(1, -1)
  out = apply_fn((), x)
  assert out.dtype == dtype and out.shape == x.shape
  np.testing.assert_allclose(out, ref(_X).reshape(1, -1),
                             rtol=1e-5 if dtype == np.float32 else 1e-12,
                             atol=1e-6 if dtype == np.float32 else 1e-12)


def test_exp_normalized_has_no_finite_width_function():
  with pytest.raises(NotImplementedError, match='finite-width'):
    stax.ExpNormalized()[1]((), _X)


def test_dropout_apply_fn():
  x = np.ones((200, 50))
  _, apply_fn, _ = stax.Dropout(0.8)
  out = apply_fn((), x, rng=3).numpy()
  kept = out != 0
  assert abs(kept.mean() - 0.8) < 0.02
  np.testing.assert_allclose(out[kept], 1 / 0.8)
  np.testing.assert_array_equal(apply_fn((), x, rng=3), out)   # same key
  with pytest.raises(ValueError, match='rng'):
    apply_fn((), x)
  with pytest.raises(TypeError, match='`rng` must be an int'):
    apply_fn((), x, rng='abc')
  # In a network the key is split between layers.
  init_fn, apply_net, _ = stax.serial(stax.Dense(4), stax.Dropout(0.5))
  _, params = init_fn(0, (3, 2))
  assert apply_net(params, np.ones((3, 2)), rng=1).shape == (3, 4)


@pytest.mark.parametrize('axis', [-1, (1, 2)])
def test_layer_norm_apply_fn(axis):
  x = np.random.RandomState(0).randn(3, 4, 5) * 3 + 1
  _, apply_fn, _ = stax.LayerNorm(axis=axis, eps=0.)
  out = apply_fn((), x).numpy()
  np.testing.assert_allclose(out.mean(axis=axis), 0., atol=1e-12)
  np.testing.assert_allclose(out.std(axis=axis), 1., rtol=1e-12)
  mask = np.zeros((3, 4, 1), bool)
  mask[:, -1] = True
  out = apply_fn((), x, mask=mask).numpy()
  ref = x[:, :-1]
  ref = (ref - ref.mean(axis=axis, keepdims=True)) / ref.std(
      axis=axis, keepdims=True)
  np.testing.assert_allclose(out[:, :-1], ref, rtol=1e-12, atol=1e-12)


KERNEL_LAYERS = {
    'gelu': stax.Gelu, 'sign': stax.Sign, 'sin': lambda: stax.Sin(1.2, 0.8),
    'cos': stax.Cos, 'gabor': stax.Gabor, 'rbf': stax.Rbf, 'exp': stax.Exp,
    'exp_normalized': stax.ExpNormalized, 'gaussian': stax.Gaussian,
    'monomial': lambda: stax.Monomial(2),
    'rectified_monomial': lambda: stax.RectifiedMonomial(1),
    'polynomial': lambda: stax.Polynomial([0.1, 1., 0.2]),
    'hermite': lambda: stax.Hermite(2),
    'numerical': lambda: stax.ElementwiseNumerical(tf.sin, deg=10),
    'elementwise': lambda: stax.Elementwise(
        tf.sin, lambda c, v1, v2: tf.exp(-(v1 + v2) / 2) * tf.sinh(c)),
    'layernorm': stax.LayerNorm, 'dropout': lambda: stax.Dropout(0.6),
}


@pytest.mark.filterwarnings('ignore:Hermite')
@pytest.mark.parametrize('name', sorted(KERNEL_LAYERS))
def test_float32_follows_float64(name):
  """float32 inputs give float32 kernels close to the float64 ones, on a
  spatial input (full-spatial layout)."""
  _, _, kernel_fn = stax.serial(stax.Dense(8, 1.2, 0.1), KERNEL_LAYERS[name](),
                                stax.Dense(1, 0.9, 0.1))
  x = np.random.RandomState(1).randn(2, 3, 2)
  k64 = kernel_fn(x, None, ('nngp', 'ntk'))
  k32 = kernel_fn(x.astype(np.float32), None, ('nngp', 'ntk'))
  for a, b in zip(k32, k64):
    assert a.dtype == tf.float32 and b.dtype == tf.float64
    assert a.shape == (2, 2, 3, 3)
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5 * np.abs(b).max())


def test_hermite_warning_names_the_callers_line():
  """Its unit-variance warning points at the line calling the kernel (so
  Python's default filter shows it once per such line), not into nt_gp."""
  _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Hermite(2))
  with pytest.warns(UserWarning, match='Hermite') as rec:
    kernel_fn(np.ones((2, 3)), None, 'nngp')
  assert {w.filename for w in rec} == {__file__}, [w.filename for w in rec]


def test_hyperparameters_as_variables_of_another_dtype():
  a = tf.Variable(1.2, dtype=tf.float32)
  _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Sin(a, 0.8, 0.3))
  ref = stax.serial(stax.Dense(1), stax.Sin(1.2, 0.8, 0.3))[2]
  x = np.random.RandomState(0).randn(3, 2)
  np.testing.assert_allclose(kernel_fn(x, get='nngp'), ref(x, get='nngp'),
                             rtol=1e-7)


def test_repeat_counts():
  """`repeat`'s count: any int (numpy's too); a float is the wrong kind, a
  negative one the wrong value."""
  block = stax.serial(stax.Dense(3, W_std=1.2), stax.Relu())
  x = np.random.RandomState(0).randn(3, 2)
  np.testing.assert_allclose(
      stax.serial(stax.repeat(block, np.int64(2)), stax.Dense(1))[2](
          x, None, 'nngp'),
      stax.serial(block, block, stax.Dense(1))[2](x, None, 'nngp'),
      rtol=1e-12)
  with pytest.raises(TypeError, match='`n` must be an int, got 2.0'):
    stax.repeat(block, 2.)
  with pytest.raises(ValueError, match='`n` must be an int >= 0, got -1'):
    stax.repeat(block, -1)


@pytest.mark.parametrize('make, error, match', [
    (lambda: stax.Monomial(-1), ValueError, 'degree'),
    (lambda: stax.Monomial(2.), TypeError, 'degree'),
    (lambda: stax.RectifiedMonomial(True), TypeError, 'degree'),
    (lambda: stax.Hermite(-2), ValueError, 'degree'),
    (lambda: stax.Rbf(-1.), ValueError, 'gamma'),
    (lambda: stax.Sin(a='x'), TypeError, '`a`'),
    (lambda: stax.Sin(b=np.ones(2)), ValueError, 'scalar'),
    (lambda: stax.Exp(b=float('nan')), ValueError, 'finite'),
    (lambda: stax.ExpNormalized(do_clip=1), TypeError, 'do_clip'),
    (lambda: stax.Gelu(approximate='yes'), TypeError, 'approximate'),
    (lambda: stax.Polynomial('abc'), TypeError, 'coef'),
    (lambda: stax.Polynomial(np.ones((2, 2))), ValueError, 'coef'),
    (lambda: stax.Elementwise(), ValueError, 'nngp_fn'),
    (lambda: stax.Elementwise(fn=3), TypeError, 'fn'),
    (lambda: stax.ElementwiseNumerical(tf.sin, deg=0), ValueError, 'deg'),
    (lambda: stax.ElementwiseNumerical(tf.sin, deg=2.5), TypeError, 'deg'),
    (lambda: stax.ElementwiseNumerical('sin', deg=3), TypeError, 'fn'),
    (lambda: stax.ElementwiseNumerical(np.tanh, deg=3), TypeError,
     '`fn` is numpy.tanh.*pass tf.math.tanh'),
    (lambda: stax.ElementwiseNumerical(tf.tanh, deg=3, df=np.cos), TypeError,
     '`df` is numpy.cos.*tf.math.cos'),
    (lambda: stax.Elementwise(tf.sin, np.sinh), TypeError,
     '`nngp_fn` is numpy.sinh'),
    (lambda: stax.LayerNorm(axis='a'), TypeError, 'axis'),
    (lambda: stax.LayerNorm(axis=(-1, -1)), ValueError, 'repeats'),
    (lambda: stax.LayerNorm(eps=-1.), ValueError, 'eps'),
    (lambda: stax.Dropout(0.), ValueError, 'rate'),
    (lambda: stax.Dropout(1.5), ValueError, 'rate'),
    (lambda: stax.Dropout(0.5, mode='eval'), ValueError, 'mode'),
])
def test_bad_arguments(make, error, match):
  with pytest.raises(error, match=match):
    make()


def _kernel(*layers, x=None):
  x = np.ones((2, 3)) if x is None else x
  return stax.serial(*layers)[2](x, None, 'nngp')


def test_bad_uses_of_kernel_fn():
  with pytest.raises(ValueError, match='Gaussian'):
    _kernel(stax.Dense(1), stax.Sin(), stax.Gelu())
  with pytest.raises(NotImplementedError, match='ElementwiseNumerical'):
    _kernel(stax.Dense(1), stax.Elementwise(fn=tf.sin))
  with pytest.raises(ValueError, match='elementwise'):
    _kernel(stax.Dense(1), stax.Elementwise(
        nngp_fn=lambda c, v1, v2: tf.reshape(c, [-1])))
  with pytest.raises(ValueError, match='channel'):
    _kernel(stax.Dense(1), stax.LayerNorm(axis=1), x=np.ones((2, 3, 4)))
  with pytest.raises(ValueError, match='out of range'):
    _kernel(stax.Dense(1), stax.LayerNorm(axis=(-1, 3)))
  with pytest.raises(NotImplementedError, match='Gaussian'):
    _kernel(stax.Dense(1), stax.Relu(), stax.LayerNorm())
  with pytest.raises(ValueError, match='input layer'):
    _kernel(stax.Dropout(0.5))


@pytest.mark.parametrize('make, name', [
    (lambda: stax.ElementwiseNumerical(lambda z: 2 * np.tanh(z), deg=5),
     'fn'),
    (lambda: stax.ElementwiseNumerical(
        tf.tanh, deg=5, df=lambda z: 1 - np.tanh(z) ** 2), 'df'),
    (lambda: stax.Elementwise(tf.sin, lambda c, v1, v2: np.exp(
        -(v1 + v2) / 2) * np.sinh(c)), 'nngp_fn'),
    (lambda: stax.Elementwise(
        tf.sin, lambda c, v1, v2: tf.exp(-(v1 + v2) / 2) * tf.sinh(c),
        lambda c, v1, v2: np.exp(-(v1 + v2) / 2) * np.cosh(c)), 'd_nngp_fn'),
])
def test_numpy_functions_named_when_the_kernel_is_traced(make, name):
  """A function using NumPy cannot run on the graph tensors a kernel is
  computed with: a TypeError naming the argument, not TensorFlow's
  NotImplementedError from deep inside the quadrature. (The NNGP alone
  does not use the derivatives.)"""
  for get in ['ntk'] + (['nngp'] if name in ('fn', 'nngp_fn') else []):
    with pytest.raises(TypeError, match=f'`{name}` .* cannot run on '
                                        'TensorFlow tensors'):
      stax.serial(stax.Dense(2), make())[2](np.ones((3, 2)), None, get)


def test_self_covariances_stay_exact_through_sign():
  """x2=None: self-covariances equal the variances after repeated Sign."""
  d = stax.Dense(4, 1.3, 0.2)
  _, _, kernel_fn = stax.serial(d, stax.Sign(), d, stax.Sign(), d, stax.Sign())
  k = kernel_fn(np.random.RandomState(0).randn(4, 3), None)
  np.testing.assert_array_equal(np.diag(k.nngp), k.cov1)
  np.testing.assert_array_equal(k.cov1, np.ones(4))


def test_dropout_kernel_rule():
  """Train mode scales self-covariances by 1/rate; test mode is the identity."""
  x = np.random.RandomState(0).randn(3, 4, 2)
  base = stax.serial(stax.Dense(2), stax.Relu(), stax.Dense(2))[2]
  train = stax.serial(stax.Dense(2), stax.Relu(), stax.Dense(2),
                      stax.Dropout(0.25))[2]
  test = stax.serial(stax.Dense(2), stax.Relu(), stax.Dense(2),
                     stax.Dropout(0.25, mode='test'))[2]
  k0, k1 = base(x, None), train(x, None)
  self_entries = np.eye(3)[:, :, None, None] * np.eye(4)
  np.testing.assert_allclose(k1.nngp, k0.nngp * (1 + 3 * self_entries))
  np.testing.assert_allclose(k1.ntk, k0.ntk * (1 + 3 * self_entries))
  cov_self = np.eye(4)[None]
  np.testing.assert_allclose(k1.cov1, k0.cov1 * (1 + 3 * cov_self))
  np.testing.assert_allclose(test(x, None, 'nngp'), k0.nngp)
  # Different batches: the cross-covariance is unchanged.
  x2 = np.random.RandomState(1).randn(3, 4, 2)
  np.testing.assert_allclose(train(x, x2, 'nngp'), base(x, x2, 'nngp'))
  np.testing.assert_allclose(train(x, x.copy(), 'nngp'), k1.nngp)
