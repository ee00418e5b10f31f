"""Building blocks of the nonlinearity layers: the layer builder and checks.

`nonlinearity` turns a finite-width function and a batch-last kernel rule into
a layer, like `elementwise_base.elementwise`, and additionally lets a layer
choose whether covariances of masked positions are zeroed after it (as
neural-tangents does per nonlinearity: e.g. `Exp` maps a zero covariance to a
non-zero one, so its outputs are re-masked).
"""
import tensorflow as tf

from nt_gp.ops import diagonal
from nt_gp.stax.elementwise_base import elementwise

__all__ = ['nonlinearity', 'pin_self_covariances', 'double_factorial']


def nonlinearity(fn, name: str, rule, remask_kernel: bool,
                 supports_packed: bool = False):
  """Builds an elementwise nonlinearity layer.

  Args:
    fn: `x -> activation(x)` on tensors (any shape, float32/float64), or None
      if the layer has no finite-width function.
    name: layer name used in messages.
    rule: batch-last `Kernel -> Kernel` map (see `map_covariances`), or None.
    remask_kernel: whether covariances of masked positions are zeroed after
      the layer.
    supports_packed: whether `rule` handles symmetric block-packed kernels
      (true when it only uses `map_covariances` and elementwise arithmetic).

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> _, apply_fn, _ = nonlinearity(lambda x: 2 * x, 'Double', None, False)
    >>> apply_fn((), np.ones(2)).numpy().tolist()
    [2.0, 2.0]
  """
  return elementwise(fn, name, rule, supports_packed=supports_packed,
                     remask_kernel=remask_kernel)


def pin_self_covariances(k):
  """Sets the `nngp` entries of an input with itself to the output variances.

  When both batches are the same inputs (`x1_is_x2`), the entries of `nngp`
  whose batch indices (and, with full spatial covariances, all spatial
  indices) coincide are variances, and must equal the variances in `cov1`.
  Computed from the covariance map they can differ by rounding; for maps with
  a square-root singularity at correlation 1 (`Sign`, the step function) that
  rounding error grows to its square root and compounds over layers. This
  replaces them by the variances of `cov1`.

  Args:
    k: batch-last `Kernel` after a nonlinearity.

  Returns:
    `k` with `nngp` patched (unchanged if the batches differ in size).
  """
  nngp = k.nngp
  if nngp.shape[-1] != nngp.shape[-2]:
    return k
  s, ds, db = k.n_spatial, k.diagonal_spatial, k.diagonal_batch
  rank = nngp.shape.rank
  pairs = [] if ds else [(2 * i, 2 * i + 1) for i in range(s)]
  pairs.append((rank - 2, rank - 1))
  self_entry = None
  for a, b in pairs:
    shape = [1] * rank
    shape[a] = shape[b] = nngp.shape[a]
    eye = tf.reshape(tf.eye(nngp.shape[a], dtype=tf.bool), shape)
    self_entry = eye if self_entry is None else tf.logical_and(self_entry, eye)
  self_entry = tf.logical_and(self_entry, tf.cast(k.x1_is_x2, tf.bool))
  var = diagonal.expand_variance(diagonal.variances(k.cov1, db, ds, s), 0, ds,
                                 s, True)
  return k.replace(nngp=tf.where(self_entry, var, nngp))


def double_factorial(n: int) -> int:
  """``n!! = n (n - 2) (n - 4) ...``, with ``n!! = 1`` for ``n <= 0``.

  Example:
    >>> double_factorial(5), double_factorial(-1)
    (15, 1)
  """
  out = 1
  for i in range(n, 0, -2):
    out *= i
  return out
