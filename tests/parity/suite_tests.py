"""The checks every parity suite shares, on one harness.

`ParitySuite('attention')` loads `suite_attention.py`, its golden files and
(lazily, once) the live neural-tangents results. A test module binds the
parametrized tests at top level::

  SUITE = ParitySuite('conv')
  test_golden, test_live = SUITE.kernel_tests()
  test_apply_golden, test_apply_live = SUITE.apply_tests()   # if it has any

* golden: nt_gp's float64 kernels of each case, computed from the inputs
  stored in the golden file, against the golden values;
* live: the same kernels against a fresh neural-tangents run on the same
  inputs (skipped with a reason without the reference env, a failure on CI);
* both at the case's tolerance (`tolerances.kernel_rtol`, `tolerances.APPLY`).
"""
import functools
import pathlib

import numpy as np
import pytest

from tests.parity import apply_harness
from tests.parity import harness
from tests.parity import live
from tests.parity import shared_reference
from tests.parity import tolerances
from tests.parity.reference_nan import without_reference_nan_diagonal

HERE = pathlib.Path(__file__).parent


class ParitySuite:
  """One suite file's cases, golden data and reference results."""

  def __init__(self, name):
    self.name = name
    self.file = HERE / f'suite_{name}.py'
    self.cases = harness.load_suite(self.file)
    self.apply_cases = apply_harness.load_apply_suite(self.file)
    self.golden = harness.load_golden(name)
    self.golden_apply = (apply_harness.load_golden(name) if self.apply_cases
                         else {})
    self.by_name = {c['name']: c for c in self.cases}
    self.apply_rtol = tolerances.APPLY
    # Shared by the golden and live checks (kernel compilation dominates).
    self.ours = functools.lru_cache(maxsize=None)(self._ours)
    self._reference = functools.lru_cache(maxsize=None)(self._run_reference)

  def inputs(self, case):
    """`(x1, x2, patterns)` of a case as stored in the golden file."""
    return harness.case_inputs(case, self.golden)

  def _ours(self, name, dtype=np.float64):
    case = self.by_name[name]
    return harness.compute_ours(case, dtype=dtype, inputs=self.inputs(case))

  def _run_reference(self, kind):
    if kind == 'kernel':
      return shared_reference.reference(
          self.file, 'kernel',
          harness.stored_suite_inputs(self.cases, self.golden))
    return shared_reference.reference(self.file, 'apply')

  def reference(self, kind='kernel'):
    """Live neural-tangents results (skips, or fails on CI, without the
    reference env)."""
    live.require_reference()
    return self._reference(kind)

  def worst_error(self, case, reference):
    """`(relative error, quantity)` of nt_gp's kernels of `case` against
    `reference` (golden or live)."""
    ours, reference = without_reference_nan_diagonal(
        case, self.ours(case['name']), reference)
    return harness.worst_error(case, ours, reference)

  def rtol(self, case) -> float:
    """The float64 tolerance of `case` (see tests/parity/tolerances.py)."""
    return tolerances.kernel_rtol(self.name, case['name'])

  def check(self, case, reference, rtol=None):
    rtol = self.rtol(case) if rtol is None else rtol
    rel, key = self.worst_error(case, reference)
    assert rel <= rtol, (f'{self.name}/{case["name"]} {key}: max relative '
                         f'error {rel:.3g} > {rtol:g}')

  def check_golden(self, case):
    self.check(case, self.golden)

  def check_live(self, case):
    self.check(case, self.reference('kernel'))

  def apply_data(self, case):
    """The golden file's inputs and parameters of an `apply_fn` case, after
    checking its inputs are the case's own up to rounding."""
    x, _ = harness.make_inputs(case)
    harness.assert_same_inputs(self.golden_apply[f'{case["name"]}/x'], x,
                               f'{case["name"]}/x')
    return self.golden_apply

  def check_apply_golden(self, case):
    """`apply_fn` with the golden parameters and inputs."""
    apply_harness.assert_matches(
        case, apply_harness.compute_ours(case, self.apply_data(case)),
        self.golden_apply, rtol=self.apply_rtol)

  def check_apply_live(self, case):
    """`apply_fn` with freshly drawn parameters, against neural-tangents."""
    reference = self.reference('apply')
    data = apply_harness.suite_data([case])
    apply_harness.assert_matches(
        case, apply_harness.compute_ours(case, data), reference,
        rtol=self.apply_rtol)

  def check_float32(self, name, rtol=tolerances.FLOAT32):
    """The float32 kernel has float32 entries and matches the golden file."""
    ours = self.ours(name, np.float32)
    for key, val in ours.items():
      assert val.dtype == np.float32, key
    case = self.by_name[name]
    ours, golden = without_reference_nan_diagonal(case, ours, self.golden)
    harness.assert_matches(case, ours, golden, rtol=rtol)

  def kernel_tests(self):
    """`(test_golden, test_live)` parametrized over the kernel cases."""
    ids = [c['name'] for c in self.cases]

    @pytest.mark.parametrize('case', self.cases, ids=ids)
    def test_golden(case):
      self.check_golden(case)

    @pytest.mark.parametrize('case', self.cases, ids=ids)
    def test_live(case):
      self.check_live(case)
    return test_golden, test_live

  def apply_tests(self):
    """`(test_apply_golden, test_apply_live)` over the `apply_fn` cases."""
    ids = [c['name'] for c in self.apply_cases]

    @pytest.mark.parametrize('case', self.apply_cases, ids=ids)
    def test_apply_golden(case):
      self.check_apply_golden(case)

    @pytest.mark.parametrize('case', self.apply_cases, ids=ids)
    def test_apply_live(case):
      self.check_apply_live(case)
    return test_apply_golden, test_apply_live
