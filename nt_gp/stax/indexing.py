"""Indexing layer: `Index` (with the `Slice` helper), as `x[idx]`.

The finite network returns `x[idx]`. The kernel indexes the covariances
accordingly: a batch-axis slice selects rows of both batches (N1 and N2, and
both axes of `cov1`/`cov2` when `diagonal_batch=False`), a spatial slice acts
on both axes of that dimension's spatial pair (or on its single axis when only
the spatial diagonal is kept), and an integer index on a spatial axis removes
that spatial dimension. The channel axis is infinitely wide in the kernel and
must be left whole (`:`).
"""
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking
from nt_gp.stax.requirements import requires
from nt_gp.stax.rule_spec import capabilities
from nt_gp.stax.shapes import make_init_fn

__all__ = ['Index', 'Slice', 'canonicalize_idx', 'slice_shape']

IndexEntry = Union[int, slice, type(Ellipsis)]


class _Slice:
  """Builds index tuples with bracket syntax: `Slice[::2, :4]` is
  `(slice(None, None, 2), slice(None, 4, None))`.

  Example:
    >>> from nt_gp import stax
    >>> stax.Slice[1, :, 2:8:3]
    (1, slice(None, None, None), slice(2, 8, 3))
    >>> stax.Slice[..., 0]
    (Ellipsis, 0)
  """

  def __getitem__(self, idx):
    return idx

  def __repr__(self):
    return 'Slice'


Slice = _Slice()


def _check_entry(entry, position):
  if entry is Ellipsis or isinstance(entry, slice):
    if isinstance(entry, slice):
      for name in ('start', 'stop', 'step'):
        v = getattr(entry, name)
        if v is not None and not _is_int(v):
          raise TypeError(f'`idx` entry {position} ({entry!r}) has a non-integer '
                          f'{name} {v!r}.')
      if entry.step is not None and int(entry.step) == 0:
        raise ValueError(f'`idx` entry {position} ({entry!r}) has step 0.')
    return entry
  if _is_int(entry):
    return int(entry)
  if entry is None:
    raise TypeError('`idx` must not contain `None` (`np.newaxis`): adding '
                    'axes is not supported.')
  raise TypeError(f'`idx` entries must be ints, slices or `...`, got '
                  f'{entry!r} ({type(entry).__name__}) at position {position}; '
                  f'array (fancy) and boolean indexing are not supported.')


def _is_int(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, (bool,
                                                                 np.bool_))


def _as_tuple(idx) -> Tuple[IndexEntry, ...]:
  if idx is Ellipsis or isinstance(idx, slice) or _is_int(idx):
    idx = (idx,)
  if isinstance(idx, list):
    raise TypeError('`idx` must be a tuple (use `stax.Slice[...]`), not a list: '
                    'a list would be an array (fancy) index.')
  if not isinstance(idx, tuple):
    raise TypeError(f'`idx` must be an int, slice, `...` or a tuple of them '
                    f'(use `stax.Slice[...]`), got {idx!r}.')
  idx = tuple(_check_entry(e, i) for i, e in enumerate(idx))
  if sum(e is Ellipsis for e in idx) > 1:
    raise ValueError(f'`idx` may contain at most one `...`, got {idx!r}.')
  return idx


def canonicalize_idx(idx, ndim: int) -> Tuple[Union[int, slice], ...]:
  """Expands `idx` to one entry (int or slice) per axis of a rank-`ndim` array.

  `...` is replaced by as many `:` as needed and missing trailing entries
  become `:`.

  Args:
    idx: an int, slice, `...` or a tuple of them (see `Slice`).
    ndim: rank of the indexed array.

  Returns:
    A tuple of `ndim` ints and slices.

  Example:
    >>> canonicalize_idx((0, ..., slice(1, 3)), 4)
    (0, slice(None, None, None), slice(None, None, None), slice(1, 3, None))
  """
  idx = _as_tuple(idx)
  n_explicit = sum(e is not Ellipsis for e in idx)
  if n_explicit > ndim:
    raise ValueError(f'Too many indices: `idx` {idx!r} has {n_explicit} '
                     f'entries for an array of rank {ndim}.')
  out = []
  for e in idx:
    if e is Ellipsis:
      out += [slice(None)] * (ndim - n_explicit)
    else:
      out.append(e)
  out += [slice(None)] * (ndim - len(out))
  return tuple(out)


def _is_full(entry, size: Optional[int]) -> bool:
  """Whether a canonical entry keeps the whole axis in order."""
  if not isinstance(entry, slice):
    return False
  if entry == slice(None) or entry == slice(None, None, 1):
    return True
  if size is None or size < 0:
    return False
  return entry.indices(size) == (0, size, 1)


def _known(size) -> bool:
  return size is not None and size >= 0


def slice_shape(shape: Sequence[Optional[int]], idx) -> Tuple:
  """Shape of `x[idx]` for `x` of the given shape.

  Axes of unknown size (`None` or negative) are kept as they are if indexed
  with `:`; indexing them otherwise is an error.

  Args:
    shape: the input shape.
    idx: an int, slice, `...` or a tuple of them.

  Returns:
    The output shape (integer-indexed axes removed).

  Example:
    >>> slice_shape((-1, 8, 6, 3), (slice(None), slice(None, 4), 2))
    (-1, 4, 3)
  """
  shape = tuple(shape)
  idx = canonicalize_idx(idx, len(shape))
  out = []
  for axis, (e, size) in enumerate(zip(idx, shape)):
    if not _known(size):
      if _is_full(e, None):
        out.append(size)
        continue
      raise ValueError(f'Cannot index axis {axis} of unknown size {size} with '
                       f'{e!r}; give its size in the input shape {shape}.')
    size = int(size)
    if isinstance(e, slice):
      out.append(len(range(*e.indices(size))))
    else:
      if not -size <= e < size:
        raise ValueError(f'Index {e} is out of bounds for axis {axis} of size '
                         f'{size} (shape {shape}).')
  return tuple(out)


