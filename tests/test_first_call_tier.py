"""The first call of a new small input signature runs as a plain graph (no
XLA compile); later calls run the XLA-compiled propagation. Both are right
(closed-form arc-cosine kernel), the switch happens where documented, and
large inputs compile on the first call."""
import numpy as np
import pytest

import nt_gp
from nt_gp import stax


@pytest.fixture
def threshold():
  """Sets `config.graph_first_call_max_entries` for one test."""
  old = nt_gp.config.graph_first_call_max_entries
  yield lambda v: setattr(nt_gp.config, 'graph_first_call_max_entries', v)
  nt_gp.config.graph_first_call_max_entries = old


def _relu_nngp(x, w_std, b_std):
  """NNGP of Dense(w, b) -> Relu -> Dense(w, b), closed form (Cho & Saul's
  first-order arc-cosine kernel), in float64 numpy."""
  x = np.asarray(x, np.float64)
  q = w_std ** 2 * x @ x.T / x.shape[1] + b_std ** 2
  v = np.sqrt(np.diag(q))
  c = np.clip(q / np.outer(v, v), -1., 1.)
  theta = np.arccos(c)
  relu = np.outer(v, v) * (np.sin(theta) + (np.pi - theta) * c) / (2 * np.pi)
  return w_std ** 2 * relu + b_std ** 2


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_both_tiers_compute_the_closed_form(threshold, dtype):
  threshold(10 ** 6)
  w_std, b_std = 1.4, 0.3
  _, _, kernel_fn = stax.serial(stax.Dense(64, w_std, b_std), stax.Relu(),
                                stax.Dense(1, w_std, b_std))
  x = np.random.RandomState(0).randn(12, 5).astype(dtype)
  want = _relu_nngp(x, w_std, b_std)
  rtol = 2e-5 if dtype == np.float32 else 1e-12
  for _ in range(3):     # graph mode, then XLA (compiled), then XLA again
    got = kernel_fn(x, None, 'nngp')
    assert got.dtype == dtype
    np.testing.assert_allclose(got.numpy(), want, rtol=rtol, atol=rtol)


def _net(ndim=1):
  """Conv + pooling: full spatial covariances, of sequences (ndim 1) or
  images (ndim 2)."""
  return stax.serial(stax.Conv(4, (3,) * ndim, padding='SAME', W_std=1.3,
                               b_std=0.2),
                     stax.Relu(), stax.AvgPool((2,) * ndim), stax.Flatten(),
                     stax.Dense(1, 1.1, 0.1))[2]


def _kernels(threshold_value, threshold, x, calls):
  threshold(threshold_value)
  kernel_fn = _net(x.ndim - 2)
  return [kernel_fn(x, None, 'ntk').numpy() for _ in range(calls)]


def test_first_call_is_the_graph_and_later_calls_the_compiled_kernel(
    threshold):
  """Small input: the first call equals the kernel without XLA, the second
  the kernel compiled on the first call (bit for bit: same programs)."""
  x = np.random.RandomState(1).randn(6, 6, 2).astype(np.float32)
  tiered = _kernels(10 ** 6, threshold, x, 3)
  compiled = _kernels(0, threshold, x, 1)[0]
  with nt_gp.compilation(jit_compile=False):
    plain = _kernels(10 ** 6, threshold, x, 1)[0]
  np.testing.assert_array_equal(tiered[0], plain)
  np.testing.assert_array_equal(tiered[1], compiled)
  np.testing.assert_array_equal(tiered[2], compiled)
  np.testing.assert_allclose(tiered[0], compiled, rtol=1e-5)


def test_large_inputs_compile_on_the_first_call(threshold):
  """Above the threshold (6 * 6 inputs * 6² spatial entries = 1296) the
  first call is already the compiled kernel."""
  x = np.random.RandomState(2).randn(6, 6, 2).astype(np.float32)
  first = _kernels(1295, threshold, x, 1)[0]
  compiled = _kernels(0, threshold, x, 1)[0]
  np.testing.assert_array_equal(first, compiled)


def test_full_spatial_covariances_of_images_compile_on_the_first_call(
    threshold):
  """Their second derivatives need broadcasts of rank > 8, which only XLA
  runs; so the first call is the compiled kernel even below the threshold
  (6 * 6 inputs * (6 * 6)² spatial entries = 46656)."""
  x = np.random.RandomState(2).randn(6, 6, 6, 2).astype(np.float32)
  first = _kernels(10 ** 6, threshold, x, 1)[0]
  compiled = _kernels(0, threshold, x, 1)[0]
  with nt_gp.compilation(jit_compile=False):
    plain = _kernels(10 ** 6, threshold, x, 1)[0]
  np.testing.assert_array_equal(first, compiled)
  assert not np.array_equal(first, plain)    # the check can tell them apart


@pytest.mark.parametrize('gathered', [True, False])
def test_both_unpackings_restore_the_symmetric_covariance(gathered,
                                                          monkeypatch):
  """Small packed kernels unpack with one gather (few ops to trace), large
  ones block by block; both give back the full covariance."""
  from nt_gp.ops import packing  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(packing, '_GATHERED_MAX_ENTRIES',
                      10 ** 9 if gathered else 0)
  rng = np.random.RandomState(3)
  for n, blocks in ((12, 3), (16, 8)):
    full = rng.randn(3, 3, n, n)     # full spatial: swap positions too
    full = full + full.transpose(1, 0, 3, 2)
    got = packing.unpack(packing.pack(full, blocks), blocks, 1, False)
    np.testing.assert_array_equal(got.numpy(), full)
