"""Float64 parity tolerances, from measured worst cases.

Measured with ``python tools/parity_errors.py --live`` (2-core AMD EPYC,
TensorFlow 2.21, neural-tangents 0.6.5 / jax 0.4.30): the largest entrywise
relative error (`harness.relative_error`) of every case, against the golden
files and against a live neural-tangents run (identical here).

* Kernel suites: the median case is at 1e-15 and every case not listed in
  `KERNEL_CASES` at or below 1e-12, so `DEFAULT` is 1e-11. The listed cases
  push rounding through a steep function (ReLU's and Sign's arc-cosine and
  arc-sine kernels near correlation 1, after Flatten or deep stacks), where
  both libraries lose digits; each gets 5x its measured error, rounded up
  to 1, 2 or 5 x 10^k. Only Sign (1.7e-8 measured) needs more than 5e-8.
* `apply_fn` cases: worst 2.7e-14; `APPLY` = 1e-12.
* `predict` closed forms: worst 3.7e-13; `PREDICT` = 1e-11. The ODE cases
  keep `predict_cases.ODE_RTOL` (both solvers stop at rtol 1.4e-8; worst
  3e-6).
* Empirical kernels (max error / max entry): worst 1.2e-15; `EMPIRICAL` =
  1e-12.

A float32 step anywhere in a float64 path gives errors of 1e-8 or more, so it
fails every default tolerance (tests/test_parity_tolerances.py checks that).
"""
DEFAULT = 1e-11

# (suite, case): tolerance  (measured worst error in the comment)
KERNEL_CASES = {
    ('fc', 'repeat'): 1e-8,                                     # 1.4e-9
    ('fc_spatial', 'diagonal_spatial_sign'): 1e-7,              # 1.7e-8
    ('conv', 'conv2d_strided_same_flatten'): 5e-9,              # 6.2e-10
    ('conv', 'conv2d_valid_flatten'): 5e-9,                     # 4.8e-10
    ('conv', 'conv3d_same_flatten'): 2e-9,                      # 2.7e-10
    ('conv', 'layernorm_channel_flatten'): 1e-9,                # 1.2e-10
    ('conv', 'conv_transpose_valid'): 1e-9,                     # 1.1e-10
    ('conv', 'conv_local_flatten'): 1e-9,                       # 1.0e-10
    ('index_resize', 'index_ellipsis_crop_flatten'): 2e-9,      # 3.8e-10
    ('index_resize', 'index_batch_step_flatten'): 2e-9,         # 3.7e-10
    ('attention', 'transformer_1d_gap'): 2e-9,                  # 2.5e-10
    ('graph', 'dot_rhs_scalar_dense'): 2e-8,                    # 3.6e-9
    ('masking', 'flatten_dense_relu'): 5e-8,                    # 4.9e-9
}

APPLY = 1e-12
PREDICT = 1e-11
EMPIRICAL = 1e-12

# float32 kernels against the float64 golden values.
FLOAT32 = 2e-4

# Freshly generated inputs against those stored in a golden file: equal up to
# the rounding of numpy reductions on another CPU.
INPUTS_RTOL = 1e-12
INPUTS_ATOL = 1e-14


def kernel_rtol(suite: str, case: str) -> float:
  """The float64 tolerance of a kernel case."""
  return KERNEL_CASES.get((suite, case), DEFAULT)
