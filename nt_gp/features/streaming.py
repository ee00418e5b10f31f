"""Features over many inputs, block by block.

`feature_batches` computes a feature map over `x` in blocks of `batch_size`
(any array-like with `len` and slicing: numpy arrays, `np.memmap`, h5py
datasets) or over an iterable of blocks; `normal_equations` sums the normal
equations of those blocks, so the memory is `O(m²)` whatever `N` is and the
data can stay on disk. `predict` evaluates a `FeatureRegression` the same way.
Long runs show a tqdm bar on a terminal.
"""
from typing import Iterable, Optional

import numpy as np
import tensorflow as tf
import tqdm

from nt_gp.features.regression import NormalEquations

__all__ = ['feature_batches', 'normal_equations', 'predict']


def _check_batch_size(batch_size):
  if isinstance(batch_size, bool) or not isinstance(
      batch_size, (int, np.integer)) or batch_size < 1:
    raise ValueError(f'`batch_size` must be a positive int, got '
                     f'{batch_size!r}.')
  return int(batch_size)


def _blocks(x, y, batch_size):
  """Yields `(x_block, y_block)`; `y` may be None."""
  if hasattr(x, '__len__') and hasattr(x, '__getitem__') and hasattr(
      x, 'shape'):
    n = len(x)
    if y is not None and len(y) != n:
      raise ValueError(f'`x` has {n} rows and `y` {len(y)}.')
    for start in range(0, n, batch_size):
      stop = min(start + batch_size, n)
      yield np.asarray(x[start:stop]), (
          None if y is None else np.asarray(y[start:stop]))
    return
  if y is not None:
    raise TypeError('Pass `y` only with an array `x`; an iterable yields '
                    '(x_block, y_block) pairs.')
  for block in x:
    yield block


def _count(x):
  return len(x) if hasattr(x, '__len__') else None


def feature_batches(feature_map, x, batch_size: int = 4096, get='nngp',
                    progress: Optional[bool] = None) -> Iterable:
  """Yields the features of `x` block by block.

  Args:
    feature_map: a `FeatureMap` (from `features_fn`).
    x: `(N, ...)` array-like, or an iterable of input blocks.
    batch_size: rows per block (for array-likes).
    get: `'nngp'` or `'ntk'`.
    progress: show a tqdm bar (None: only on a terminal).

  Yields:
    `(n_block, dim)` feature tensors (spatial axes flattened).

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax, features
    >>> phi = features.features_fn(stax.serial(stax.Dense(1), stax.Relu()), 8)
    >>> [tuple(f.shape) for f in feature_batches(phi, np.ones((5, 2)), 2)]
    [(2, 8), (2, 8), (1, 8)]
  """
  batch_size = _check_batch_size(batch_size)
  blocks = (_blocks(x, None, batch_size) if hasattr(x, 'shape') else x)
  with tqdm.tqdm(total=_count(x), unit='row', desc=f'{get} features',
                 disable=None if progress is None else not progress,
                 leave=False) as bar:
    for block in blocks:
      if isinstance(block, tuple):
        block = block[0]
      feats = feature_map(block, get=get)
      feats = tf.reshape(feats, [feats.shape[0], -1])
      bar.update(int(feats.shape[0]))
      yield feats


def normal_equations(feature_map, x, y=None, *, batch_size: int = 4096,
                     get='nngp', progress: Optional[bool] = None
                     ) -> NormalEquations:
  """Normal equations of a feature map over data, summed block by block.

  Args:
    feature_map: a `FeatureMap`.
    x: `(N, ...)` array-like (with `y` `(N,)` or `(N, t)`), or an iterable of
      `(x_block, y_block)` pairs (then `y` is None), e.g. a generator reading
      from disk.
    batch_size: rows per block for array-likes.
    get: `'nngp'` or `'ntk'` features.
    progress: show a tqdm bar (None: only on a terminal).

  Returns:
    `NormalEquations` (float64) for `FeatureRegression`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax, features
    >>> phi = features.features_fn(stax.serial(stax.Dense(1), stax.Relu()), 8)
    >>> x = np.random.RandomState(0).randn(100, 2)
    >>> ne = features.normal_equations(phi, x, x[:, 0], batch_size=32)
    >>> ne.count, ne.gram.shape
    (100, (8, 8))
  """
  batch_size = _check_batch_size(batch_size)
  out = None
  total = _count(x)
  with tqdm.tqdm(total=total, unit='row', desc=f'{get} normal equations',
                 disable=None if progress is None else not progress,
                 leave=False) as bar:
    for xb, yb in _blocks(x, y, batch_size):
      if yb is None:
        raise ValueError('`y` is required: pass targets with an array `x`, '
                         'or (x_block, y_block) pairs.')
      feats = feature_map(xb, get=get)
      feats = tf.reshape(feats, [feats.shape[0], -1])
      yb = np.asarray(yb)
      if out is None:
        out = NormalEquations(feats.shape[1],
                              1 if yb.ndim == 1 else yb.shape[1])
      out.add(feats, yb)
      bar.update(int(feats.shape[0]))
  if out is None:
    raise ValueError('No data: `x` is empty.')
  return out


def predict(regression, feature_map, x, *, batch_size: int = 4096,
            get='nngp', progress: Optional[bool] = None):
  """Predictive mean `(N, t)` and variance `(N,)` of `f`, block by block.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax, features
    >>> phi = features.features_fn(stax.serial(stax.Dense(1), stax.Relu()), 8)
    >>> x = np.random.RandomState(0).randn(20, 2)
    >>> reg = features.FeatureRegression(
    ...     features.normal_equations(phi, x, x[:, 0]), noise_variance=0.1)
    >>> mean, var = features.predict(reg, phi, x, batch_size=8)
    >>> mean.shape, var.shape
    ((20, 1), (20,))
  """
  means, variances = [], []
  for feats in feature_batches(feature_map, x, batch_size, get, progress):
    mean, var = regression.predict(feats)
    means.append(mean.numpy())
    variances.append(var.numpy())
  return np.concatenate(means), np.concatenate(variances)
