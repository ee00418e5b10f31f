"""scikit-learn's bundled 8x8 digits (no download) as a regression problem.

Shared by the examples: features are standardised and scaled to unit mean
square, labels are one-hot vectors centred at zero (`onehot - 0.1`), and the
loss is the mean squared error used by `nt_gp.predict`:
`0.5 * mean((f(x) - y) ** 2)`.
"""
import numpy as np


def load(n_train, n_test, seed=0, dtype=np.float32):
  """Returns `(x_train (n_train, 64), y_train (n_train, 10), x_test,
  y_test)`."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  x, y = load_digits(return_X_y=True)
  idx = np.random.RandomState(seed).permutation(len(x))[:n_train + n_test]
  x = x[idx].astype(np.float64)
  x = (x - x.mean(0)) / (x.std(0) + 1e-8)
  x /= np.sqrt(np.mean(x ** 2, axis=1, keepdims=True))
  y = np.eye(10)[y[idx]] - 0.1
  x, y = x.astype(dtype), y.astype(dtype)
  return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def loss(fx, y):
  """`0.5 * mean((fx - y) ** 2)` over the last two axes."""
  return 0.5 * np.mean((np.asarray(fx) - y) ** 2, axis=(-2, -1))


def accuracy(fx, y):
  """Fraction of rows whose largest output is the true class."""
  return np.mean(np.argmax(np.asarray(fx), -1) == np.argmax(y, -1), axis=-1)


def save_figure(fig, out_dir, name):
  """Saves a matplotlib figure as `<out_dir>/<name>.png`; returns the path."""
  import os  # pylint: disable=g-import-not-at-top
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f'{name}.png')
  fig.savefig(path, dpi=100, bbox_inches='tight')
  return path
