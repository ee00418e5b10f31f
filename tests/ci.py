"""Whether the tests run on CI, read the same way by every test module.

`.ci/run` exports ``CI=true``; other CI services set ``CI=1`` or ``CI=True``.
All of these count (``CI=0``/``false``/empty do not). On CI, a check whose
tool is missing (the neural-tangents reference env, the docs toolchain) fails;
elsewhere it is skipped with a reason that says how to run it.
"""
import os

import pytest

__all__ = ['on_ci', 'skip_unless_ci']

_TRUE = frozenset({'1', 'true', 'yes', 'on'})


def on_ci() -> bool:
  """True when the `CI` environment variable says so (1/true/yes/on)."""
  return os.environ.get('CI', '').strip().lower() in _TRUE


def skip_unless_ci(missing: str, how: str):
  """Ends the calling test: a failure on CI, a skip with a reason elsewhere.

  Args:
    missing: what is not there, e.g. 'the neural-tangents reference env'.
    how: how to get it, e.g. 'run tools/reference_env.sh'.
  """
  if on_ci():
    pytest.fail(f'CI needs {missing} ({how}).')
  pytest.skip(f'{missing} is not available here ({how}; CI runs this check).')
