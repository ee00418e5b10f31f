"""Monte Carlo kernels converge to the analytic `stax` kernels.

Networks with one hidden layer (dense/ReLU; conv/ReLU/avg-pool/flatten) have
empirical kernels whose expectation over initialisations equals the infinite
width kernel exactly (the hidden pre-activations are exactly Gaussian), so the
Monte Carlo error is pure variance:

* NTK: the hidden-layer sums average `width` i.i.d. terms per sample, so the
  relative Frobenius error is about `c / sqrt(width * n_samples)`, `c` ~ 1-3
  here (measured over 5 seeds: at most 3.0);
* NNGP: `f(x) f(x')ᵀ` does not concentrate with width (the outputs stay
  Gaussian with O(1) variance); averaging `n_samples` samples of `k` traced
  output channels gives about `c / sqrt(n_samples * k)`, `c` ~ 2 (at most 3.1).

The tests require both errors below twice those worst cases, at two sizes,
and the NTK error to shrink from the small to the large size (expected 4x).
"""
import numpy as np
import pytest
import tensorflow as tf

import nt_gp
from nt_gp import stax

OUT = 4
C_NTK = 6.
C_NNGP = 6.


def _dense(width):
  return stax.serial(stax.Dense(width, 1.5, 0.1), stax.Relu(),
                     stax.Dense(OUT, 1.5, 0.1))


def _conv(width):
  return stax.serial(
      stax.Conv(width, (3, 3), padding='SAME', W_std=1.5, b_std=0.1),
      stax.Relu(), stax.AvgPool((2, 2)), stax.Flatten(),
      stax.Dense(OUT, 1.5, 0.1))


_NETS = {
    'dense': (_dense, (5, 3), 1),
    'conv': (_conv, (3, 5, 5, 2), 3),
}


def _rel(a, b):
  return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@pytest.mark.parametrize('name', sorted(_NETS))
def test_converges_to_analytic_kernels(name):
  net, shape, impl = _NETS[name]
  x = np.random.RandomState(0).randn(*shape)
  errors = []
  for width, n in ((64, 4), (256, 16)):
    init_fn, apply_fn, kernel_fn = net(width)
    exact = kernel_fn(x, None, ('nngp', 'ntk'))
    mc = nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 1, n, vmap_axes=0,
                                     implementation=impl)
    est = mc(x, None)
    assert est.ntk.dtype == tf.float64
    e_nngp, e_ntk = _rel(est.nngp, exact.nngp), _rel(est.ntk, exact.ntk)
    assert e_ntk <= C_NTK / np.sqrt(width * n), (width, n, e_ntk)
    assert e_nngp <= C_NNGP / np.sqrt(n * OUT), (width, n, e_nngp)
    errors.append(e_ntk)
  assert errors[1] < errors[0]


def test_generator_yields_running_estimates():
  init_fn, apply_fn, _ = _dense(16)
  x = np.random.RandomState(1).randn(3, 3).astype(np.float32)
  gen = nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 7, [3, 1, 2])
  ests = list(gen(x, None, 'ntk'))
  assert len(ests) == 3
  # The running mean: 3 * est3 = 2 * est2 + sample3, with est1 = sample1.
  single = [nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 7, n)(x, None,
                                                                 'ntk')
            for n in (1, 2, 3)]
  for a, b in zip(ests, single):
    np.testing.assert_allclose(a, b, rtol=1e-6)
  assert np.max(np.abs(ests[0] - ests[2])) > 1e-3
  # Samples are the empirical kernels of `init_fn`'s draws.
  from nt_gp.stax import _random  # pylint: disable=g-import-not-at-top
  k1 = _random.split(_random.as_key(7))[1]
  _, params = init_fn(_random.split(k1)[0], x.shape)
  np.testing.assert_allclose(
      ests[0], nt_gp.empirical_ntk_fn(apply_fn)(x, None, params), rtol=1e-6)


def test_batch_size_gives_the_same_kernel():
  init_fn, apply_fn, _ = _dense(8)
  x1 = np.random.RandomState(2).randn(4, 3)
  x2 = np.random.RandomState(3).randn(6, 3)
  whole = nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 0, 2)
  blocks = nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 0, 2, batch_size=2)
  for a, b in ((x1, x2), (x1, None)):
    w, k = whole(a, b), blocks(a, b)
    np.testing.assert_allclose(k.ntk, w.ntk, rtol=1e-12)
    np.testing.assert_allclose(k.nngp, w.nngp, rtol=1e-12)
  diag = dict(trace_axes=(), diagonal_axes=(0,))
  w = nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 0, 1, **diag)(x1, None,
                                                                  'ntk')
  k = nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 0, 1, batch_size=2,
                                  **diag)(x1, None, 'ntk')
  assert k.shape == (4, OUT, OUT)
  np.testing.assert_allclose(k, w, rtol=1e-12)


def test_bad_arguments():
  init_fn, apply_fn, _ = _dense(4)
  x = np.ones((4, 3))
  with pytest.raises(ValueError, match='positive'):
    nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 0, 0)
  with pytest.raises(ValueError, match='integers'):
    nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 0, [1, 2.5])
  with pytest.raises(TypeError, match='n_samples'):
    nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 0, 'ten')
  with pytest.raises(ValueError, match='batch_size'):
    nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 0, 1, batch_size=-1)
  with pytest.raises(ValueError, match='divide'):
    nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 0, 1, batch_size=3)(x)
  with pytest.raises(ValueError, match='same shape apart from the batch'):
    nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 0, [1])(x, np.ones((2, 2)))
  with pytest.raises(TypeError, match='seed'):
    nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 'key', 1)
