"""The benchmark scripts run (at tiny sizes) and write well-formed pages.

The measurements themselves are not tested (timings are never asserted);
these checks keep the scripts working as the library changes.
"""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))

from report import Report  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_run_one_reports_time_memory_and_checksum():
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / '_run_one.py'), 'nt_gp',
       'myrtle5', 'float32', '4'], capture_output=True, text=True,
      timeout=600, check=True)
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out['shape'] == [4, 16, 16, 3]
  assert len(out['times_s']) == 3 and out['median_s'] > 0
  # Peak memory of this process alone (VmHWM), not the pytest worker's.
  assert 0.1 < out['peak_rss_gb'] < 8
  assert out['ntk_checksum'] > 0


def test_report_page_has_command_machine_table_and_output(tmp_path):
  r = Report('Title', 'Intro.')
  r.say('line one')
  r.table(['a', 'b'], [[1, 2.5], ['x', 'y']])
  page = tmp_path / 'page.md'
  r.write(page, command='python benchmarks/x.py --n 3')
  text = page.read_text()
  assert text.startswith('# Title\n')
  assert 'Produced by `python benchmarks/x.py --n 3` on ' in text
  assert 'CPU cores visible' in text
  assert '| a | b |\n|---|---|\n| 1 | 2.5 |\n| x | y |' in text
  assert '```text\nline one\n```' in text
