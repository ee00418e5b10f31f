"""`max_learning_rate`: the largest stable learning rate on MSE."""
import numbers

import numpy as np
import tensorflow as tf

from nt_gp.predict import _utils

__all__ = ['max_learning_rate']


def max_learning_rate(ntk_train_train, y_train_size=None, momentum=0.,
                      eps=1e-12):
  r"""Largest learning rate for which (momentum) gradient descent on MSE converges.

  For the loss `0.5 * mean((f(x_train) - y_train)**2)` of an infinitely wide
  network, a gradient step multiplies the train residual by
  `I - lr * NTK / y_train_size`, a contraction for
  `lr < 2 * y_train_size / lambda_max(NTK)`; with momentum the bound is
  `2 * (1 + momentum) * y_train_size / lambda_max(NTK)`.

  Args:
    ntk_train_train: train-train NTK, `(N, N)` or zipped `(N, N, K, K, ...)`;
      float32 or float64.
    y_train_size: `y_train.size` (number of train outputs); None infers it
      from `ntk_train_train` assuming `trace_axes=()` (i.e. `N`).
    momentum: non-negative momentum of the optimizer.
    eps: non-negative number added to the eigenvalue to avoid dividing by 0.

  Returns:
    The maximal learning rate, a 0-d tensor of the kernel's dtype.

  Example:
    >>> import numpy as np
    >>> from nt_gp import predict
    >>> ntk = np.array([[2., 0.], [0., 1.]])
    >>> float(predict.max_learning_rate(ntk, eps=0.))  # 2 * 2 / 2
    2.0
  """
  k = _utils.to_tensor(ntk_train_train, 'ntk_train_train')
  _utils.check_kernel(k, 'ntk_train_train', square=True)
  _utils.check_scalar(momentum, 'momentum')
  _utils.check_scalar(eps, 'eps')
  k2d = _utils.make_2d(k)
  _utils.check_symmetric(k2d, 'ntk_train_train')
  if y_train_size is None:
    factor = int(k2d.shape[0])
  else:
    if (isinstance(y_train_size, bool) or
        not isinstance(y_train_size, (numbers.Integral, np.integer)) or
        y_train_size <= 0):
      raise ValueError(f'`y_train_size` must be a positive integer, got '
                       f'{y_train_size!r}.')
    factor = int(y_train_size)
  max_eval = tf.linalg.eigvalsh(k2d)[-1]
  dtype = k2d.dtype
  denominator = max_eval + _utils.scalar_as(eps, dtype)
  # A kernel with no positive eigenvalue (not an NTK: those are positive
  # semi-definite) would give a negative or infinite "learning rate".
  message = ('`ntk_train_train` has no positive eigenvalue (its largest '
             'eigenvalue plus `eps` is <= 0), so no learning rate makes '
             'gradient descent converge; an NTK is positive semi-definite.')
  value = _utils.static_value(denominator)
  if value is None:
    with tf.control_dependencies(
        [tf.debugging.assert_positive(denominator, message=message)]):
      denominator = tf.identity(denominator)
  elif not value > 0:
    raise ValueError(f'{message} Largest eigenvalue: {float(max_eval):.4g}.')
  return (2. * (1. + _utils.scalar_as(momentum, dtype)) *
          tf.constant(factor, dtype) / denominator)
