"""Monte Carlo kernels converge to the analytic `stax` kernels.

Networks with one hidden layer (dense/ReLU; conv/ReLU/avg-pool/flatten) have
empirical kernels whose expectation over initialisations equals the infinite
width kernel exactly (the hidden pre-activations are exactly Gaussian), so the
Monte Carlo error is pure variance:

* NNGP: the running estimates of `monte_carlo_kernel_fn` give back each
  sample (``k m_k - (k - 1) m_{k-1}``), hence the estimate's standard error
  entry by entry; the estimate must lie within 5 standard errors of the
  analytic kernel (a false alarm on any of the few dozen entries has
  probability < 1e-4), and the band must be narrow enough to reject a kernel
  10% too large.
* NTK: the hidden-layer sums average `width` i.i.d. terms per sample, so the
  relative Frobenius error is about `c / sqrt(width * n_samples)`, `c` ~ 1-3
  here (measured over 5 seeds: at most 3.0). The test requires it below
  twice that worst case, at two sizes, and to shrink from the small to the
  large size (expected 4x).
"""
import numpy as np
import pytest
import tensorflow as tf

import nt_gp
from nt_gp import stax

OUT = 4
C_NTK = 6.
Z = 5.
NNGP_OUT = 64        # readout width of the NNGP estimates
NNGP_SAMPLES = 256


def _dense(width, out=OUT):
  return stax.serial(stax.Dense(width, 1.5, 0.1), stax.Relu(),
                     stax.Dense(out, 1.5, 0.1))


def _conv(width, out=OUT):
  return stax.serial(
      stax.Conv(width, (3, 3), padding='SAME', W_std=1.5, b_std=0.1),
      stax.Relu(), stax.AvgPool((2, 2)), stax.Flatten(),
      stax.Dense(out, 1.5, 0.1))


_NETS = {
    'dense': (_dense, (5, 3), 1),
    'conv': (_conv, (3, 5, 5, 2), 3),
}


def _rel(a, b):
  return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


@pytest.mark.parametrize('name', sorted(_NETS))
def test_ntk_converges_to_the_analytic_kernel(name):
  net, shape, impl = _NETS[name]
  x = np.random.RandomState(0).randn(*shape)
  errors = []
  for width, n in ((64, 4), (256, 16)):
    init_fn, apply_fn, kernel_fn = net(width)
    exact = kernel_fn(x, None, 'ntk')
    mc = nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 1, n, vmap_axes=0,
                                     implementation=impl)
    est = mc(x, None, 'ntk')
    assert est.dtype == tf.float64
    e_ntk = _rel(est, exact)
    assert e_ntk <= C_NTK / np.sqrt(width * n), (width, n, e_ntk)
    errors.append(e_ntk)
  assert errors[1] < errors[0]


@pytest.mark.parametrize('name', sorted(_NETS))
def test_nngp_within_its_standard_error(name):
  net, shape, impl = _NETS[name]
  x = np.random.RandomState(0).randn(*shape)
  init_fn, apply_fn, kernel_fn = net(256, out=NNGP_OUT)
  exact = np.asarray(kernel_fn(x, None, 'nngp'))
  counts = np.arange(1, NNGP_SAMPLES + 1)
  mc = nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 2, list(counts),
                                   vmap_axes=0, implementation=impl)
  means = np.stack([np.asarray(m) for m in mc(x, None, 'nngp')])
  k = counts[:, None, None]
  previous = np.concatenate([np.zeros_like(means[:1]), means[:-1]])
  samples = k * means - (k - 1) * previous            # each sample's NNGP
  np.testing.assert_allclose(samples.mean(0), means[-1], rtol=1e-10)
  se = samples.std(0, ddof=1) / np.sqrt(NNGP_SAMPLES)
  assert np.all(se > 0)
  err = np.abs(means[-1] - exact)
  assert np.all(err <= Z * se), np.max(err / se)
  # The band tells a kernel 10% too large apart.
  assert np.any(np.abs(means[-1] - 1.1 * exact) > Z * se)


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
  # The message names the argument as the user wrote it (`key`).
  with pytest.raises(TypeError, match='`key` must be an int'):
    nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 'key', 1)
  with pytest.raises(TypeError, match='`key` must be an int'):
    nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, object(), 1)
  with pytest.raises(TypeError, match='`key` must be an int'):
    nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, [1.5, 2.], 1)
