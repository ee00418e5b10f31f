"""End-to-end demo: NNGP/NTK regression with a deep ReLU network on digits.

Run with `nt-gp demo` (or `nt-gp demo --quick`). Data: scikit-learn's bundled
8x8 digits (no download). Classification is done as regression on centred
one-hot targets, as in the neural-tangents papers.
"""
import os
import time

import numpy as np
import tensorflow as tf

from nt_gp import stax

__all__ = ['run', 'load_digits_split', 'gp_regression_accuracy']


def load_digits_split(n_train, n_test, seed=0, dtype=np.float64):
  """Standardised digits features and centred one-hot labels.

  Returns:
    `(x_train (n_train, 64), y_train (n_train, 10), x_test, y_test)`.
  """
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  x, y = load_digits(return_X_y=True)
  rng = np.random.RandomState(seed)
  idx = rng.permutation(len(x))[:n_train + n_test]
  x = x[idx].astype(dtype)
  x = (x - x.mean(0)) / (x.std(0) + 1e-8)
  x /= np.linalg.norm(x, axis=1, keepdims=True) / np.sqrt(x.shape[1])
  onehot = np.eye(10, dtype=dtype)[y[idx]] - 0.1
  return x[:n_train], onehot[:n_train], x[n_train:], onehot[n_train:]


def gp_regression_accuracy(k_train, k_test_train, y_train, y_test,
                           diag_reg=1e-4):
  """Posterior-mean classification accuracy of GP regression on one-hots."""
  k_train = tf.convert_to_tensor(k_train)
  n = k_train.shape[0]
  reg = diag_reg * tf.linalg.trace(k_train) / n
  chol = tf.linalg.cholesky(k_train + reg * tf.eye(n, dtype=k_train.dtype))
  alpha = tf.linalg.cholesky_solve(chol, tf.convert_to_tensor(y_train))
  mean = tf.matmul(k_test_train, alpha).numpy()
  return float(np.mean(mean.argmax(1) == y_test.argmax(1)))


def run(quick=False, out_dir='demo-output'):
  """Computes NNGP/NTK of a depth-5 ReLU MLP and reports test accuracy."""
  n_train, n_test = (300, 200) if quick else (1200, 500)
  x_train, y_train, x_test, y_test = load_digits_split(n_train, n_test)
  _, _, kernel_fn = stax.serial(
      *[stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu()] * 5,
      stax.Dense(10, W_std=1.5, b_std=0.05))
  t0 = time.time()
  k_train = kernel_fn(x_train, None, ('nngp', 'ntk'))
  k_test = kernel_fn(x_test, x_train, ('nngp', 'ntk'))
  seconds = time.time() - t0
  print(f'digits: {n_train} train / {n_test} test, depth-5 ReLU MLP kernels '
        f'in {seconds:.2f} s')
  results = {}
  for get in ('nngp', 'ntk'):
    acc = gp_regression_accuracy(getattr(k_train, get), getattr(k_test, get),
                                 y_train, y_test)
    results[get] = acc
    print(f'  {get.upper():5s} test accuracy: {acc:.3f}')
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'results.txt'), 'w') as f:
    for get, acc in results.items():
      f.write(f'{get}\t{acc:.4f}\n')
  return 0
