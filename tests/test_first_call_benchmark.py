"""benchmarks/first_call.py at a tiny size: one fresh process per row, the
breakdown columns filled, smoke runs kept out of the docs."""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / 'benchmarks' / 'first_call.py')


def test_first_call_breakdown_writes_a_row_per_workload_and_dtype(tmp_path):
  page = tmp_path / 'first_call.md'
  proc = subprocess.run(
      [sys.executable, SCRIPT, 'mlp3_n1000', '--dtypes', 'float32,float64',
       '--n', '6', '--out', str(page)], capture_output=True, text=True,
      timeout=600)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  rows = [l for l in page.read_text().splitlines()
          if l.startswith('| mlp3_n1000 |')]
  assert [r.split('|')[2].strip() for r in rows] == ['float32', 'float64']
  for row in rows:
    cells = [c.strip() for c in row.strip('|').split('|')]
    assert len(cells) == 13 and 'failed' not in row
    ops, clusters = (int(v) for v in cells[4].split(' / '))
    assert ops > 0 and clusters == 3    # one compiled map per ReLU layer
    # The persistent-cache pair: a cold and a warm first call (times only).
    cold, warm = (float(v) for v in cells[12].split(' / '))
    assert cold > 0 and warm > 0


def test_first_call_refuses_smoke_runs_into_the_docs():
  proc = subprocess.run([sys.executable, SCRIPT, 'mlp3_n1000', '--n', '6'],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and 'full-size' in proc.stderr
