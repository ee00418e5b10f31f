"""Convolutional kernels equal neural-tangents 0.6.5 in float64 (at the
suite's tolerance in tests/parity/tolerances.py)."""
from tests.parity.suite_tests import ParitySuite

SUITE = ParitySuite('conv')

test_golden, test_live = SUITE.kernel_tests()
