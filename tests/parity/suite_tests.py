"""The checks every parity suite with kernel and `apply_fn` cases shares.

`ParitySuite('attention')` loads `suite_attention.py`, its golden files and
(lazily, once) the live neural-tangents results; test modules parametrize
over `suite.cases` / `suite.apply_cases` and call `check_kernel` /
`check_apply`.
"""
import functools
import os
import pathlib

import numpy as np
import pytest

from tests.parity import apply_harness
from tests.parity import harness
from tests.parity import shared_reference

HERE = pathlib.Path(__file__).parent


def live_wanted():
  """Live checks need the reference env; CI must have it (a missing one
  fails there, see `live`)."""
  return (harness.reference_python() is not None or
          os.environ.get('CI', '').lower() == 'true')


class ParitySuite:
  """One suite file's cases, golden data and reference results."""

  def __init__(self, name):
    self.file = HERE / f'suite_{name}.py'
    self.cases = harness.load_suite(self.file)
    self.apply_cases = apply_harness.load_apply_suite(self.file)
    self.golden = harness.load_golden(name)
    self.golden_apply = apply_harness.load_golden(name)
    self.by_name = {c['name']: c for c in self.cases}
    # Shared by the golden and live checks (kernel compilation dominates).
    self.ours = functools.lru_cache(maxsize=None)(self._ours)
    self.reference = functools.lru_cache(maxsize=None)(self._reference)

  def _ours(self, name, dtype=np.float64):
    return harness.compute_ours(self.by_name[name], dtype=dtype)

  def _reference(self, kind):
    return shared_reference.reference(self.file, kind)

  def check_kernel(self, case):
    """Golden file, then (with the reference env) a live neural-tangents
    run, on the same kernels (computed once per case)."""
    name = case['name']
    x1, x2 = harness.make_inputs(case)
    np.testing.assert_array_equal(self.golden[f'{name}/x1'], x1)
    np.testing.assert_array_equal(self.golden[f'{name}/x2'], x2)
    patterns = harness.make_patterns(case)
    if patterns is not None:
      np.testing.assert_array_equal(self.golden[f'{name}/pattern1'],
                                    patterns[0])
      np.testing.assert_array_equal(self.golden[f'{name}/pattern2'],
                                    patterns[1])
    ours = self.ours(name)
    harness.assert_matches(case, ours, self.golden)
    if live_wanted():
      harness.assert_matches(case, ours, self.reference('kernel'))

  def check_apply(self, case):
    """`apply_fn` with the golden parameters, then (with the reference env)
    with freshly drawn ones, against neural-tangents."""
    x, _ = harness.make_inputs(case)
    np.testing.assert_array_equal(self.golden_apply[f'{case["name"]}/x'], x)
    apply_harness.assert_matches(
        case, apply_harness.compute_ours(case, self.golden_apply),
        self.golden_apply)
    if live_wanted():
      data = apply_harness.suite_data([case])
      apply_harness.assert_matches(
          case, apply_harness.compute_ours(case, data),
          self.reference('apply'))

  def check_float32(self, name, rtol=2e-4):
    """The float32 kernel has float32 entries and matches the golden file."""
    ours = self.ours(name, np.float32)
    for key, val in ours.items():
      assert val.dtype == np.float32, key
    harness.assert_matches(self.by_name[name], ours, self.golden, rtol=rtol)

  def tests(self):
    """`(test_kernel, test_apply)`, parametrized over the suite's cases, for
    a test module to bind at top level."""
    @pytest.mark.parametrize('case', self.cases,
                             ids=[c['name'] for c in self.cases])
    def test_kernel(case):
      self.check_kernel(case)

    @pytest.mark.parametrize('case', self.apply_cases,
                             ids=[c['name'] for c in self.apply_cases])
    def test_apply(case):
      self.check_apply(case)
    return test_kernel, test_apply
