"""`DotGeneral`: a constant tensor contracted with the activations.

`jax.lax.dot_general` semantics: ``dot_general(lhs, rhs, ((lhs_contract,
rhs_contract), (lhs_batch, rhs_batch)))`` pairs the contracting dimensions
(summed) and the batch dimensions (kept, elementwise), and orders the output
as (batch dimensions, free dimensions of lhs, free dimensions of rhs).

The kernel of ``y = dot_general(x, c)`` is the same contraction applied on
both sides of the input covariance: ``Cov(y1, y2) = c . Cov(x1, x2) . c``.
"""
import string
from typing import Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from nt_gp.ops import compile as compile_ops
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking
from nt_gp.stax.requirements import Bool, Diagonal, requires
from nt_gp.stax.shapes import make_init_fn

__all__ = ['DotGeneral', 'dot_general', 'canonicalize_dimension_numbers']

_PRECISIONS = (None, 'DEFAULT', 'HIGH', 'HIGHEST', 'FASTEST', 'BF16_BF16_F32',
               'TF32_TF32_F32', 'F32_F32_F32', 'ANY_F32')


def _axes_tuple(axes, ndim, name):
  try:
    axes = tuple(int(a) for a in axes)
  except TypeError:
    raise TypeError(f'`{name}` must be a sequence of ints, got {axes!r}.'
                    ) from None
  for a in axes:
    if not -ndim <= a < ndim:
      raise ValueError(f'`{name}` has axis {a}, out of range for an operand '
                       f'of rank {ndim}.')
  axes = tuple(a % ndim for a in axes)
  if len(set(axes)) != len(axes):
    raise ValueError(f'`{name}` has repeated axes: {axes}.')
  return axes


def canonicalize_dimension_numbers(dimension_numbers, lhs_ndim: int,
                                   rhs_ndim: int):
  """Validates `((lhs_c, rhs_c), (lhs_b, rhs_b))` and makes axes non-negative.

  Example:
    >>> canonicalize_dimension_numbers((((1,), (0,)), ((), ())), 3, 2)
    (((1,), (0,)), ((), ()))
  """
  try:
    (lc, rc), (lb, rb) = dimension_numbers
  except (TypeError, ValueError):
    raise ValueError(
        f'`dimension_numbers` must be ((lhs_contracting, rhs_contracting), '
        f'(lhs_batch, rhs_batch)), got {dimension_numbers!r}.') from None
  lc = _axes_tuple(lc, lhs_ndim, 'lhs_contracting_dims')
  rc = _axes_tuple(rc, rhs_ndim, 'rhs_contracting_dims')
  lb = _axes_tuple(lb, lhs_ndim, 'lhs_batch_dims')
  rb = _axes_tuple(rb, rhs_ndim, 'rhs_batch_dims')
  if len(lc) != len(rc) or len(lb) != len(rb):
    raise ValueError(f'`dimension_numbers` must pair as many lhs as rhs '
                     f'dimensions, got {dimension_numbers!r}.')
  if set(lc) & set(lb) or set(rc) & set(rb):
    raise ValueError(f'A dimension cannot be both contracting and batch: '
                     f'{dimension_numbers!r}.')
  return (lc, rc), (lb, rb)


def _output_dims(lhs_ndim, rhs_ndim, dn):
  """Output dimensions as `('lhs'|'rhs', axis)`, in `dot_general` order."""
  (lc, rc), (lb, rb) = dn
  out = [('lhs', a) for a in lb]
  out += [('lhs', a) for a in range(lhs_ndim) if a not in lc + lb]
  out += [('rhs', a) for a in range(rhs_ndim) if a not in rc + rb]
  return out


def _check_sizes(lhs_shape, rhs_shape, dn):
  (lc, rc), (lb, rb) = dn
  for a, b in list(zip(lc, rc)) + list(zip(lb, rb)):
    if lhs_shape[a] != rhs_shape[b] and None not in (lhs_shape[a],
                                                     rhs_shape[b]):
      raise ValueError(f'`dot_general`: paired dimensions {a} of lhs (size '
                       f'{lhs_shape[a]}) and {b} of rhs (size {rhs_shape[b]}) '
                       f'differ; shapes {tuple(lhs_shape)} and '
                       f'{tuple(rhs_shape)}.')


