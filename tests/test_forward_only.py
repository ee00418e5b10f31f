"""`nt_gp.ops.forward_only`: custom gradients dropped only where asked.

The forward pass of a covariance map is traced without its inner custom
gradients (its gradient recomputes the map instead); everywhere else they
apply. Checked with a function whose custom gradient differs from the
derivative of its forward operations, and end to end: the ReLU kernel's
gradient at the diagonal (cosine exactly 1, where arccos has no derivative)
stays finite and equals central finite differences.
"""
import numpy as np
import tensorflow as tf

from nt_gp import stax
from nt_gp.ops import forward_only
from tests import finite_differences


@forward_only.custom_gradient
def _scaled_identity(x):
  return tf.identity(x), lambda dy: 3. * dy   # not the true derivative (1)


def _grad(x):
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = _scaled_identity(x)
  return float(tape.gradient(y, x))


def test_custom_gradient_applies_outside_forward_only():
  x = tf.constant(2.)
  assert _grad(x) == 3.
  with forward_only.forward_only():
    assert _grad(x) == 1.     # the forward operations' own derivative
  assert _grad(x) == 3.       # and back again


def test_forward_only_is_per_thread():
  import threading  # pylint: disable=g-import-not-at-top
  seen = []
  with forward_only.forward_only():
    t = threading.Thread(target=lambda: seen.append(_grad(tf.constant(1.))))
    t.start()
    t.join()
  assert seen == [3.]


def test_relu_kernel_gradient_at_the_diagonal_matches_finite_differences():
  x = np.random.default_rng(1).normal(size=(5, 3))
  def total(w):
    kernel_fn = stax.serial(stax.Dense(8, W_std=w, b_std=0.1), stax.Relu(),
                            stax.Dense(1, W_std=1.2))[2]
    k = kernel_fn(x, None, ('nngp', 'ntk'))
    return tf.reduce_sum(k.nngp) + tf.reduce_sum(tf.linalg.diag_part(k.ntk))
  g, fd = finite_differences.scalar_gradient_and_difference(total, 1.3)
  assert np.isfinite(g)
  np.testing.assert_allclose(g, fd, rtol=1e-6)
