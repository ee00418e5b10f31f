"""Training targets from labels, and the accuracy / RMSE of predictions.

* Integer class labels ``(N,)`` become one-hot targets centred to zero mean
  (``one_hot - 1/C``), as in the NNGP/NTK literature; predictions are
  classified by their largest column (centring does not change it).
* A float ``(N, C)`` array whose rows are one-hot vectors is also a
  classification target (used as given).
* Anything else real is a regression target, ``(N,)`` or ``(N, C)``.

Example:
  >>> import numpy as np
  >>> t = Targets.from_labels(np.array([0, 2, 1, 2]))
  >>> t.task, t.classes.tolist(), t.values[0].round(3).tolist()
  ('classification', [0, 1, 2], [0.667, -0.333, -0.333])
  >>> t.score(np.array([[1., 0, 0], [0, 0, 1]]), np.array([0, 1]))
  0.5
"""
import dataclasses
from typing import Optional

import numpy as np

__all__ = ['Targets']


def _is_one_hot(y: np.ndarray) -> bool:
  return (y.ndim == 2 and y.shape[1] > 1 and
          bool(np.all((y == 0) | (y == 1))) and bool(np.all(y.sum(1) == 1)))


@dataclasses.dataclass
class Targets:
  """Training targets and how to score predictions against test labels.

  Attributes:
    values: ``(N, C)`` float64 regression targets of the GP.
    task: ``'classification'`` or ``'regression'``.
    classes: the class labels (classification from integer labels), else None.
    squeeze: whether the caller gave ``(N,)`` regression targets.
  """
  values: np.ndarray
  task: str
  classes: Optional[np.ndarray] = None
  squeeze: bool = False

  @classmethod
  def from_labels(cls, y, task: str = 'auto',
                  name: str = 'y_train') -> 'Targets':
    """Targets from labels or values (see the module docstring).

    Args:
      y: ``(N,)`` or ``(N, C)`` array.
      task: ``'auto'``, ``'classification'`` or ``'regression'``.
      name: how error messages name `y`.

    Example:
      >>> Targets.from_labels(np.array([0.5, 1.5])).values.shape
      (2, 1)
    """
    if task not in ('auto', 'classification', 'regression'):
      raise ValueError(f'`task` must be "auto", "classification" or '
                       f'"regression", got {task!r}.')
    if hasattr(y, 'numpy') and not isinstance(y, np.ndarray):
      y = y.numpy()
    y = np.asarray(y)
    if y.dtype.kind not in 'biuf':
      raise TypeError(f'`{name}` must be numeric, got dtype {y.dtype}.')
    if y.ndim not in (1, 2) or y.shape[0] == 0 or (y.ndim == 2 and
                                                   y.shape[1] == 0):
      raise ValueError(f'`{name}` must have shape (N,) or (N, C) with N, C '
                       f'> 0, got {y.shape}.')
    if y.dtype.kind == 'f' and not np.all(np.isfinite(y)):
      raise ValueError(f'`{name}` has non-finite (NaN or inf) entries.')
    integer = y.dtype.kind in 'biu' or (
        y.ndim == 1 and task == 'classification' and
        bool(np.all(y == np.round(y))))
    if task == 'auto':
      task = ('classification' if (integer and y.ndim == 1) or _is_one_hot(y)
              else 'regression')
    if task == 'classification':
      if y.ndim == 1:
        if not integer:
          raise ValueError(f'`{name}` must hold integer class labels for '
                           f'classification, got non-integer values.')
        classes = np.unique(y.astype(np.int64))
        if classes.size < 2:
          raise ValueError(f'`{name}` has a single class ({classes[0]}); '
                           f'classification needs at least two.')
        one_hot = (y.astype(np.int64)[:, None] == classes[None]).astype(
            np.float64)
        return cls(one_hot - 1. / classes.size, 'classification', classes)
      if not _is_one_hot(y):
        raise ValueError(f'`{name}` of shape {y.shape} is not one-hot; give '
                         f'integer labels (N,) or one-hot rows (N, C).')
      return cls(y.astype(np.float64), 'classification')
    values = y.astype(np.float64)
    return cls(values[:, None] if values.ndim == 1 else values, 'regression',
               squeeze=values.ndim == 1)

  @property
  def n_outputs(self) -> int:
    return self.values.shape[1]

  def check_rows(self, n: int, what: str, name: str = 'y_train'):
    """Raises a `ValueError` unless there are `n` rows.

    Example:
      >>> Targets.from_labels(np.ones(3)).check_rows(4, 'the kernel')
      Traceback (most recent call last):
      ...
      ValueError: `y_train` has 3 rows but the kernel has 4 training points; give one label per training input, in the kernel's order.
    """
    if self.values.shape[0] != n:
      raise ValueError(f'`{name}` has {self.values.shape[0]} rows but {what} '
                       f'has {n} training points; give one label per training '
                       f'input, in the kernel\'s order.')

  def labels_of(self, y, n: int, name: str = 'y_test') -> np.ndarray:
    """Test labels in the form `score` compares: class indices or values."""
    y = np.asarray(y)
    if y.shape[0] != n:
      raise ValueError(f'`{name}` has {y.shape[0]} rows but there are {n} '
                       f'test points.')
    if self.task == 'classification':
      if y.ndim == 2:
        if y.shape[1] != self.n_outputs:
          raise ValueError(f'`{name}` has {y.shape[1]} columns, the training '
                           f'targets {self.n_outputs}.')
        return np.argmax(y, axis=1)
      if self.classes is None:
        return y.astype(np.int64)
      index = np.searchsorted(self.classes, y)
      index = np.clip(index, 0, self.classes.size - 1)
      return np.where(self.classes[index] == y, index, -1)
    y = y.astype(np.float64)
    y = y[:, None] if y.ndim == 1 else y
    if y.shape[1] != self.n_outputs:
      raise ValueError(f'`{name}` has {y.shape[1]} columns, the training '
                       f'targets {self.n_outputs}.')
    return y

  def score(self, mean: np.ndarray, y) -> float:
    """Accuracy (classification) or RMSE (regression) of posterior means.

    Args:
      mean: ``(T, C)`` predictions.
      y: test labels ``(T,)``/``(T, C)``.
    """
    truth = self.labels_of(y, mean.shape[0])
    if self.task == 'classification':
      return float(np.mean(np.argmax(mean, axis=1) == truth))
    return float(np.sqrt(np.mean((mean - truth) ** 2)))

  @property
  def metric(self) -> str:
    """``'accuracy'`` or ``'rmse'``."""
    return 'accuracy' if self.task == 'classification' else 'rmse'
