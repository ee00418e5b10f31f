"""The documentation builds with `mkdocs build --strict` (warnings are
errors: broken links, unknown API names, docstrings that fail to render).

Skipped only where the docs tools are not installed and `CI` is not set; in
CI (`.ci/run` installs `.[test]`, which includes them) a missing tool fails.
"""
import importlib.util
import os
import pathlib
import subprocess
import sys

from tests import ci

ROOT = pathlib.Path(__file__).resolve().parents[1]
TOOLS = ('mkdocs', 'material', 'mkdocstrings', 'mkdocstrings_handlers.python')


def _missing():
  missing = []
  for name in TOOLS:
    try:
      if importlib.util.find_spec(name) is None:
        missing.append(name)
    except ModuleNotFoundError:
      missing.append(name)
  return missing


def test_docs_build_strict(tmp_path):
  missing = _missing()
  if missing:
    ci.skip_unless_ci(f'the docs tools {missing}', 'pip install -e .[docs]')
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', NO_MKDOCS_2_WARNING='1')
  proc = subprocess.run(
      [sys.executable, '-m', 'mkdocs', 'build', '--strict', '--site-dir',
       str(tmp_path / 'site')], cwd=str(ROOT), capture_output=True,
      text=True, timeout=600, env=env)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
  site = tmp_path / 'site'
  for page in ('index.html', 'migration/index.html', 'api/stax/index.html',
               'tutorials/phase_diagram/index.html'):
    assert (site / page).exists(), page
  stax = (site / 'api' / 'stax' / 'index.html').read_text()
  assert 'nt_gp.stax.Dense' in stax and 'nt_gp.stax.serial' in stax
  assert (site / 'tutorials' / 'img' / 'phase_diagram.png').exists()
