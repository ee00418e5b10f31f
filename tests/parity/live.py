"""Live neural-tangents checks: run where the reference env exists.

Without the env a live check is skipped with a reason that says so (and how
to build it); on CI (`tests.ci.on_ci`) it fails instead, so CI never passes on
golden files alone.
"""
import pytest

from tests import ci
from tests.parity import harness


def require_reference():
  """Returns the reference python, or skips (fails on CI) without it; an
  env with other versions than tools/reference_env.sh pins fails."""
  python = harness.reference_python()
  if python is None:
    ci.skip_unless_ci('the neural-tangents 0.6.5 reference env',
                      'build it with tools/reference_env.sh, or set '
                      'NT_REFERENCE_PYTHON')
  have = harness.reference_versions(python)
  if have != harness.REFERENCE_VERSIONS:
    pytest.fail(f'the reference env {python} has {have}, not '
                f'{harness.REFERENCE_VERSIONS}: rebuild it with '
                f'tools/reference_env.sh')
  return python
