"""A kernel that overflows is an error naming what to do, not NaN/inf
entries (`nt_gp.nonfinite`)."""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import stax
from nt_gp.nonfinite import NonFiniteKernelError, finite_checks


def relu_net(b_std=0.05):
  return stax.serial(stax.Dense(8, 1.5, b_std), stax.Relu(),
                     stax.Dense(1, 1.5, b_std))[2]


@pytest.mark.parametrize('dtype, value, b_std', [
    (np.float32, 1e30, 0.05),      # squared norms beyond float32's 3.4e38
    (np.float64, 1e200, None),     # ... beyond float64's 1.8e308
])
def test_overflow_raises_with_a_hint(dtype, value, b_std):
  kernel_fn = relu_net(b_std)
  x = np.full((3, 4), value, dtype)
  for get in ('nngp', ('nngp', 'ntk'), 'ntk'):
    with pytest.raises(NonFiniteKernelError,
                       match='non-finite.*overflowed.*rescale'):
      kernel_fn(x, None, get)
  with pytest.raises(NonFiniteKernelError):
    kernel_fn(x, None)                        # the whole Kernel
  # The float64 kernel of the float32 overflow is finite and right: the
  # ReLU network's NNGP is positively homogeneous of degree 2 without bias.
  if dtype == np.float32:
    big = relu_net(None)(x.astype(np.float64), None, 'nngp')
    small = relu_net(None)(x.astype(np.float64) / value, None, 'nngp')
    np.testing.assert_allclose(big, small * value ** 2, rtol=1e-12)


def test_float32_hint_suggests_float64():
  x = np.full((2, 3), 1e30, np.float32)
  with pytest.raises(NonFiniteKernelError, match='use float64 inputs'):
    relu_net()(x, None, 'nngp')


def test_finite_kernels_pass_unchanged():
  x = np.random.RandomState(0).randn(4, 3)
  k = relu_net()(x, None, ('nngp', 'ntk'))
  assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))


def test_inside_tf_function_the_check_is_an_op():
  kernel_fn = relu_net()

  @tf.function
  def f(x):
    return kernel_fn(x, None, 'nngp')
  np.testing.assert_allclose(f(tf.ones((2, 3))), kernel_fn(np.ones((2, 3)),
                                                           None, 'nngp'))
  with pytest.raises(tf.errors.InvalidArgumentError, match='non-finite'):
    f(tf.fill((2, 3), 1e30))


def test_the_check_can_be_turned_off():
  x = np.full((2, 3), 1e30, np.float32)
  with finite_checks(False):
    k = relu_net()(x, None, 'nngp')
  assert not np.all(np.isfinite(k))
  with pytest.raises(NonFiniteKernelError):
    relu_net()(x, None, 'nngp')


def test_under_xla_of_nt_gp_itself_the_result_is_checked_after_the_call():
  """XLA drops assertions; with `jit_compile=True` nt_gp checks the compiled
  call's result instead (kernel_fn and the TFP/GPflow adapters), and says
  nothing about its own compiled functions."""
  import warnings  # pylint: disable=g-import-not-at-top
  import nt_gp  # pylint: disable=g-import-not-at-top
  from nt_gp.nonfinite import NonFiniteCheckWarning  # pylint: disable=g-import-not-at-top
  from nt_gp.tfp import NeuralKernel  # pylint: disable=g-import-not-at-top

  def mlp(W_std, b_std):
    return stax.serial(stax.Dense(1, W_std, b_std), stax.Relu(),
                       stax.Dense(1, W_std, b_std))
  big = np.full((3, 2), 1e30, np.float32)
  ok = np.random.RandomState(1).randn(3, 2).astype(np.float32)
  with nt_gp.compilation(jit_compile=True), warnings.catch_warnings():
    warnings.simplefilter('error', NonFiniteCheckWarning)
    with pytest.raises(NonFiniteKernelError, match='non-finite'):
      relu_net()(big, None, 'nngp')
    kernel = NeuralKernel(mlp, W_std=1.0, b_std=0.1)
    with pytest.raises(NonFiniteKernelError, match='non-finite'):
      kernel.matrix(big, big)
    np.testing.assert_allclose(
        kernel.matrix(ok, ok), mlp(1.0, 0.1)[2](ok, None, 'nngp'), rtol=1e-5)
    from nt_gp.gpflow import NeuralKernel as GPflowKernel  # pylint: disable=g-import-not-at-top
    with pytest.raises(NonFiniteKernelError, match='non-finite'):
      GPflowKernel(mlp, W_std=1.0, b_std=0.1).K(np.full((3, 2), 1e200))


def test_inside_a_users_xla_function_it_warns():
  from nt_gp.nonfinite import NonFiniteCheckWarning  # pylint: disable=g-import-not-at-top
  kernel_fn = relu_net()
  f = tf.function(lambda x: kernel_fn(x, None, 'nngp'), jit_compile=True,
                  autograph=False)
  with pytest.warns(NonFiniteCheckWarning, match='check_numerics outside') as rec:
    out = f(tf.fill((2, 3), 1e30))
  # It names the user's line that computes the kernel (so Python's default
  # filter shows it once per such line), not a line inside nt_gp.
  assert {w.filename for w in rec} == {__file__}, [w.filename for w in rec]
  # What the warning is about: XLA returns the non-finite kernel.
  assert not np.all(np.isfinite(out))
