"""The compiled maps skip the gradients of hyperparameters derived only from
plain numbers, and of nothing else: a user's tensor hyperparameter keeps an
exact gradient however it is differentiated (finite differences)."""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import stax
from nt_gp.ops import compile as compile_ops

_X = np.array([[1., 2., 0., -1.], [0., 1., 1., 1.], [-2., 1., 0., 1.]])


def test_graph_masks():
  with tf.Graph().as_default():
    user = tf.constant(0.5, tf.float64)
    arg = tf.compat.v1.placeholder(tf.float64, ())
    with compile_ops.rule_scope():
      own = tf.constant(0.5, tf.float64)
      derived = tf.square(own - 1.) / 2
      from_user = tf.square(tf.cast(user, tf.float32)) / 2
      from_arg = own * arg
    with compile_ops.rule_scope():  # a second scope is uniquified
      own2 = tf.constant(2., tf.float64) * 3.
    mask = compile_ops.gradient_mask([own, derived, user, from_user, arg,
                                      from_arg, own2])
  assert mask == (False, False, True, True, True, True, False)


def test_eager_masks():
  a, b = tf.constant(1.), tf.constant(2.)
  with tf.GradientTape() as tape:
    tape.watch(a)
    assert compile_ops.gradient_mask([a, b, 2 * a]) == (True, False, True)


def _kernel_sum(layer, w_std):
  kernel_fn = stax.serial(stax.Dense(3, W_std=w_std, b_std=0.2), layer,
                          stax.Dense(1, W_std=w_std))[2]
  k = kernel_fn(_X, None, ('nngp', 'ntk'))
  return tf.reduce_sum(k.nngp) + tf.reduce_sum(k.ntk)


LAYERS = {
    'abrelu': lambda a: stax.ABRelu(a, 1.2),
    'sin': lambda a: stax.Sin(a, 0.8, 0.3),
    'gaussian': lambda a: stax.Gaussian(0.9, a),
}


@pytest.mark.parametrize('name', sorted(LAYERS))
def test_user_constants_in_a_function_keep_their_gradient(name):
  """`tf.gradients` inside a `tf.function` with respect to a `tf.constant`
  the function itself created (a graph constant, like the library's own)."""
  make = LAYERS[name]
  value, w = -0.3, 1.4

  @tf.function
  def grads():
    a = tf.constant(value, tf.float64)
    w_std = tf.constant(w, tf.float64)
    return tf.gradients(_kernel_sum(make(a), w_std), [a, w_std])

  got = [float(g) for g in grads()]
  h = 1e-5
  fd_a = (float(_kernel_sum(make(value + h), w)) -
          float(_kernel_sum(make(value - h), w))) / (2 * h)
  fd_w = (float(_kernel_sum(make(value), w + h)) -
          float(_kernel_sum(make(value), w - h))) / (2 * h)
  np.testing.assert_allclose(got, [fd_a, fd_w], rtol=1e-6)
  assert abs(fd_a) > 1e-3


def test_plain_numbers_get_no_gradient_sums(monkeypatch):
  """A network with plain-number ReLU slopes and Sin parameters, whose
  `W_std` a tape differentiates, runs gradients that compute nothing for
  those numbers; its gradient still equals finite differences."""
  masks = []

  def recording(tensors, _mask=compile_ops.gradient_mask):
    masks.append(_mask(tensors))
    return masks[-1]
  monkeypatch.setattr(compile_ops, 'gradient_mask', recording)
  w = tf.Variable(1.3, dtype=tf.float64)
  layer = stax.serial(stax.Relu(), stax.Dense(3, W_std=w), stax.Sin(1.1, 0.7))
  with tf.GradientTape() as tape:
    total = _kernel_sum(layer, w)
  got = float(tape.gradient(total, w))
  assert len(masks) >= 2  # the ReLU's map and the Sin's
  assert not any(any(m) for m in masks), masks
  monkeypatch.undo()
  h = 1e-5

  def at(v):
    return float(_kernel_sum(stax.serial(stax.Relu(), stax.Dense(3, W_std=v),
                                         stax.Sin(1.1, 0.7)), v))
  np.testing.assert_allclose(got, (at(1.3 + h) - at(1.3 - h)) / (2 * h),
                             rtol=1e-6)
