"""Central finite differences of a scalar function, for gradient tests."""
import tensorflow as tf


def scalar_gradient_and_difference(total, w0: float, h: float = 1e-5):
  """`(d total/dw at w0 by GradientTape, its central difference with step h)`.

  `total(w)` is a scalar tensor function of a float64 scalar (a
  `tf.Variable` for the tape, plain floats for the differences).
  """
  w = tf.Variable(w0, dtype=tf.float64)
  with tf.GradientTape() as tape:
    value = total(w)
  g = float(tape.gradient(value, w))
  return g, (float(total(w0 + h)) - float(total(w0 - h))) / (2 * h)
