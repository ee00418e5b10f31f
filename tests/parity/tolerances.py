"""Parity tolerances (float64 relative error) shared by the parity checks."""
DEFAULT = 1e-6
KERNEL_CASES = {}
APPLY = 1e-6
PREDICT = 1e-6
EMPIRICAL = 1e-6

# float32 kernels against the float64 golden values.
FLOAT32 = 2e-4

# Freshly generated inputs against those stored in a golden file: equal up to
# the rounding of numpy reductions on another CPU.
INPUTS_RTOL = 1e-12
INPUTS_ATOL = 1e-14


def kernel_rtol(suite: str, case: str) -> float:
  """The float64 tolerance of a kernel case."""
  return KERNEL_CASES.get((suite, case), DEFAULT)
