"""Kernel values checked against numerical integration (scipy), where
neural-tangents 0.6.5 cannot serve as the reference.

After ``Dense(1, W_std=1)`` the pre-activations of two inputs are a centred
Gaussian pair with covariance ``x·x' / C``; a nonlinearity maps it to
``E[f(z1) f(z2)]`` (NNGP) and multiplies the NTK (= the input covariance) by
``E[f'(z1) f'(z2)]``. These expectations are computed here by adaptive
quadrature of the conditional decomposition z2 | z1, independently of nt_gp.

Covered: `RectifiedMonomial` of degree 0-3 including the diagonal entries
(neural-tangents returns NaN there), the full-batch and full-spatial `cov1`
of `Sign` and `RectifiedMonomial` (neural-tangents returns 1 / NaN), and
`Monomial` beyond degree 5.
"""
import math

import numpy as np
import pytest
from scipy import integrate

from nt_gp import stax

_X = np.array([[1.2, 0.3], [0.5, -0.9], [-0.7, 0.8]])
_LIM = 12.


def _phi(t):
  return math.exp(-t * t / 2) / math.sqrt(2 * math.pi)


def _expectation(g, q11, q22, q12):
  """E[g(z1) g(z2)] for a centred Gaussian pair, by nested quadrature (kinks
  of g at 0 are passed to the integrator)."""
  s1, s2 = math.sqrt(q11), math.sqrt(q22)
  rho = max(-1., min(1., q12 / (s1 * s2)))
  cond = s2 * math.sqrt(max(0., 1 - rho * rho))

  def inner(u):
    mu = rho * s2 * u
    if cond < 1e-12:
      return g(mu)
    points = [-mu / cond] if abs(mu / cond) < _LIM else None
    return integrate.quad(lambda t: g(mu + cond * t) * _phi(t), -_LIM, _LIM,
                          points=points, epsabs=1e-13, epsrel=1e-11,
                          limit=200)[0]

  return integrate.quad(lambda u: g(s1 * u) * _phi(u) * inner(u), -_LIM,
                        _LIM, points=[0.], epsabs=1e-13, epsrel=1e-11,
                        limit=200)[0]


def _rectified_monomial(d):
  return lambda x: x**d if x >= 0 else 0.


def _monomial(d):
  return lambda x: x**d


def _input_cov(x):
  return x @ x.T / x.shape[1]


def _assert_close(ours, expected, what):
  np.testing.assert_allclose(ours, expected, rtol=2e-7, atol=1e-9,
                             err_msg=what)


@pytest.mark.parametrize('degree', [0, 1, 2, 3])
def test_rectified_monomial_nngp_ntk_with_diagonal(degree):
  _, _, kernel_fn = stax.serial(stax.Dense(1), stax.RectifiedMonomial(degree))
  k = kernel_fn(_X, None, ('nngp', 'ntk'))
  q = _input_cov(_X)
  f = _rectified_monomial(degree)
  df = (lambda x: 0.) if degree == 0 else (
      lambda x: degree * x**(degree - 1) if x >= 0 else 0.)
  for i, j in [(0, 0), (1, 1), (0, 1), (1, 2)]:
    nngp = _expectation(f, q[i, i], q[j, j], q[i, j])
    _assert_close(k.nngp[i, j], nngp, f'nngp[{i}, {j}]')
    ntk = q[i, j] * _expectation(df, q[i, i], q[j, j], q[i, j])
    _assert_close(k.ntk[i, j], ntk, f'ntk[{i}, {j}]')


@pytest.mark.parametrize('layer, f', [
    (stax.Sign, np.sign),
    (lambda: stax.RectifiedMonomial(2), _rectified_monomial(2)),
], ids=['sign', 'rectified_monomial2'])
def test_full_batch_cov1(layer, f):
  _, _, kernel_fn = stax.serial(stax.Dense(1), layer())
  cov1 = kernel_fn(_X, None, 'cov1', diagonal_batch=False).numpy()
  q = _input_cov(_X)
  assert cov1.shape == (3, 3)
  for i, j in [(0, 0), (0, 1), (0, 2), (1, 2)]:
    _assert_close(cov1[i, j], _expectation(f, q[i, i], q[j, j], q[i, j]),
                  f'cov1[{i}, {j}]')


@pytest.mark.parametrize('layer, f', [
    (stax.Sign, np.sign),
    (lambda: stax.RectifiedMonomial(0), _rectified_monomial(0)),
    (lambda: stax.RectifiedMonomial(3), _rectified_monomial(3)),
], ids=['sign', 'rectified_monomial0', 'rectified_monomial3'])
def test_full_spatial_cov1(layer, f):
  x = _X[None]                       # one input, 3 positions, 2 channels
  _, _, kernel_fn = stax.serial(stax.Dense(1), layer())
  cov1 = kernel_fn(x, None, 'cov1').numpy()
  assert cov1.shape == (1, 3, 3)
  q = _input_cov(_X)                 # covariance between positions
  for i, j in [(0, 0), (2, 2), (0, 1), (1, 2)]:
    _assert_close(cov1[0, i, j], _expectation(f, q[i, i], q[j, j], q[i, j]),
                  f'cov1[0, {i}, {j}]')


def test_monomial_beyond_degree_five():
  _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Monomial(6))
  k = kernel_fn(_X, None, ('nngp', 'ntk'))
  q = _input_cov(_X)
  for i, j in [(0, 0), (0, 1)]:
    _assert_close(k.nngp[i, j],
                  _expectation(_monomial(6), q[i, i], q[j, j], q[i, j]),
                  f'nngp[{i}, {j}]')
    _assert_close(k.ntk[i, j], q[i, j] * _expectation(
        lambda x: 6 * x**5, q[i, i], q[j, j], q[i, j]), f'ntk[{i}, {j}]')


def test_expectation_helper_is_exact_for_relu():
  """The quadrature itself reproduces the arc-cosine kernel (Cho & Saul)."""
  q11, q22, q12 = 1.3, 0.7, -0.4
  c = q12 / math.sqrt(q11 * q22)
  theta = math.acos(c)
  relu = math.sqrt(q11 * q22) / (2 * math.pi) * (
      math.sin(theta) + (math.pi - theta) * c)
  assert abs(_expectation(_rectified_monomial(1), q11, q22, q12) - relu) < 1e-11
