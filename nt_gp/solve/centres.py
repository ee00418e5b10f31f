"""Choosing the Nyström centres: uniformly, or by approximate leverage scores.

* `uniform_centres`: `m` distinct points drawn uniformly (Rudi et al. 2015).
* `leverage_centres`: `m` distinct points drawn with probabilities
  proportional to approximate ridge leverage scores
  ``l_i = (K (K + reg I)^{-1})_ii``, estimated from a uniform subset ``S`` of
  ``s`` points (Rudi et al. 2018, "On fast leverage score sampling and optimal
  learning", eq. 7):
  ``l_i ~ (K_ii - K_iS (K_SS + (s/n) reg I)^{-1} K_Si) / reg``.
  Points the subset already explains have low scores; isolated points and
  regions the subset misses have high ones. It costs one extra pass over the
  data with ``s`` columns.

Draws without replacement use exponential keys (Efraimidis and Spirakis
2006), ``O(N)``.

Example:
  >>> import numpy as np
  >>> idx = uniform_centres(10, 3, seed=0)
  >>> len(set(idx.tolist())), bool(np.all(np.diff(idx) > 0))
  (3, True)
"""
from typing import Callable

import numpy as np
import scipy.linalg

from nt_gp.solve import _linalg

__all__ = ['uniform_centres', 'leverage_centres', 'weighted_sample']


def uniform_centres(n: int, m: int, seed: int = 0) -> np.ndarray:
  """Sorted indices of `m` distinct points out of `n` (all if ``m >= n``).

  Example:
    >>> uniform_centres(4, 10).tolist()
    [0, 1, 2, 3]
  """
  _check(n, m)
  if m >= n:
    return np.arange(n)
  return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


def weighted_sample(weights: np.ndarray, m: int, seed: int = 0) -> np.ndarray:
  """Sorted indices of `m` distinct items, drawn with probability ∝ weights.

  Example:
    >>> weighted_sample(np.array([0., 1., 0., 1.]), 2).tolist()
    [1, 3]
  """
  w = np.asarray(weights, np.float64)
  if m >= w.size:
    return np.arange(w.size)
  rng = np.random.default_rng(seed)
  u = rng.random(w.size)
  with np.errstate(divide='ignore'):
    keys = np.where(w > 0, np.log(u) / np.where(w > 0, w, 1.), -np.inf)
  top = np.argpartition(-keys, m - 1)[:m]
  return np.sort(top)


def leverage_centres(n: int, m: int, reg: float, diagonal: np.ndarray,
                     cross_quad: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     k_subset: Callable[[np.ndarray], np.ndarray],
                     subset_size: int = None, seed: int = 0):
  """`m` centres drawn by approximate ridge leverage scores.

  Args:
    n: number of points.
    m: number of centres.
    reg: the regulariser (noise variance) the scores are for (> 0).
    diagonal: ``(n,)`` ``diag K(X, X)``.
    cross_quad: ``cross_quad(subset, r)`` returns ``rowsum((K(X, X_S) r)^2)``
      for the subset's indices (one pass over the data).
    k_subset: ``k_subset(subset)`` returns ``K(X_S, X_S)``.
    subset_size: size of the uniform subset (default: `m`).
    seed: random seed.

  Returns:
    ``(indices, scores)``: sorted indices of the centres and the ``(n,)``
    approximate leverage scores.

  Example:
    >>> import numpy as np
    >>> x = np.r_[np.zeros(8), 5.]               # eight equal points, one apart
    >>> k = np.exp(-(x[:, None] - x[None]) ** 2)
    >>> idx, scores = leverage_centres(
    ...     9, 2, 0.1, np.diag(k),
    ...     lambda s, r: np.sum((k[:, s] @ r) ** 2, 1),
    ...     lambda s: k[np.ix_(s, s)], subset_size=2, seed=0)
    >>> int(np.argmax(scores)), 8 in idx.tolist()
    (8, True)
  """
  _check(n, m)
  if not reg > 0:
    raise ValueError(f'Leverage scores need a positive regulariser, got '
                     f'{reg}.')
  if m >= n:
    return np.arange(n), np.ones(n)
  s = min(int(subset_size or m), n)
  subset = uniform_centres(n, s, seed)
  k_ss = np.asarray(k_subset(subset), np.float64)
  shift = (s / n) * reg
  lower = _linalg.cholesky(k_ss + shift * np.eye(s))
  r = scipy.linalg.solve_triangular(lower, np.eye(s), lower=True).T
  q = np.asarray(cross_quad(subset, r), np.float64)
  scores = np.maximum(np.asarray(diagonal, np.float64) - q, 0.) / reg
  floor = 1e-12 * max(float(scores.max()), 1e-300)
  return weighted_sample(np.maximum(scores, floor), m, seed + 1), scores


def _check(n, m):
  for name, v in (('n', n), ('number of centres', m)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f'The {name} must be a positive int, got {v!r}.')
