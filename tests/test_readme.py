"""The README's two set-up commands are the ones CI and users run."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _readme_commands():
  text = (ROOT / 'README.md').read_text()
  blocks = re.findall(r'```bash\n(.*?)```', text, flags=re.S)
  return [b.strip() for b in blocks[:2]]


def test_readme_starts_with_two_commands():
  text = (ROOT / 'README.md').read_text()
  head = text.split('\n', 2)
  assert head[0].startswith('# nt_gp')
  install_main, install_tests = _readme_commands()
  assert 'nt-gp demo' in install_main
  assert 'pytest' in install_tests


def test_ci_runs_the_readme_test_command():
  ci = (ROOT / '.ci' / 'run').read_text()
  test_cmd = _readme_commands()[1]
  assert test_cmd in ci.splitlines(), 'the README test command must be in .ci/run'


def test_setup_declares_console_script():
  setup = (ROOT / 'setup.py').read_text()
  assert "'nt-gp=nt_gp.cli:main'" in setup
