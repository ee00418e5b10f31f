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

The operations on kernels live here: `Kernel` methods for the covariances
(`map_covs`, `scale`, `mask`, `slice`, layout changes) and helpers for
trees (lists, nested lists) of kernels (`is_kernel_tree`, `map_kernels`,
`flatten_kernels`), so that layers and adapters never re-implement them.
"""
import dataclasses
from typing import Any, Callable, Optional, Tuple

import tensorflow as tf

from nt_gp.ops import diagonal
from nt_gp.ops import packing

__all__ = ['Kernel', 'is_kernel_tree', 'map_kernels', 'flatten_kernels']

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
    n = self.shape1[self.batch_axis]
    blocks = packing.block_count(n)
    def unpack(t):
      return packing.unpack(t, blocks, self.n_spatial, self.diagonal_spatial,
                            n)
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

  # -- Operations on the covariance tensors ----------------------------------
  def map_covs(self, fn: Callable, *, ntk: bool = True) -> 'Kernel':
    """Applies `fn(t, batch_ndim)` to `nngp`, `cov1`, `cov2` and `ntk`.

    Args:
      fn: maps a covariance tensor to a new one; `batch_ndim` is the number
        of its batch axes (trailing when `batch_last`, else leading): 2 for
        `nngp`/`ntk` (3 when `packed`: block pair and two block axes), 1 or
        2 for `cov1`/`cov2` (`diagonal_batch`). A 0-d `ntk` (the zero NTK of
        the inputs) is passed on too.
      ntk: whether to map `ntk` (else it is kept).

    Returns:
      The kernel with the mapped tensors; `None` entries stay `None`.

    Example:
      >>> import numpy as np
      >>> from nt_gp import stax
      >>> k = stax.Dense(1)[2](np.ones((2, 3)))
      >>> k.map_covs(lambda t, batch_ndim: 2 * t).nngp.numpy().tolist()
      [[2.0, 2.0], [2.0, 2.0]]
    """
    def apply(t, batch_ndim):
      return None if t is None else fn(t, batch_ndim)
    pair = 3 if self.packed else 2
    cov = self._cov_batch_ndim
    return self.replace(nngp=apply(self.nngp, pair),
                        ntk=apply(self.ntk, pair) if ntk else self.ntk,
                        cov1=apply(self.cov1, cov), cov2=apply(self.cov2, cov))

  def scale(self, var, add=None) -> 'Kernel':
    """The kernel of the activations times `sqrt(var)`, plus `add`.

    `nngp`, `cov1`, `cov2` become `var * t + add` and the NTK `var * ntk`:
    the kernel of `sqrt(var) f + c` for a constant `c` with variance `add`
    that has no parameters.

    Args:
      var: scalar (number or tensor of the kernel's dtype).
      add: optional scalar added to `nngp`, `cov1`, `cov2`.

    Example:
      >>> import numpy as np
      >>> from nt_gp import stax
      >>> k = stax.Dense(1)[2](np.ones((1, 2)), get=None)   # nngp = ntk = 1
      >>> k = k.scale(4., add=1.)
      >>> float(k.nngp[0, 0]), float(k.ntk[0, 0])
      (5.0, 4.0)
    """
    k = self.map_covs(lambda t, _: var * t)
    if add is None:
      return k
    return k.map_covs(lambda t, _: t + add, ntk=False)

  def mask_entries(self):
    """Which covariance entries involve a masked position.

    Returns:
      `(m12, m11, m22)`: boolean tensors (True = masked) that broadcast
      against `nngp`, `cov1`, `cov2` of this batch-last, unpacked kernel, or
      three `None`s when neither batch is masked. A batch without a mask
      (`mask2` of a kernel with `cov2`) is unmasked; without `cov2` the
      second batch is the first.

    Example:
      >>> import numpy as np
      >>> from nt_gp import stax
      >>> k = stax.Dense(1)[2](np.ones((2, 3)), get=None).to_batch_last()
      >>> k = k.replace(mask1=np.array([[True], [False]]))
      >>> m12, m11, _ = k.mask_entries()
      >>> m12.numpy().tolist(), m11.numpy().tolist()
      ([[True, True], [True, False]], [True, False])
    """
    if self.mask1 is None and self.mask2 is None:
      return None, None, None
    m1 = self._position_mask(self.mask1, self.shape1)
    m2 = (self._position_mask(self.mask2, self.shape2)
          if self.mask2 is not None or self.cov2 is not None else m1)
    ds, s = self.diagonal_spatial, self.n_spatial

    def outer(a, b, batch_pair):
      a, b = _batch_last(a), _batch_last(b)
      return diagonal.outer(a, b, tf.logical_or, ds, s, batch_pair)
    pair = not self.diagonal_batch
    return outer(m1, m2, True), outer(m1, m1, pair), outer(m2, m2, pair)

  def position_masks(self):
    """`(mask1, mask2)` as `(N, *spatial)` booleans (channels collapsed: a
    position is masked if all its channels are), or `None`s.

    Example:
      >>> import numpy as np
      >>> from nt_gp import stax
      >>> k = stax.Dense(1)[2](np.ones((1, 3, 2)), get=None)
      >>> m1, m2 = k.replace(mask1=np.array([[[1], [0], [1]]]) > 0
      ...                    ).position_masks()
      >>> m1.numpy().tolist(), m2
      ([[True, False, True]], None)
    """
    return (None if self.mask1 is None else
            self._position_mask(self.mask1, self.shape1),
            None if self.mask2 is None else
            self._position_mask(self.mask2, self.shape2))

  def _position_mask(self, mask, shape):
    ndim = len(shape)
    ba, ca = self.batch_axis % ndim, self.channel_axis % ndim
    others = [i for i in range(ndim) if i not in (ba, ca)]
    target = [shape[ba]] + [shape[i] for i in others]
    if mask is None:
      return tf.zeros(target, tf.bool)
    mask = tf.convert_to_tensor(mask)
    if mask.shape.rank != ndim:
      raise ValueError(f'A mask must have the rank of the activations '
                       f'({ndim}), got shape {mask.shape}.')
    if mask.shape[ca] != 1:
      mask = tf.reduce_all(mask, axis=ca, keepdims=True)
    mask = tf.transpose(mask, [ba] + others + [ca])[..., 0]
    return tf.broadcast_to(mask, target)

  def mask(self) -> 'Kernel':
    """Zeroes the covariances of masked positions (`mask1`, `mask2`) of this
    batch-last, unpacked kernel.

    Example:
      >>> import numpy as np
      >>> from nt_gp import stax
      >>> x = np.array([[1., 1.], [1., -1.]])
      >>> k = stax.Dense(1)[2](x, get=None).to_batch_last()
      >>> k = k.replace(mask1=np.array([[False], [True]]), mask2=None)
      >>> k.mask().nngp.numpy().tolist()
      [[1.0, 0.0], [0.0, 0.0]]
    """
    m12, m11, m22 = self.mask_entries()
    if m12 is None:
      return self

    def zero(t, m):
      if t is None or t.shape.rank == 0:
        return t
      return tf.where(m, tf.zeros_like(t), t)
    return self.replace(nngp=zero(self.nngp, m12), ntk=zero(self.ntk, m12),
                        cov1=zero(self.cov1, m11), cov2=zero(self.cov2, m22))

  def slice(self, rows: slice, cols: slice) -> 'Kernel':
    """The kernel between inputs `rows` of the first batch and `cols` of the
    second, in the public layout.

    For a kernel of a batch with itself (`cov2` is None), `cols` index the
    same batch: a block on the diagonal (`rows == cols`) is again a kernel
    of a batch with itself; other blocks get `cov2` and `mask2` from the
    first batch and are of different inputs (`x1_is_x2` False).

    Args:
      rows, cols: `slice(start, stop)` of the two batches.

    Example:
      >>> import numpy as np
      >>> from nt_gp import stax
      >>> k = stax.Dense(1)[2](np.eye(4), get=None)
      >>> part = k.slice(slice(0, 2), slice(1, 4))
      >>> tuple(part.nngp.shape), tuple(part.cov2.shape), part.shape2
      ((2, 3), (3,), (3, 1))
    """
    k = self.to_batch_first()
    symmetric = k.cov2 is None
    same = rows == cols
    n1, n2 = k.nngp.shape[0], k.nngp.shape[1]

    def cov(c, s):
      if c is None:
        return None
      c = c[s]
      return c if k.diagonal_batch else c[:, s]

    def pair(t):
      if t is None or len(t.shape) < 2:
        return t
      return t[rows, cols]

    def sliced_mask(mask, s, n):
      ax = k.batch_axis
      if mask is None or len(mask.shape) <= ax or mask.shape[ax] != n:
        return mask
      index = [slice(None)] * len(mask.shape)
      index[ax] = s
      return mask[tuple(index)]

    def with_batch(shape, n):
      if shape is None:
        return None
      shape = list(shape)
      shape[k.batch_axis] = n
      return tuple(shape)

    if symmetric and same:
      cov2, mask2 = None, None
    elif symmetric:
      cov2, mask2 = cov(k.cov1, cols), sliced_mask(k.mask1, cols, n1)
    else:
      cov2, mask2 = cov(k.cov2, cols), sliced_mask(k.mask2, cols, n2)
    x1_is_x2 = k.x1_is_x2 if same else tf.constant(False)
    return k.replace(
        nngp=pair(k.nngp), ntk=pair(k.ntk), cov1=cov(k.cov1, rows), cov2=cov2,
        x1_is_x2=x1_is_x2, mask1=sliced_mask(k.mask1, rows, n1), mask2=mask2,
        shape1=with_batch(k.shape1, rows.stop - rows.start),
        shape2=with_batch(k.shape1 if symmetric else k.shape2,
                          cols.stop - cols.start))

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


def _batch_last(mask):
  """`(N, *spatial)` -> `(*spatial, N)`."""
  s = mask.shape.rank - 1
  return tf.transpose(mask, list(range(1, s + 1)) + [0]) if s else mask


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


# ----------------------------------------------------------------------------
# Trees (lists, nested lists) of kernels, as `parallel` branches carry them.
# ----------------------------------------------------------------------------
def is_kernel_tree(x) -> bool:
  """True if `x` is a `Kernel` or a non-empty (nested) list/tuple of them.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> k = stax.Dense(1)[2](np.ones((1, 2)), get=None)
    >>> is_kernel_tree([k, (k, k)]), is_kernel_tree([]), is_kernel_tree(3.)
    (True, False, False)
  """
  if isinstance(x, Kernel):
    return True
  if isinstance(x, (list, tuple)) and x:
    return all(is_kernel_tree(y) for y in x)
  return False


def map_kernels(fn: Callable, ks):
  """Applies `fn` to every `Kernel` of a tree, keeping its structure.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> k = stax.Dense(1)[2](np.ones((1, 2)), get=None)
    >>> out = map_kernels(lambda k: k.scale(2.), [k, (k,)])
    >>> float(out[1][0].nngp[0, 0])
    2.0
  """
  if isinstance(ks, Kernel):
    return fn(ks)
  return type(ks)(map_kernels(fn, k) for k in ks)


def flatten_kernels(ks) -> list:
  """The `Kernel`s of a tree, in order.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> k = stax.Dense(1)[2](np.ones((1, 2)), get=None)
    >>> len(flatten_kernels([k, (k, [k])]))
    3
  """
  if isinstance(ks, Kernel):
    return [ks]
  return [k for sub in ks for k in flatten_kernels(sub)]
