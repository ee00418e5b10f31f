"""Live reference results, computed once per suite per test session.

On CI (`CI=true`) the reference env must exist: a missing reference is a
failure, not a skip.
"""
import functools
import os

import pytest

from tests.parity import harness


@functools.lru_cache(maxsize=None)
def _results(suite_file):
  return harness.run_reference(suite_file)


def reference_results(suite_file):
  if harness.reference_python() is None:
    if os.environ.get('CI', '').lower() == 'true':
      pytest.fail('CI needs the neural-tangents reference env '
                  '(tools/reference_env.sh) for live parity checks.')
    pytest.skip('neural-tangents reference env not built '
                '(run tools/reference_env.sh).')
  return _results(str(suite_file))
