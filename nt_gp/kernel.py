"""The `Kernel` record: NNGP/NTK covariances plus the metadata needed to propagate them.

A `Kernel` is immutable; layers return `kernel.replace(...)`.

Two memory layouts are used:

* ``batch_last=False`` (the *public* layout, identical to neural-tangents):
  ``nngp``/``ntk`` have shape ``(N1, N2, *spatial)`` and ``cov1`` has shape
  ``(N1, *spatial)`` (``diagonal_batch=True``) or ``(N1, N1, *spatial)``.
* ``batch_last=True`` (the layout used while propagating through layers):
  the batch axes are moved to the end, ``nngp`` has shape ``(*spatial, N1, N2)``.
  With the batch pairs innermost, a convolution or pooling of a covariance is a
  sum of strided slices of contiguous blocks, which is what makes the compiled
  ops fast on CPU (see ``nt_gp.ops.spatial``).

With ``packed=True`` (batch-last only, used when ``x2`` is ``x1``), ``nngp``
and ``ntk`` keep only the pairs of input blocks ``I <= J``: their trailing
``(N1, N2)`` axes become ``(B (B + 1) / 2, N / B, N / B)`` (see
``nt_gp.ops.packing``); ``to_batch_first`` unpacks them.

``*spatial`` is ``(X, Y, ...)`` when ``diagonal_spatial`` is True and
``(X, X, Y, Y, ...)`` (pairs of axes, interleaved) otherwise. Spatial axes are in
the order in which they appear in the input array (batch and channel axes
removed).
"""
import dataclasses
from typing import Any, Optional, Tuple

import tensorflow as tf

__all__ = ['Kernel']

_TENSOR_FIELDS = ('nngp', 'ntk', 'cov1', 'cov2', 'x1_is_x2', 'mask1', 'mask2')


