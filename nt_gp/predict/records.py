"""Small records returned by `nt_gp.predict`: `Gaussian` and `ODEState`."""
import dataclasses
from typing import Any, NamedTuple, Optional

__all__ = ['Gaussian', 'ODEState']


class Gaussian(NamedTuple):
  """A `(mean, covariance)` pair describing Gaussian predictions.

  Attributes:
    mean: predicted outputs, shape of the targets with the test batch, e.g.
      `(N_test, K)` (plus leading time axes for time-dependent predictions).
    covariance: covariance between test outputs, shape of the respective
      kernel, e.g. `(N_test, N_test)` (plus leading time axes); dtype of the
      kernels.

  Example:
    >>> from nt_gp.predict import Gaussian
    >>> g = Gaussian(mean=[0.], covariance=[[1.]])
    >>> g.mean, g.covariance
    ([0.0], [[1.0]])
  """
  mean: Any
  covariance: Any


@dataclasses.dataclass(frozen=True)
class ODEState:
  """State of the function-space gradient descent ODE.

  Attributes:
    fx_train: train-set outputs, shape of `y_train` (e.g. `(N_train, K)`).
    fx_test: test-set outputs, e.g. `(N_test, K)`, or None.
    qx_train: train-set auxiliary variable (the velocity, with momentum).
    qx_test: test-set auxiliary variable.

  All arrays share the kernel's dtype; with leading time axes when returned by
  a `predict_fn` called with an array of times.

  Example:
    >>> import numpy as np
    >>> from nt_gp.predict import ODEState
    >>> s = ODEState(np.zeros((2, 1)))
    >>> s.fx_test is None, s.replace(fx_test=np.ones((3, 1))).fx_test.shape
    (True, (3, 1))
  """
  fx_train: Optional[Any] = None
  fx_test: Optional[Any] = None
  qx_train: Optional[Any] = None
  qx_test: Optional[Any] = None

  def replace(self, **kwargs) -> 'ODEState':
    """Returns a copy with the given fields replaced."""
    return dataclasses.replace(self, **kwargs)
