"""tools/reference_env.sh uses an existing neural-tangents environment only
if it has the pinned versions (0.6.5 with jax/jaxlib 0.4.30), and the live
parity checks refuse any other."""
import pathlib
import subprocess
import sys
import sysconfig

import pytest

from tests.parity import harness

ROOT = pathlib.Path(__file__).resolve().parents[1]


def fake_env(folder, versions):
  """A virtualenv where `import neural_tangents` works and the package
  metadata claim `versions` ({distribution: version})."""
  subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(folder)],
                 check=True)
  purelib = sysconfig.get_path(
      'purelib', vars={'base': str(folder), 'platbase': str(folder)})
  site = pathlib.Path(purelib)
  (site / 'neural_tangents').mkdir(parents=True)
  (site / 'neural_tangents' / '__init__.py').write_text('')
  for name, version in versions.items():
    info = site / f'{name.replace("-", "_")}-{version}.dist-info'
    info.mkdir()
    (info / 'METADATA').write_text(
        f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n')
  return folder / 'bin' / 'python'


@pytest.mark.parametrize('nt, jax, ok', [('0.6.5', '0.4.30', True),
                                         ('0.6.4', '0.4.30', False),
                                         ('0.6.5', '0.4.31', False)])
def test_existing_env_is_version_checked(tmp_path, nt, jax, ok):
  python = fake_env(tmp_path / 'env', {'neural-tangents': nt, 'jax': jax,
                                       'jaxlib': jax})
  proc = subprocess.run(['bash', str(ROOT / 'tools' / 'reference_env.sh'),
                         str(tmp_path / 'env')], capture_output=True,
                        text=True, timeout=120)
  if ok:
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(python)
    assert harness.reference_versions(str(python)) == (
        harness.REFERENCE_VERSIONS)
  else:
    assert proc.returncode == 1 and proc.stdout == ''
    assert f'neural-tangents=={nt} jax=={jax}' in proc.stderr
    assert 'remove it' in proc.stderr
    assert harness.reference_versions(str(python)) != (
        harness.REFERENCE_VERSIONS)
