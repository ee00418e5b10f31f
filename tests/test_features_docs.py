"""The feature-map tutorial's examples run as shown (doctest)."""
import doctest
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.isolated    # many networks and graphs, kept until exit
def test_features_tutorial():
  result = doctest.testfile(
      os.path.join(ROOT, 'docs', 'features.md'), module_relative=False,
      optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
      verbose=False)
  assert result.attempted > 20
  assert result.failed == 0, f'{result.failed} example(s) failed'