def dot_general_shape(lhs_shape, rhs_shape, dimension_numbers):
  """Output shape of `dot_general` (see module docstring)."""
  dn = canonicalize_dimension_numbers(dimension_numbers, len(lhs_shape),
                                      len(rhs_shape))
  _check_sizes(lhs_shape, rhs_shape, dn)
  return tuple(lhs_shape[a] if side == 'lhs' else rhs_shape[a]
               for side, a in _output_dims(len(lhs_shape), len(rhs_shape), dn))


def dot_general(lhs, rhs, dimension_numbers):
  """`jax.lax.dot_general` in TensorFlow (via `tf.einsum`).

  Args:
    lhs, rhs: tensors of the same dtype.
    dimension_numbers: `((lhs_contracting, rhs_contracting), (lhs_batch,
      rhs_batch))`.

  Returns:
    The contraction, shaped (batch dims, lhs free dims, rhs free dims).

  Example:
    >>> import numpy as np
    >>> a, b = np.ones((2, 3)), np.ones((3, 4))
    >>> tuple(dot_general(a, b, (((1,), (0,)), ((), ()))).shape)
    (2, 4)
  """
  lhs, rhs = tf.convert_to_tensor(lhs), tf.convert_to_tensor(rhs)
  n_l, n_r = lhs.shape.rank, rhs.shape.rank
  dn = canonicalize_dimension_numbers(dimension_numbers, n_l, n_r)
  _check_sizes(lhs.shape.as_list(), rhs.shape.as_list(), dn)
  (lc, rc), (lb, rb) = dn
  letters = iter(string.ascii_letters)
  l_sub = [next(letters) for _ in range(n_l)]
  r_sub = [next(letters) for _ in range(n_r)]
  for a, b in list(zip(lc, rc)) + list(zip(lb, rb)):
    r_sub[b] = l_sub[a]
  out = [l_sub[a] if side == 'lhs' else r_sub[a]
         for side, a in _output_dims(n_l, n_r, dn)]
  if lhs.dtype == tf.bool:
    # Logical dot: OR over the contracted entries of ANDs.
    res = tf.einsum(f'{"".join(l_sub)},{"".join(r_sub)}->{"".join(out)}',
                    tf.cast(lhs, tf.float32), tf.cast(rhs, tf.float32))
    return res > 0
  return tf.einsum(f'{"".join(l_sub)},{"".join(r_sub)}->{"".join(out)}',
                   lhs, rhs)


