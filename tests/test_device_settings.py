"""Settings that matter on accelerators and in long sessions: TF32 is off
while nt_gp computes kernels (unless allowed), and new input sizes never
trigger TensorFlow's frequent-retracing warning."""
import logging

import numpy as np
import pytest
import tensorflow as tf

import nt_gp
import nt_gp.empirical
import nt_gp.tfp
from nt_gp import stax


@pytest.fixture
def restore_tf32():
  before = tf.config.experimental.tensor_float_32_execution_enabled()
  allow = nt_gp.config.allow_tf32
  yield
  nt_gp.config.allow_tf32 = allow
  tf.config.experimental.enable_tensor_float_32_execution(before)


def _mlp():
  return stax.serial(stax.Dense(8, W_std=1.5, b_std=0.1), stax.Relu(),
                     stax.Dense(1, W_std=1.5, b_std=0.1))


def test_kernel_computation_turns_tf32_off(restore_tf32):  # pylint: disable=redefined-outer-name,unused-argument
  tf.config.experimental.enable_tensor_float_32_execution(True)
  assert not nt_gp.config.allow_tf32          # the default
  _mlp()[2](np.ones((2, 3), np.float32), None, 'nngp')
  assert not tf.config.experimental.tensor_float_32_execution_enabled()


def test_empirical_kernels_turn_tf32_off(restore_tf32):  # pylint: disable=redefined-outer-name,unused-argument
  tf.config.experimental.enable_tensor_float_32_execution(True)
  init_fn, apply_fn, _ = stax.serial(stax.Dense(4), stax.Relu(), stax.Dense(1))
  _, params = init_fn(0, (-1, 3))
  x = np.ones((2, 3), np.float32)
  nt_gp.empirical.empirical_ntk_fn(apply_fn)(x, None, params)
  assert not tf.config.experimental.tensor_float_32_execution_enabled()


def test_allow_tf32_opts_in(restore_tf32):  # pylint: disable=redefined-outer-name,unused-argument
  tf.config.experimental.enable_tensor_float_32_execution(False)
  nt_gp.config.allow_tf32 = True
  _mlp()[2](np.ones((2, 3), np.float32), None, 'nngp')
  assert tf.config.experimental.tensor_float_32_execution_enabled()
  nt_gp.config.allow_tf32 = False
  _mlp()[2](np.ones((2, 3), np.float32), None, 'nngp')
  assert not tf.config.experimental.tensor_float_32_execution_enabled()


class _Collect(logging.Handler):

  def __init__(self):
    super().__init__()
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


@pytest.fixture
def tf_warnings():
  handler = _Collect()
  logger = tf.get_logger()
  logger.addHandler(handler)
  yield handler.messages
  logger.removeHandler(handler)


def _retracing(messages):
  return [m for m in messages if 'retracing' in m]


def test_new_input_sizes_through_kernel_fn_do_not_warn(tf_warnings):  # pylint: disable=redefined-outer-name
  """N = 100, 101, ... through one kernel_fn: one trace each, no warning,
  and every kernel is the closed form W_std² x·x'/D + b_std²."""
  _, _, kernel_fn = stax.Dense(1, W_std=1.5, b_std=0.1)
  rng = np.random.RandomState(0)
  for n in range(100, 108):
    x = rng.randn(n, 5).astype(np.float32)
    got = kernel_fn(x, None, 'nngp').numpy()
    np.testing.assert_allclose(got, 2.25 * x @ x.T / 5 + 0.01, rtol=1e-5,
                               atol=1e-6)
  assert not _retracing(tf_warnings), _retracing(tf_warnings)


def test_new_input_sizes_through_neural_kernel_matrix_do_not_warn(tf_warnings):  # pylint: disable=redefined-outer-name
  kernel = nt_gp.tfp.NeuralKernel(
      lambda W_std: stax.serial(stax.Dense(8, W_std=W_std), stax.Relu(),
                                stax.Dense(1, W_std=W_std)), W_std=1.5)
  rng = np.random.RandomState(1)
  x2 = rng.randn(3, 4)
  for n in range(100, 108):
    k = kernel.matrix(rng.randn(n, 4), x2)
    assert k.shape == (n, 3)
  assert not _retracing(tf_warnings), _retracing(tf_warnings)


@pytest.mark.parametrize('graph_first_call', [True, False])
def test_each_input_size_is_traced_at_most_twice(graph_first_call):
  """The propagation runs (traces) once per input size when XLA compiles on
  the first call; with the graph-mode first call, a second time when that
  size comes again (now compiled). Repeated sizes, in any order, then reuse
  their compiled kernel."""
  traces = []

  @stax.layer
  def Counted():  # pylint: disable=invalid-name
    init_fn = stax.make_init_fn(lambda s: s)

    @stax.requires(diagonal_spatial=stax.Diagonal())
    def rule(k, **kwargs):  # pylint: disable=unused-argument
      traces.append(k.nngp.shape)
      return k
    return init_fn, lambda params, x, **kw: x, rule

  _, _, kernel_fn = stax.serial(stax.Dense(1), Counted())
  rng = np.random.RandomState(2)
  old = nt_gp.config.graph_first_call_max_entries
  nt_gp.config.graph_first_call_max_entries = 2 ** 22 if graph_first_call else 0
  try:
    for n in (5, 6, 5, 6, 7, 5, 6):
      kernel_fn(rng.randn(n, 3), None, 'nngp')
  finally:
    nt_gp.config.graph_first_call_max_entries = old
  assert [s[-1] for s in traces] == (
      [5, 6, 5, 6, 7] if graph_first_call else [5, 6, 7]), traces


def test_kernels_of_many_shapes_do_not_warn(tf_warnings):  # pylint: disable=redefined-outer-name
  """Kernels of other ranks, sizes and dtypes (symmetric, cross, spatial)
  pass the finiteness check of every kernel without retracing warnings."""
  _, _, dense = stax.Dense(1)
  _, _, spatial = stax.Conv(1, (3,), padding='SAME')
  rng = np.random.RandomState(3)
  for dtype in (np.float64, np.float32):
    x = rng.randn(3, 4).astype(dtype)
    dense(x, None, 'nngp')
    dense(x, x[:2], 'nngp')
    spatial(rng.randn(3, 4, 2).astype(dtype), None, 'nngp')
    dense(x[:2], None, 'nngp')
  assert not _retracing(tf_warnings), _retracing(tf_warnings)


def test_compiled_kernels_take_new_pattern_values():
  """Graph patterns of one shape share a compiled kernel but not their
  values: each call equals a fresh network's kernel of that pattern."""
  net = lambda: stax.serial(stax.Dense(1), stax.Aggregate(),  # pylint: disable=g-long-lambda
                            stax.GlobalAvgPool())[2]
  kernel_fn = net()
  x = np.random.RandomState(0).randn(2, 4, 3)
  rng = np.random.RandomState(1)
  results = []
  for _ in range(3):
    p = (rng.rand(2, 4, 4) > 0.5).astype(np.float64)
    got = kernel_fn(x, None, 'nngp', pattern=(p, p)).numpy()
    np.testing.assert_allclose(
        got, net()(x, None, 'nngp', pattern=(p, p)).numpy(), rtol=1e-12)
    results.append(got)
  assert not np.allclose(results[0], results[1])
