"""The solver benchmark scripts run at a tiny size and write their pages
(timings are never asserted; the numbers they compare are)."""
import os
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


def _run(script, tmp_path, *extra):
  out = tmp_path / 'page.md'
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / script), '--quick', '--out',
       str(out)] + list(extra), capture_output=True, text=True, timeout=900,
      cwd=str(tmp_path), env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3',
                                  MPLBACKEND='Agg'))
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
  text = out.read_text()
  assert text.startswith('# ') and 'Produced by `' in text
  return text, proc.stdout


@pytest.mark.slow
def test_reg_sweep_benchmark(tmp_path):
  text, _ = _run('solve_reg_sweep.py', tmp_path)
  assert '| N | potrf | GFLOP/s | syevr | syevr / potrf |' in text
  assert len(re.findall(r"^\| \d+ \| \d+ \| [\d.]+ s \| [\d.]+ s \| "
                        r"(cholesky|eigh) \| (cholesky|eigh) \|$", text,
                        re.M)) == 4


@pytest.mark.slow
def test_exact_benchmark(tmp_path):
  text, out = _run('solve_exact.py', tmp_path)
  assert 'nt_gp out of core (tiled)' in text
  assert 'in memory, nt_gp blocked Cholesky (read + solve)' in text
  # The out-of-core solve and scipy agree on the same kernel.
  diff = float(re.search(r'means: max relative difference ([\d.e+-]+)',
                         out).group(1))
  assert diff < 1e-9
  assert '1 -> 2 BLAS threads' in text


@pytest.mark.slow
def test_nystrom_benchmark(tmp_path):
  text, _ = _run('solve_nystrom.py', tmp_path)
  for caption in ('Main run', 'Test RMSE vs M', 'Nyström vs the exact GP',
                  'CG passes on local workers', "The Nyström GP's variances"):
    assert caption in text
  # Titsias' bound is below the DTC and the exact log marginal likelihood.
  rows = re.findall(r"^\| (\d+) \| [\d.e+-]+(?:, [\d.e+-]+)* \| "
                    r"([-\d.e+, ]+) \| ([-\d.e+, ]+) \| ([-\d.e+, ]+) \|$",
                    text, re.M)
  assert len(rows) == 2, text
  for _, *columns in rows:
    lml, elbo, exact = [[float(v) for v in c.split(',')] for c in columns]
    assert all(b < min(l, e) for b, l, e in zip(elbo, lml, exact)), columns
  assert (tmp_path / 'img' / 'solve_nystrom.png').read_bytes()[:8] == \
      PNG_MAGIC
