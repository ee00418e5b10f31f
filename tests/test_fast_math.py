"""`nt_gp.ops.fast_math` against numpy's (correctly rounded to ~1 ulp)
inverse trigonometric functions, on dense grids and the interval ends."""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp.ops import fast_math


def _grid(dtype):
  rng = np.random.RandomState(0)
  x = np.concatenate([np.linspace(-1, 1, 100001), rng.uniform(-1, 1, 50000),
                      # around the reduction's switch at |x| = 1/2 and the ends
                      0.5 + np.arange(-50, 51) * 1e-15,
                      -0.5 + np.arange(-50, 51) * 1e-15,
                      1 - np.arange(0, 50) * 1e-15, -1 + np.arange(0, 50) * 1e-15,
                      [0., -0., 1., -1.]])
  return x.astype(dtype)


@pytest.mark.parametrize('name', ['acos', 'asin'])
def test_float64_within_rounding(name):
  x = _grid(np.float64)
  got = getattr(fast_math, name)(tf.constant(x)).numpy()
  want = getattr(np, 'arc' + name[1:])(x)
  # numpy's own results are within 1 ulp of the true value: 2 ulp between.
  ulp = np.spacing(np.maximum(np.abs(want), np.finfo(np.float64).tiny))
  assert np.max(np.abs(got - want) / ulp) <= 2
  assert got.dtype == np.float64


@pytest.mark.parametrize('name', ['acos', 'asin'])
def test_float32_absolute_error(name):
  x = _grid(np.float32)
  got = getattr(fast_math, name)(tf.constant(x)).numpy()
  want = getattr(np, 'arc' + name[1:])(x.astype(np.float64))
  # A few float32 ulp of values up to pi (ulp 2.4e-7 at 2).
  assert np.max(np.abs(got - want)) < 5e-7
  assert got.dtype == np.float32


def test_atan2_float32_all_quadrants():
  rng = np.random.RandomState(1)
  y = rng.normal(size=20000).astype(np.float32)
  x = rng.normal(size=20000).astype(np.float32)
  y[:4], x[:4] = [0., 1., -1., 0.], [0., 0., 0., -1.]
  got = fast_math.atan2(tf.constant(y), tf.constant(x)).numpy()
  want = np.arctan2(y.astype(np.float64), x.astype(np.float64))
  assert np.max(np.abs(got - want)) < 4e-7
  assert got[0] == 0.


@pytest.mark.parametrize('name', ['acos', 'asin'])
def test_clips_outside_the_interval(name):
  got = getattr(fast_math, name)(tf.constant([1.5, -2.], tf.float64)).numpy()
  want = getattr(np, 'arc' + name[1:])(np.array([1., -1.]))
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