@layer
@supports_masking(remask_kernel=False)
def DotGeneral(*,
               lhs=None,
               rhs=None,
               dimension_numbers: Tuple[Tuple[Sequence[int], Sequence[int]],
                                        Tuple[Sequence[int], Sequence[int]]] = (
                                            ((), ()), ((), ())),
               precision: Optional[str] = None,
               batch_axis: int = 0,
               channel_axis: int = -1):
  """Contracts the activations with a constant (non-trainable) tensor.

  `apply_fn` computes ``dot_general(inputs, rhs, dimension_numbers)`` or
  ``dot_general(lhs, inputs, dimension_numbers)`` (whichever constant is
  given; with neither the layer is the identity). Any linear map can be
  written this way (permutations, fixed pooling, differences of positions,
  ...), though the dedicated layers are faster.

  The channel axis (infinite in the kernel) may not be contracted or
  batched. Contracting the batch axis is supported by `apply_fn` only.

  Args:
    lhs: constant left operand (array or number), or None.
    rhs: constant right operand, or None.
    dimension_numbers: `((lhs_contracting, rhs_contracting), (lhs_batch,
      rhs_batch))` as in `jax.lax.dot_general`.
    precision: accepted for compatibility (TensorFlow computes at full
      precision of the dtype).
    batch_axis, channel_axis: axes of the inputs.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`; outputs have the dtype of the inputs
    (float32 or float64) and the `dot_general` output shape.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> # Difference of the two rows of (N, 2, W, C) images.
    >>> init_fn, apply_fn, kernel_fn = stax.serial(
    ...     stax.Conv(8, (1, 3)), stax.Relu(),
    ...     stax.DotGeneral(rhs=np.array([1., -1.]),
    ...                     dimension_numbers=(((1,), (0,)), ((), ()))),
    ...     stax.GlobalAvgPool())
    >>> init_fn(0, (5, 2, 6, 3))[0]
    (5, 8)
    >>> x = np.random.RandomState(0).randn(5, 2, 6, 3)
    >>> tuple(kernel_fn(x, None, 'nngp').shape)
    (5, 5)
  """
  if lhs is not None and rhs is not None:
    raise ValueError('DotGeneral: give at most one of the constants `lhs` and '
                     '`rhs`; the other operand is the layer input.')
  if precision not in _PRECISIONS and not hasattr(precision, 'name'):
    raise ValueError(f'`precision` must be None or one of {_PRECISIONS[1:]}, '
                     f'got {precision!r}.')
  is_identity = lhs is None and rhs is None
  try:
    (_, _), (_, _) = dimension_numbers
  except (TypeError, ValueError):
    raise ValueError(
        f'`dimension_numbers` must be ((lhs_contracting, rhs_contracting), '
        f'(lhs_batch, rhs_batch)), got {dimension_numbers!r}.') from None
  is_lhs = rhs is None
  other = None
  if not is_identity:
    other = lhs if is_lhs else rhs
    if isinstance(other, (tf.Tensor, tf.Variable)):
      other = other.numpy()
    other = np.asarray(other)
    if other.dtype.kind not in 'biuf':
      raise TypeError(f'DotGeneral: the constant must be real-valued, got '
                      f'dtype {other.dtype}.')
    if not np.all(np.isfinite(other)):
      raise ValueError('DotGeneral: the constant has non-finite entries.')
  n_other = None if other is None else other.ndim

  def dn_for(ndim):
    if is_lhs:
      return canonicalize_dimension_numbers(dimension_numbers, n_other, ndim)
    return canonicalize_dimension_numbers(dimension_numbers, ndim, n_other)

  def split_dn(ndim):
    """`(input_c, other_c, input_b, other_b)` for inputs of rank `ndim`."""
    (lc, rc), (lb, rb) = dn_for(ndim)
    if is_lhs:
      return rc, lc, rb, lb
    return lc, rc, lb, rb

  def shape_fn(input_shape):
    if is_identity:
      return tuple(input_shape)
    if is_lhs:
      return dot_general_shape(other.shape, input_shape, dimension_numbers)
    return dot_general_shape(input_shape, other.shape, dimension_numbers)

  def dot_fn(x, dtype=None):
    if is_identity:
      return x
    c = tf.constant(other, dtype or x.dtype)
    if x.dtype == tf.bool:
      c = tf.constant(other != 0)
    args = (c, x) if is_lhs else (x, c)
    return dot_general(*args, dimension_numbers)

  def apply_fn(params, inputs, **kwargs):
    return dot_fn(tf.convert_to_tensor(inputs))

  # Contracted input dimensions need the covariances between their positions
  # (and, for the batch axis, between examples); as in neural-tangents the
  # axes are compared as given.
  if is_identity:
    diag_batch, diag_spatial = True, Diagonal()
  else:
    (lc, rc), _ = dimension_numbers
    input_cs = tuple(rc if is_lhs else lc)
    diag_batch = batch_axis not in input_cs
    diag_spatial = Diagonal(input=Bool.YES if input_cs in ((), (batch_axis,))
                            else Bool.NO)

  @requires(diagonal_batch=diag_batch, diagonal_spatial=diag_spatial,
            batch_axis=batch_axis, channel_axis=channel_axis)
  def rule(k, **kwargs):
    if is_identity:
      return k
    ndim = len(k.shape1)
    ba, ca = k.batch_axis % ndim, k.channel_axis % ndim
    in_c, other_c, in_b, other_b = split_dn(ndim)
    if ca in in_c or ca in in_b:
      raise ValueError(
          f'DotGeneral: the channel axis ({ca}) cannot be a contracting or '
          f'batch dimension of the kernel (channels are infinitely many).')
    if ba in in_c:
      raise NotImplementedError(
          'DotGeneral: contracting the batch axis is supported by `apply_fn` '
          'only; the kernel of such outputs has no batch axis.')
    spatial = [i for i in range(ndim) if i not in (ba, ca)]
    ds = k.diagonal_spatial
    if ds and any(i in spatial for i in in_c):
      raise ValueError('DotGeneral: contracting a spatial axis needs full '
                       'spatial covariances (`diagonal_spatial=False`).')
    dtype = k.dtype
    c = tf.constant(other, dtype)
    out_dims = (_output_dims(n_other, ndim, dn_for(ndim)) if is_lhs else
                _output_dims(ndim, n_other, dn_for(ndim)))
    in_side = 'rhs' if is_lhs else 'lhs'
    pairs = dict(zip(other_c + other_b, in_c + in_b))   # other dim -> input

    def equation(kind):
      """`einsum` of `c . t . c`; `kind` 'pair' (two batch axes) or 'diag'."""
      letters = iter(string.ascii_letters)
      left = {i: next(letters) for i in range(ndim) if i != ca}
      right = {i: (left[i] if (ds and i != ba) or (i == ba and kind == 'diag')
                   else next(letters)) for i in left}
      free1 = {j: next(letters) for j in range(n_other) if j not in pairs}
      free2 = {j: (free1[j] if ds else next(letters)) for j in free1}
      t_sub = ''
      for i in spatial:
        t_sub += left[i] if ds else left[i] + right[i]
      t_sub += left[ba] if kind == 'diag' else left[ba] + right[ba]
      o1 = ''.join(left[pairs[j]] if j in pairs else free1[j]
                   for j in range(n_other))
      o2 = ''.join(right[pairs[j]] if j in pairs else free2[j]
                   for j in range(n_other))
      out = ''
      for side, a in out_dims:
        if side == in_side:
          if a in (ba, ca):
            continue
          out += left[a] if ds else left[a] + right[a]
        else:
          out += free1[a] if ds else free1[a] + free2[a]
      out += left[ba] if kind == 'diag' else left[ba] + right[ba]
      return f'{o1},{t_sub},{o2}->{out}'

    eq_cov = equation('diag' if k.diagonal_batch else 'pair')
    nngp, ntk, cov1, cov2 = _dot_map(k.nngp, k.ntk, k.cov1, k.cov2, c,
                                     equation('pair'), eq_cov)
    new_ba = out_dims.index((in_side, ba))
    new_ca = out_dims.index((in_side, ca))
    return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2,
                     batch_axis=new_ba, channel_axis=new_ca,
                     is_reversed=False)

  def mask_fn(mask, input_shape):
    mask = tf.convert_to_tensor(mask)
    shape = list(input_shape)
    ca = channel_axis % len(shape)
    shape[ca] = mask.shape[ca]
    mask = tf.broadcast_to(mask, shape)
    return tf.logical_not(dot_fn(tf.logical_not(mask)))

  return make_init_fn(shape_fn), apply_fn, rule, mask_fn


def _dot_map_impl(nngp, ntk, cov1, cov2, c, eq_pair, eq_cov):
  def contract(t, eq):
    if t is None or t.shape.rank == 0:
      return t
    return tf.einsum(eq, c, t, c)
  return (contract(nngp, eq_pair), contract(ntk, eq_pair),
          contract(cov1, eq_cov), contract(cov2, eq_cov))


# The layer's covariance map as one XLA cluster.
_dot_map = compile_ops.xla(_dot_map_impl)
