"""Full-batch gradient descent on the examples' MSE for `f(params, x)`.

Parameters are nested structures of tensors (None leaves kept); training
copies them into variables and runs compiled steps.
"""
import numpy as np
import tensorflow as tf


class GradientDescent:
  """`step()` does one update `params -= lr * d loss / d params` of
  `loss = 0.5 * mean((f(params, x) - y) ** 2)`.

  Attributes:
    params: the current parameters (nested, as given, with variables).
  """

  def __init__(self, f, params, x, y, learning_rate):
    leaves = tf.nest.flatten(params)
    self._idx = [i for i, l in enumerate(leaves) if l is not None]
    self._vars = [tf.Variable(leaves[i]) for i in self._idx]
    self._leaves, self._structure = leaves, params
    self._f = f
    x, y = tf.constant(x), tf.constant(y)
    lr = tf.constant(learning_rate, self._vars[0].dtype)

    @tf.function
    def step():
      with tf.GradientTape() as tape:
        loss = 0.5 * tf.reduce_mean((f(self.params, x) - y) ** 2)
      grads = tape.gradient(loss, self._vars)
      for v, g in zip(self._vars, grads):
        v.assign_sub(tf.cast(lr, v.dtype) * g)
      return loss
    self.step = step

  @property
  def params(self):
    leaves = list(self._leaves)
    for i, v in zip(self._idx, self._vars):
      leaves[i] = v
    return tf.nest.pack_sequence_as(self._structure, leaves)

  def outputs(self, x):
    return np.asarray(self._f(self.params, x))


def log_steps(n_steps, n_points=30):
  """Roughly log-spaced steps `0 .. n_steps` (unique ints, 0 included)."""
  steps = np.unique(np.round(np.logspace(0, np.log10(n_steps), n_points)))
  return np.concatenate([[0], steps.astype(int)])
