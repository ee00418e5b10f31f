"""The large-scale solves page (docs/large_scale.md): its `>>>` examples run
as shown, its command session prints what the page shows, and the tutorial
script behind its figure runs (`--quick`)."""
import doctest
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGE = ROOT / 'docs' / 'large_scale.md'
SCRIPT = ROOT / 'docs' / 'tutorials' / 'large_scale.py'
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', MPLBACKEND='Agg')


def test_page_examples_run():
  result = doctest.testfile(str(PAGE), module_relative=False,
                            optionflags=doctest.ELLIPSIS |
                            doctest.NORMALIZE_WHITESPACE)
  assert result.attempted >= 10
  assert result.failed == 0


def test_page_embeds_the_figure_and_is_in_the_nav():
  text = PAGE.read_text()
  assert '(tutorials/img/large_scale.png)' in text
  png = ROOT / 'docs' / 'tutorials' / 'img' / 'large_scale.png'
  assert png.read_bytes()[:8] == PNG_MAGIC
  assert 'large_scale.md' in (ROOT / 'mkdocs.yml').read_text()


def _table(text):
  """The rows of `nt-gp solve`'s table (header `diag_reg  reg ...`)."""
  return [l.rstrip() for l in text.splitlines()
          if re.match(r'^[ *] (diag_reg  reg|\d[\d.e-]*  )', l)]


def test_command_session_prints_the_table_on_the_page(tmp_path):
  """The page's `nt-gp solve` table is what the commands print now."""
  proc = subprocess.run([sys.executable, str(SCRIPT), '--sweep-only',
                         '--out', str(tmp_path)], capture_output=True,
                        text=True, timeout=900, env=ENV, cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stderr[-3000:]
  shown = _table(PAGE.read_text())
  assert len(shown) == 6
  assert _table(proc.stdout) == shown


def test_tutorial_script_quick(tmp_path):
  proc = subprocess.run([sys.executable, str(SCRIPT), '--quick', '--out',
                         str(tmp_path)], capture_output=True, text=True,
                        timeout=900, env=ENV, cwd=str(tmp_path))
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = proc.stdout
  accuracies = [float(v) for v in re.findall(
      r'^[ *] [\d.e-]+\s+[\d.e-]+\s+([\d.]+)\s+[\d.]+', out, re.M)]
  assert len(accuracies) == 5 and max(accuracies) > 0.9, out
  rmse = [float(v) for v in re.findall(r'test RMSE ([\d.]+)', out)]
  # Targets have RMS ~0.9 around their mean; the fit must beat that.
  assert len(rmse) == 3 and max(rmse) < 0.7, out
  png = tmp_path / 'large_scale.png'
  assert f'figure: {png}' in out
  assert png.read_bytes()[:8] == PNG_MAGIC
