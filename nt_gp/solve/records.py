"""Records passed between the exact solvers: evaluation sets and results.

Example:
  >>> import numpy as np
  >>> r = RegResult(reg=0.1, log_marginal_likelihood=-3.0,
  ...               alpha=np.zeros((4, 1)), mean={}, variance={})
  >>> r.reg
  0.1
"""
import dataclasses
import math
from typing import Dict, Optional

import numpy as np

from nt_gp.solve.sources import KernelSource

__all__ = ['EvalSet', 'RegResult', 'lml_from_solve']


@dataclasses.dataclass
class EvalSet:
  """Points to predict: their kernel against the training points.

  Attributes:
    name: e.g. ``'test'``, ``'validation'``.
    k_test_train: ``(T, N)`` kernel source.
    k_test_test_diag: ``(T,)`` prior variances, or None (no variances).
  """
  name: str
  k_test_train: KernelSource
  k_test_test_diag: Optional[np.ndarray] = None

  @property
  def size(self) -> int:
    return self.k_test_train.shape[0]


@dataclasses.dataclass
class RegResult:
  """The exact GP solve for one regulariser.

  Attributes:
    reg: the value added to the diagonal (absolute).
    log_marginal_likelihood: ``log N(Y | 0, K + reg I)`` summed over the
      ``C`` target columns.
    alpha: ``(N, C)`` ``(K + reg I)^{-1} Y``: means of new points are
      ``k(new, train) @ alpha``.
    mean: ``{set name: (T, C)}`` posterior means.
    variance: ``{set name: (T,)}`` posterior variances (sets with a
      ``k_test_test`` diagonal only).
  """
  reg: float
  log_marginal_likelihood: float
  alpha: np.ndarray
  mean: Dict[str, np.ndarray]
  variance: Dict[str, np.ndarray]


def lml_from_solve(z: np.ndarray, log_det: float) -> float:
  """``log N(Y | 0, K)`` from ``z = L^{-1} Y`` and ``log det K``.

  Example:
    >>> round(lml_from_solve(np.zeros((1, 1)), 0.0), 6)  # log N(0 | 0, 1)
    -0.918939
  """
  n, c = z.shape
  return float(-0.5 * np.sum(z.astype(np.float64) ** 2) - 0.5 * c * log_det
               - 0.5 * n * c * math.log(2 * math.pi))
