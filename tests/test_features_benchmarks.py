"""The feature-map benchmark scripts run at tiny sizes and write their pages.

Timings and accuracies are not asserted (they are measurements); these
checks keep the scripts working as the library changes.
"""
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize('script, expect', [
    ('features_accuracy.py', ['| network | N | feature_dim |',
                              'Myrtle-5 CNN', 'Erf MLP, Hermite']),
    ('features_gp_million.py', ['| model | training points | test RMSE |',
                                'exact NNGP GP']),
    ('features_digits.py', ['| model | feature_dim | NNGP accuracy |',
                            'exact kernel']),
])
def test_benchmark_script_runs_tiny(tmp_path, script, expect):
  page = tmp_path / 'page.md'
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / script), '--tiny', '--out',
       str(page)], capture_output=True, text=True, timeout=900, cwd=ROOT)
  assert proc.returncode == 0, proc.stderr[-3000:]
  text = page.read_text()
  assert text.startswith('# ')
  assert f'Produced by `python benchmarks/{script} --tiny --out' in text
  for e in expect:
    assert e in text, e
  if script == 'features_accuracy.py':
    assert (tmp_path / 'page.png').stat().st_size > 10_000
