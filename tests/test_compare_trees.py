"""benchmarks/compare_trees.py runs at a tiny size (timings are not tested).

A tree compared with itself must give the same NTK, and the script must
refuse a tree whose nt_gp a process would not import.
"""
import json
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / 'benchmarks' / 'compare_trees.py'


@pytest.mark.slow
def test_a_tree_against_itself(tmp_path):
  out = tmp_path / 'ab.json'
  subprocess.run(
      [sys.executable, str(SCRIPT), 'myrtle5', '--base', str(ROOT), '--head',
       str(ROOT), '--dtypes', 'float32', '--repeats', '1', '--sizes',
       'myrtle5=4', '--json', str(out)], check=True, timeout=900,
      capture_output=True, text=True)
  rows = json.loads(out.read_text())['rows']
  assert len(rows) == 1 and rows[0]['n'] == 4
  assert rows[0]['same_ntk'] and rows[0]['ratio'] > 0


def test_a_base_without_nt_gp_is_refused(tmp_path):
  proc = subprocess.run(
      [sys.executable, str(SCRIPT), '--base', str(tmp_path)],
      capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert 'imports nt_gp from' in proc.stderr