def _shifted_axis(axis: int, idx) -> int:
  """Position of `axis` after removing the integer-indexed axes before it."""
  return axis - sum(isinstance(e, int) for e in idx[:axis])


@layer
@supports_masking(remask_kernel=False)
def Index(idx: Any, batch_axis: int = 0, channel_axis: int = -1):
  """Indexes the activations like `x[idx]` (numpy basic indexing).

  Args:
    idx: an int, slice, `...` or a tuple of them; build it with `Slice`, e.g.
      `stax.Slice[::2, :4, :4]`. Slices may have negative bounds and steps.
      In `kernel_fn`, the channel axis must be indexed with `:` (it is
      infinitely wide) and the batch axis with a slice, not an integer (the
      kernel always keeps a batch axis); an integer on a spatial axis removes
      that axis (e.g. a 2-D image becomes 1-D).
    batch_axis: batch axis of the inputs.
    channel_axis: channel axis of the inputs.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`. `apply_fn` returns `x[idx]` with the
    dtype of `x`; `kernel_fn` returns covariances of the indexed activations
    (shapes `(N1', N2', *spatial')` with the batch and spatial sizes of
    `x[idx]`), in the dtype of the inputs.

  Raises:
    TypeError: `idx` holds something other than ints, slices and one `...`.
    ValueError: in `kernel_fn`, the channel axis is indexed or the batch axis
      is indexed with an integer; an index is out of bounds.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> init_fn, apply_fn, kernel_fn = stax.serial(
    ...     stax.Conv(8, (3, 3), padding='SAME'), stax.Relu(),
    ...     stax.Index(stax.Slice[::2, :4, :4]),   # every other input, 4x4 crop
    ...     stax.Conv(8, (2, 2)), stax.Relu(),
    ...     stax.Index(stax.Slice[:, 0, ...]),     # first row: now 1-D
    ...     stax.Conv(8, (2,)), stax.GlobalAvgPool(), stax.Dense(1))
    >>> init_fn(0, (4, 6, 6, 3))[0]
    (2, 1)
    >>> x = np.random.RandomState(0).randn(4, 6, 6, 3)
    >>> tuple(kernel_fn(x, None, 'ntk').shape)
    (2, 2)
  """
  idx = _as_tuple(idx)
  if not isinstance(batch_axis, int) or not isinstance(channel_axis, int):
    raise TypeError('`batch_axis` and `channel_axis` must be ints.')

  def shape_fn(input_shape):
    return slice_shape(input_shape, idx)

  def apply_fn(params, inputs, **kwargs):
    x = tf.convert_to_tensor(inputs)
    if x.shape.rank is not None:
      slice_shape([-1 if d is None else d for d in x.shape.as_list()], idx)
    return x[idx]

  def mask_fn(mask, input_shape):
    mask = tf.convert_to_tensor(mask)
    canon = canonicalize_idx(idx, len(input_shape))
    # A mask may have size 1 on axes it does not vary along: broadcast those
    # that a non-trivial index selects from.
    target = [input_shape[a] if (m == 1 and not _is_full(e, m))
              else m for a, (m, e) in enumerate(zip(mask.shape, canon))]
    if target != mask.shape.as_list():
      mask = tf.broadcast_to(mask, target)
    return mask[canon]

  @requires(batch_axis=batch_axis, channel_axis=channel_axis)
  @capabilities(packed=True)
  def rule(k, **kwargs):
    ndim = len(k.shape1)
    canon = canonicalize_idx(idx, ndim)
    ba, ca = k.batch_axis % ndim, k.channel_axis % ndim
    if not _is_full(canon[ca], k.shape1[ca]):
      raise ValueError(
          f'Index: the channel axis {ca} is infinitely wide in the kernel and '
          f'cannot be indexed (got {canon[ca]!r}); use `:` there.')
    batch_idx = canon[ba]
    if isinstance(batch_idx, int):
      raise ValueError(
          f'Index: an integer ({batch_idx}) on the batch axis {ba} would remove '
          f'it, but kernels always keep a batch axis; use a slice such as '
          f'`{batch_idx}:{batch_idx + 1 if batch_idx != -1 else ""}` instead.')
    slice_shape(k.shape1, canon)
    slice_shape(k.shape2, canon)
    spatial_idx = [e for a, e in enumerate(canon) if a not in (ba, ca)]
    batch_full = (_is_full(batch_idx, k.shape1[ba]) and
                  _is_full(batch_idx, k.shape2[ba]))
    if not batch_full:
      k = k.unpack()
    lead = []
    for e in spatial_idx:
      lead += [e] if k.diagonal_spatial else [e, e]
    batch_slice = batch_idx if not batch_full else slice(None)

    def index(t, batch_ndim):
      if t.shape.rank == 0:
        return t
      full = tuple(lead) + (batch_slice,) * batch_ndim
      if all(_is_full(e, None) for e in full):
        return t
      return t[full]

    return k.map_covs(index).replace(batch_axis=_shifted_axis(ba, canon),
                                     channel_axis=_shifted_axis(ca, canon))

  return make_init_fn(shape_fn), apply_fn, rule, mask_fn
