"""The feature GP's noise fit and normal equations against dense references.

`nt_gp.features.noise_fit` evaluates the log marginal likelihood and its
derivative in ``log σ²`` with LAPACK: the values must equal the dense GP's
(scipy, float64) and the `FeatureRegression` Cholesky path to 1e-10, the
derivative the dense likelihood's finite differences, and the fit its
maximiser. float32 block products summed in float64 are compared with the
float64 normal equations.
"""
import math

import numpy as np
import pytest
import scipy.stats

from nt_gp import features
from nt_gp.features import noise_fit


def _problem(n, m, outputs, seed=0):
  rs = np.random.RandomState(seed)
  phi = rs.randn(n, m) / np.sqrt(m)
  w = rs.randn(m, outputs)
  y = phi @ w + 0.3 * rs.randn(n, outputs)
  return phi, y


def _dense_lml(phi, y, noise):
  k = phi @ phi.T + noise * np.eye(len(phi))
  return sum(scipy.stats.multivariate_normal(np.zeros(len(k)), k).logpdf(
      y[:, j]) for j in range(y.shape[1]))


def _evaluate(phi, y, noise):
  return noise_fit.evaluate(phi.T @ phi, phi.T @ y, (y ** 2).sum(0),
                            len(phi), noise)


@pytest.mark.parametrize('n, m, outputs', [(80, 12, 1), (80, 12, 2),
                                           (15, 30, 2)])
def test_value_and_slope_equal_the_dense_likelihood(n, m, outputs):
  # N > m and N < m (the (N - m) log σ² term changes sign), several outputs.
  phi, y = _problem(n, m, outputs)
  for noise in (0.02, 0.3, 4.):
    e = _evaluate(phi, y, noise)
    np.testing.assert_allclose(e.value, _dense_lml(phi, y, noise),
                               rtol=1e-10)
    reg = features.FeatureRegression(features.NormalEquations.of(phi, y),
                                      noise)
    np.testing.assert_allclose(e.value, float(reg.log_marginal_likelihood()),
                               rtol=1e-10)
    h = 1e-4      # central differences in t = log σ²
    fd = (_dense_lml(phi, y, noise * math.exp(h)) -
          _dense_lml(phi, y, noise * math.exp(-h))) / (2 * h)
    np.testing.assert_allclose(e.slope, fd, rtol=1e-6, atol=1e-6)


def test_fixed_point_of_the_update_is_the_maximiser():
  phi, y = _problem(400, 20, 2)
  reg = features.FeatureRegression(features.NormalEquations.of(phi, y), 1.)
  best = reg.fit_noise()
  assert reg.noise_variance == best
  e = _evaluate(phi, y, best)
  np.testing.assert_allclose(e.update, best, rtol=2e-4)
  # The dense likelihood is lower 1% either side.
  lml = _dense_lml(phi, y, best)
  assert _dense_lml(phi, y, best * 1.01) < lml
  assert _dense_lml(phi, y, best / 1.01) < lml
  # The same maximiser as a bounded scalar search over the dense likelihood.
  res = scipy.optimize.minimize_scalar(
      lambda t: -_dense_lml(phi, y, math.exp(t)), bounds=(-6, 2),
      method='bounded', options={'xatol': 1e-7})
  np.testing.assert_allclose(best, math.exp(res.x), rtol=1e-4)


def test_fewer_data_than_features_fit():
  # Few well-determined parameters: slow fixed-point steps fall back to a
  # bracket and Brent's method.
  phi, y = _problem(15, 30, 1, seed=2)
  reg = features.FeatureRegression(features.NormalEquations.of(phi, y), 1.)
  best = reg.fit_noise()
  res = scipy.optimize.minimize_scalar(
      lambda t: -_dense_lml(phi, y, math.exp(t)), bounds=(-12, 3),
      method='bounded', options={'xatol': 1e-7})
  np.testing.assert_allclose(best, math.exp(res.x), rtol=1e-4)


class _Quadratic:
  """``ℓ(t) = -(t - t0)² / 2`` with a useless fixed-point update."""

  def __init__(self, t0):
    self.t0, self.calls = t0, 0

  def __call__(self, noise):
    self.calls += 1
    t = math.log(noise)
    return noise_fit.Evaluation(-(t - self.t0) ** 2 / 2, self.t0 - t, noise)


def test_search_brackets_without_the_fixed_point_and_stops_at_bounds():
  q = _Quadratic(math.log(3e-3))
  best, count = noise_fit.maximise(q, 1e-6, 10., 1.)
  np.testing.assert_allclose(best, 3e-3, rtol=1e-4)
  assert count == q.calls < 40
  # Maxima beyond the bounds: the bound.
  assert noise_fit.maximise(_Quadratic(math.log(50.)), 1e-6, 10., 1.)[0] == (
      pytest.approx(10.))
  assert noise_fit.maximise(_Quadratic(math.log(1e-9)), 1e-6, 10., 1.)[0] == (
      pytest.approx(1e-6))


def test_indefinite_gram_is_a_clear_error():
  phi, y = _problem(10, 20, 1)
  gram = (phi.T @ phi).astype(np.float32).astype(np.float64)
  gram[0, 0] -= 1.
  with pytest.raises(ValueError, match='not positive definite at noise'):
    noise_fit.evaluate(gram, phi.T @ y, (y ** 2).sum(0), 10, 1e-3)


def test_float32_block_products_summed_in_float64():
  # What float32 features cost in the normal equations: the same features
  # in float32 and float64, 20 blocks of 500 rows.
  rs = np.random.RandomState(0)
  phi = np.abs(rs.randn(10_000, 64)) / 8    # ReLU-like: nonnegative features
  y = phi.sum(1) + 0.1 * rs.randn(10_000)
  ne64, ne32 = features.NormalEquations(64), features.NormalEquations(64)
  for i in range(0, 10_000, 500):
    ne64.add(phi[i:i + 500], y[i:i + 500])
    ne32.add(phi[i:i + 500].astype(np.float32), y[i:i + 500])
  exact = phi.T @ phi
  np.testing.assert_allclose(ne64.gram, exact, rtol=1e-12)
  # The inputs' own rounding to float32 (2^-24 relative) plus float32 block
  # sums of 500 products: relative errors of a few 1e-7.
  rel = np.abs(ne32.gram - exact) / np.abs(exact)
  assert rel.max() < 2e-6
  assert ne32.precision == np.finfo(np.float32).eps
  np.testing.assert_allclose(ne32.rhs, ne64.rhs, rtol=2e-6)
  # Predictions at a noise well above the roundoff agree to ~1e-6.
  a = features.FeatureRegression(ne64, 0.01).predict(phi[:50])[0].numpy()
  b = features.FeatureRegression(ne32, 0.01).predict(phi[:50])[0].numpy()
  np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)
