"""scikit-learn's bundled data sets for the demo (no download).

* digits: 1797 8x8 grey images of handwritten digits, as `(N, 8, 8, 1)`
  images standardised with the training set's pixel mean and standard
  deviation; labels as centred one-hot targets (`onehot - 0.1`), the usual
  way of doing classification by GP regression with NNGP/NTK kernels.
* diabetes: 442 patients, 10 standardised features, a disease-progression
  score to regress.
"""
from typing import NamedTuple

import numpy as np

from nt_gp import extras

__all__ = ['Split', 'load_digits_images', 'load_diabetes_split']


class Split(NamedTuple):
  """A train/test split: inputs, targets and (for classification) labels.

  Example:
    >>> s = load_diabetes_split(n_train=100, n_test=50)
    >>> s.x_train.shape, s.y_train.shape, s.x_test.shape
    ((100, 10), (100, 1), (50, 10))
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  labels_train: np.ndarray
  labels_test: np.ndarray


def load_digits_images(n_train: int, n_test: int, seed: int = 0) -> Split:
  """Digits as standardised `(N, 8, 8, 1)` images with centred one-hots.

  Args:
    n_train, n_test: sizes of the random, disjoint train and test sets
      (at most 1797 together).
    seed: seed of the permutation.

  Returns:
    A `Split` with `x_*` of shape `(N, 8, 8, 1)` (float64), `y_*` of shape
    `(N, 10)` (one-hot minus 0.1) and integer `labels_*`.

  Example:
    >>> s = load_digits_images(n_train=20, n_test=10)
    >>> s.x_train.shape, s.y_train.shape, s.labels_test.shape
    ((20, 8, 8, 1), (20, 10), (10,))
    >>> float(abs(s.y_train.sum(1) - 0.).max()) < 1e-12
    True
  """
  extras.require('demo', 'load_digits_images (scikit-learn\'s bundled data)')
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  x, labels = load_digits(return_X_y=True)
  if n_train + n_test > len(x):
    raise ValueError(f'digits has {len(x)} images; asked for {n_train} + '
                     f'{n_test}.')
  idx = np.random.RandomState(seed).permutation(len(x))[:n_train + n_test]
  x = x[idx].astype(np.float64).reshape(-1, 8, 8, 1)
  labels = labels[idx]
  mean, std = x[:n_train].mean(), x[:n_train].std()
  x = (x - mean) / std
  y = np.eye(10)[labels] - 0.1
  return Split(x[:n_train], y[:n_train], x[n_train:], y[n_train:],
               labels[:n_train], labels[n_train:])


def load_diabetes_split(n_train: int = 330, n_test: int = 112,
                        seed: int = 0) -> Split:
  """Diabetes regression: standardised features, targets in their units.

  Features are standardised with the training statistics; targets are the
  raw disease-progression scores, shape `(N, 1)`. `labels_*` are empty.

  Example:
    >>> s = load_diabetes_split(n_train=300, n_test=100)
    >>> bool(abs(s.x_train.mean(0)).max() < 1e-12)
    True
  """
  extras.require('demo', 'load_diabetes_split (scikit-learn\'s bundled data)')
  from sklearn.datasets import load_diabetes  # pylint: disable=g-import-not-at-top
  x, y = load_diabetes(return_X_y=True)
  if n_train + n_test > len(x):
    raise ValueError(f'diabetes has {len(x)} rows; asked for {n_train} + '
                     f'{n_test}.')
  idx = np.random.RandomState(seed).permutation(len(x))[:n_train + n_test]
  x, y = x[idx].astype(np.float64), y[idx].astype(np.float64)[:, None]
  x = (x - x[:n_train].mean(0)) / x[:n_train].std(0)
  empty = np.zeros((0,), np.int64)
  return Split(x[:n_train], y[:n_train], x[n_train:], y[n_train:], empty,
               empty)