@dataclasses.dataclass(frozen=True)
class Kernel:
  """NNGP and NTK of a layer's outputs with their metadata.

  Attributes:
    nngp: covariance between the two batches, shape ``(N1, N2, *spatial)``
      (public layout, see module docstring).
    ntk: neural tangent kernel, same shape as ``nngp``; ``None`` if not computed
      (a 0-d zero at the input).
    cov1: covariance of the first batch, ``(N1, *spatial)`` if
      ``diagonal_batch`` else ``(N1, N1, *spatial)``.
    cov2: same for the second batch, ``None`` when ``x2`` is ``x1``.
    x1_is_x2: boolean scalar tensor, whether both batches are the same inputs.
    is_gaussian: whether the layer's outputs are Gaussian given its inputs
      (true after an affine layer, false after a nonlinearity).
    is_reversed: always False here (kept for neural-tangents compatibility).
    is_input: whether this is the input layer (used by `Dropout`).
    diagonal_batch: whether ``cov1``/``cov2`` keep only the batch diagonal.
    diagonal_spatial: whether only the spatial diagonal is kept.
    shape1, shape2: shapes of the finite-width activations for each batch.
    batch_axis, channel_axis: axes of the activations.
    mask1, mask2: optional boolean masks broadcastable to ``shape1``/``shape2``.
    batch_last: the memory layout (see module docstring).
    packed: whether `nngp`/`ntk` hold only block pairs I <= J (batch-last).

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu(), stax.Dense(1))
    >>> k = kernel_fn(np.ones((3, 4)), None)
    >>> tuple(k.nngp.shape), tuple(k.cov1.shape)
    ((3, 3), (3,))
  """
  nngp: Any
  ntk: Any
  cov1: Any
  cov2: Any
  x1_is_x2: Any
  is_gaussian: bool
  is_reversed: bool
  is_input: bool
  diagonal_batch: bool
  diagonal_spatial: bool
  shape1: Optional[Tuple[int, ...]]
  shape2: Optional[Tuple[int, ...]]
  batch_axis: int
  channel_axis: int
  mask1: Any = None
  mask2: Any = None
  batch_last: bool = False
  packed: bool = False

  def replace(self, **kwargs) -> 'Kernel':
    """Returns a copy with the given fields replaced."""
    return dataclasses.replace(self, **kwargs)

  # `tf.nest` protocol: lets a `Kernel` cross `tf.function` boundaries.
  def __tf_flatten__(self):
    meta = tuple((f.name, getattr(self, f.name)) for f in dataclasses.fields(self)
                 if f.name not in _TENSOR_FIELDS)
    return meta, tuple(getattr(self, name) for name in _TENSOR_FIELDS)

  @classmethod
  def __tf_unflatten__(cls, meta, components):
    return cls(**dict(meta), **dict(zip(_TENSOR_FIELDS, components)))

  @property
  def n_spatial(self) -> int:
    """Number of spatial dimensions of the activations."""
    return len(self.shape1) - 2

  @property
  def dtype(self) -> tf.DType:
    return self.nngp.dtype

  def to_batch_last(self) -> 'Kernel':
    """Returns this kernel in the propagation layout (batch axes last)."""
    if self.batch_last:
      return self
    return self.replace(
        nngp=_move_batch(self.nngp, 2, to_end=True),
        ntk=_move_batch(self.ntk, 2, to_end=True),
        cov1=_move_batch(self.cov1, self._cov_batch_ndim, to_end=True),
        cov2=_move_batch(self.cov2, self._cov_batch_ndim, to_end=True),
        batch_last=True)

  def unpack(self) -> 'Kernel':
    """Returns a batch-last kernel with `nngp`/`ntk` over all pairs."""
    if not self.packed:
      return self
    from nt_gp.ops import packing  # pylint: disable=g-import-not-at-top
    blocks = packing.block_count(self.shape1[self.batch_axis])
    def unpack(t):
      return packing.unpack(t, blocks, self.n_spatial, self.diagonal_spatial)
    return self.replace(nngp=unpack(self.nngp), ntk=unpack(self.ntk),
                        packed=False)

  def to_batch_first(self) -> 'Kernel':
    """Returns this kernel in the public (neural-tangents) layout."""
    if not self.batch_last:
      return self
    self = self.unpack()  # pylint: disable=self-cls-assignment
    return self.replace(
        nngp=_move_batch(self.nngp, 2, to_end=False),
        ntk=_move_batch(self.ntk, 2, to_end=False),
        cov1=_move_batch(self.cov1, self._cov_batch_ndim, to_end=False),
        cov2=_move_batch(self.cov2, self._cov_batch_ndim, to_end=False),
        batch_last=False)

  @property
  def _cov_batch_ndim(self) -> int:
    return 1 if self.diagonal_batch else 2

  def __repr__(self):
    def desc(t):
      return None if t is None else f'<{t.dtype.name} {tuple(t.shape)}>'
    return (f'Kernel(nngp={desc(self.nngp)}, ntk={desc(self.ntk)}, '
            f'cov1={desc(self.cov1)}, cov2={desc(self.cov2)}, '
            f'is_gaussian={self.is_gaussian}, '
            f'diagonal_batch={self.diagonal_batch}, '
            f'diagonal_spatial={self.diagonal_spatial}, shape1={self.shape1}, '
            f'shape2={self.shape2}, batch_axis={self.batch_axis}, '
            f'channel_axis={self.channel_axis}, batch_last={self.batch_last})')


def _move_batch(x, batch_ndim: int, to_end: bool):
  """Moves the `batch_ndim` leading (or trailing) axes of `x` to the other end."""
  if x is None or x.shape.rank == 0:
    return x
  rank = x.shape.rank
  if rank == batch_ndim:
    return x
  if to_end:
    perm = list(range(batch_ndim, rank)) + list(range(batch_ndim))
  else:
    perm = list(range(rank - batch_ndim, rank)) + list(range(rank - batch_ndim))
  return tf.transpose(x, perm)
