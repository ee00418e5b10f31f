"""Seeded random matrices for feature maps.

A feature map draws its random matrices once, when it is built for an input
shape, in the order its layers are visited. Each matrix comes from its own
numpy generator seeded with `(seed, index)`, in float64, so the same seed
gives the same map for float32 and float64 inputs and for every batch.
"""
import numpy as np

__all__ = ['RandomMatrices']


class RandomMatrices:
  """Draws the random matrices of one feature map, reproducibly.

  Args:
    seed: non-negative int.

  Example:
    >>> a = RandomMatrices(0).gaussian((2, 3))
    >>> b = RandomMatrices(0).gaussian((2, 3))
    >>> bool((a == b).all()), a.dtype.name
    (True, 'float64')
  """

  def __init__(self, seed: int):
    self.seed = int(seed)
    self.count = 0

  def _generator(self):
    gen = np.random.default_rng([self.seed, self.count])
    self.count += 1
    return gen

  def gaussian(self, shape) -> np.ndarray:
    """Standard normal entries, float64 array of `shape`."""
    return self._generator().standard_normal(tuple(shape))

  def signs(self, shape) -> np.ndarray:
    """Independent ±1 entries (Rademacher), float64 array of `shape`."""
    return self._generator().choice(np.array([-1., 1.]), size=tuple(shape))

  def integers(self, high: int, shape) -> np.ndarray:
    """Independent uniform integers in `[0, high)`, int64 array of `shape`."""
    return self._generator().integers(0, high, size=tuple(shape),
                                      dtype=np.int64)
