"""The in-place LAPACK steps of the exact solver (nt_gp/solve/_linalg.py)
against numpy, including the block-by-block Cholesky used for large
matrices."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from nt_gp.solve import _linalg


@pytest.mark.parametrize('n, block', [(300, 64), (257, 100), (64, 64),
                                      (65, 64), (40, 7), (40, None)])
@pytest.mark.parametrize('dtype', [np.float64, np.float32])
def test_cholesky_lower_equals_numpy_and_keeps_the_upper_triangle(
    n, block, dtype):
  rs = np.random.RandomState(n)
  x = rs.randn(n, n + 5)
  k = (x @ x.T).astype(dtype)
  a = k.copy()
  upper = np.triu_indices(n, 1)
  a[upper] = -7.
  _linalg.cholesky_lower(a, block=block)
  want = np.linalg.cholesky(k.astype(np.float64))
  tol = 1e-10 if dtype == np.float64 else 2e-3
  np.testing.assert_allclose(np.tril(a), want, rtol=0,
                             atol=tol * np.abs(want).max())
  assert np.all(a[upper] == -7.)


@pytest.mark.parametrize('block', [None, 16])
def test_cholesky_lower_names_the_failing_pivot(block):
  rs = np.random.RandomState(0)
  x = rs.randn(60, 70)
  k = x @ x.T
  k[37, 37] = -1.
  with pytest.raises(_linalg.NotPositiveDefiniteError, match='pivot 38 of 60'):
    _linalg.cholesky_lower(k, block=block)


@pytest.mark.parametrize('blocked', [False, True])
def test_cholesky_returns_numpys_factor_and_leaves_its_input(monkeypatch,
                                                             blocked):
  if blocked:     # the block-by-block path, as for large matrices
    monkeypatch.setattr(_linalg, 'BLOCKED_ABOVE', 8)
    monkeypatch.setattr(_linalg, 'BLOCK', 7)
  rs = np.random.RandomState(1)
  x = rs.randn(50, 60)
  k = x @ x.T
  before = k.copy()
  low = _linalg.cholesky(k)
  np.testing.assert_allclose(low, np.linalg.cholesky(k), rtol=0, atol=1e-10)
  assert np.all(np.triu(low, 1) == 0) and low.flags.c_contiguous
  np.testing.assert_array_equal(k, before)
  k[20, 20] = -1.
  with pytest.raises(_linalg.NotPositiveDefiniteError, match='pivot 21'):
    _linalg.cholesky(k)


def test_falkon_leverage_and_noise_fit_factor_large_matrices_by_blocks(
    monkeypatch):
  """The M x M and m x m factorisations of Falkon's preconditioner, the
  leverage-score centres and the feature GP's evidence go through the
  blocked Cholesky above `BLOCKED_ABOVE` (OpenBLAS's threaded potrf crashes
  at large orders): same numbers as the dense formulas."""
  from nt_gp.features import noise_fit
  from nt_gp.solve import falkon
  monkeypatch.setattr(_linalg, 'BLOCKED_ABOVE', 8)
  monkeypatch.setattr(_linalg, 'BLOCK', 5)
  calls = []
  real = _linalg.cholesky_lower
  monkeypatch.setattr(_linalg, 'cholesky_lower',
                      lambda a, block=None: calls.append(len(a)) or real(a))
  rs = np.random.RandomState(2)
  phi, y = rs.randn(40, 12), rs.randn(40, 1)
  e = noise_fit.evaluate(phi.T @ phi, phi.T @ y, (y ** 2).sum(0), 40, 0.3)
  k = phi @ phi.T + 0.3 * np.eye(40)
  dense = -0.5 * (y[:, 0] @ np.linalg.solve(k, y[:, 0]) +
                  np.linalg.slogdet(2 * np.pi * k)[1])
  np.testing.assert_allclose(e.value, dense, rtol=1e-12)
  kzz = phi @ phi.T     # rank 12 of 40: needs a jitter
  low, jitter = falkon.cholesky_with_jitter(kzz, 'K(Z, Z)')
  assert jitter > 0
  np.testing.assert_allclose(low @ low.T, kzz + jitter * np.eye(40),
                             atol=1e-10 * np.abs(kzz).max())
  assert calls[0] == 12 and 40 in calls


@pytest.mark.slow
def test_cholesky_of_order_16000_does_not_crash():
  """OpenBLAS's multithreaded potrf crashes (SIGSEGV) on matrices of order
  16000 with 2 threads on some CPUs (CI's among them); the factorisation
  above `BLOCKED_ABOVE` goes block by block and gives L L^T = A."""
  script = textwrap.dedent('''
      import numpy as np
      from nt_gp.solve import _linalg
      n = 16000
      a = np.full((n, n), 0.001)
      a[np.diag_indices(n)] += 2.0
      _linalg.cholesky_lower(a)
      rs = np.random.RandomState(0)
      err = 0.
      for r, c in zip(rs.randint(0, n, 50), rs.randint(0, n, 50)):
        m = min(r, c) + 1
        err = max(err, abs(a[r, :m] @ a[c, :m] - 0.001 - 2.0 * (r == c)))
      print(err)
  ''')
  env = dict(os.environ, OPENBLAS_NUM_THREADS='2', OMP_NUM_THREADS='2')
  proc = subprocess.run([sys.executable, '-c', script], capture_output=True,
                        text=True, timeout=900, env=env, check=False)
  assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
  assert float(proc.stdout.strip().splitlines()[-1]) < 1e-12
