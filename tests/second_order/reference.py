"""Access to the neural-tangents side of the second-order tests.

`tool()` is tools/make_golden_second_derivatives.py (which runs the
reference scripts); `require_live()` skips where the reference env is not
built, and fails on CI (`CI=true`), where live checks are required.
"""
import functools
import importlib.util
import os

import pytest

from tests.parity import harness


def require_live():
  if harness.reference_python() is None:
    if os.environ.get('CI', '').lower() == 'true':
      pytest.fail('CI needs the neural-tangents reference env '
                  '(tools/reference_env.sh) for live checks.')
    pytest.skip('neural-tangents reference env not built '
                '(run tools/reference_env.sh).')


@functools.lru_cache(maxsize=None)
def tool():
  spec = importlib.util.spec_from_file_location(
      'make_golden_second_derivatives',
      harness.ROOT / 'tools' / 'make_golden_second_derivatives.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
