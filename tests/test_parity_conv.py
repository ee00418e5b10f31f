"""Convolutional kernels equal neural-tangents 0.6.5 in float64 (≤ 1e-6 rel.)."""
import pathlib

import numpy as np
import pytest

from tests.parity import harness
from tests.parity import live

SUITE_FILE = pathlib.Path(__file__).parent / 'parity' / 'suite_conv.py'
SUITE = harness.load_suite(SUITE_FILE)
GOLDEN = harness.load_golden('conv')


@pytest.mark.parametrize('case', SUITE, ids=[c['name'] for c in SUITE])
def test_golden(case):
  x1, x2 = harness.make_inputs(case)
  np.testing.assert_array_equal(GOLDEN[f'{case["name"]}/x1'], x1)
  np.testing.assert_array_equal(GOLDEN[f'{case["name"]}/x2'], x2)
  harness.assert_matches(case, harness.compute_ours(case), GOLDEN)


@pytest.mark.parametrize('case', SUITE, ids=[c['name'] for c in SUITE])
def test_live(case):
  reference = live.reference_results(SUITE_FILE)
  harness.assert_matches(case, harness.compute_ours(case), reference)
