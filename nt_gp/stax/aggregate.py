"""`Aggregate`: message passing over a graph between spatial positions
(graph neural networks, see "Graph Neural Tangent Kernel", Du et al. 2019).

Every input example ``n`` comes with a graph on the positions of the
aggregated axes; the layer replaces each vertex by the (weighted) sum of its
direct predecessors: ``y[n, j] = sum_i A[n, i, j] x[n, i]``. The kernel is
``A1[n1]^T K[n1, n2] A2[n2]`` over the aggregated positions.

Graphs are given per call with the `pattern` keyword: a dense (weighted)
adjacency tensor (``'DENSE'``) or lists of edges (``'SPARSE'``).
"""
import enum
import string
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from nt_gp.ops import compile as compile_ops
from nt_gp.ops import spatial_matrix
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking
from nt_gp.stax.requirements import Bool, Diagonal, requires
from nt_gp.stax.shapes import make_init_fn

__all__ = ['Aggregate', 'AggregateImplementation']


class AggregateImplementation(enum.Enum):
  """How `Aggregate` represents graphs.

  Attributes:
    DENSE: `pattern` is a dense adjacency tensor; matrix products (best when
      the number of edges is of order ``V^1.5`` or more).
    SPARSE: `pattern` lists the edges; gathers and segment sums (best for
      sparse graphs, ``E ~ V``).

  Example:
    >>> AggregateImplementation('SPARSE').name
    'SPARSE'
  """
  DENSE = 'DENSE'
  SPARSE = 'SPARSE'


def _identity(p):
  return p


@layer
@supports_masking(remask_kernel=True)
def Aggregate(aggregate_axis=None,
              batch_axis: int = 0,
              channel_axis: int = -1,
              to_dense: Optional[Callable] = _identity,
              implementation: str = 'DENSE'):
  """Aggregation over graphs on the spatial positions (graph networks).

  Inputs have shape ``(N, X_1, ..., X_S, C)`` (subject to `batch_axis` and
  `channel_axis`); the graph connects the positions of the `K` aggregated
  axes ``X_i1, ..., X_iK``; other spatial axes (and channels) are processed
  independently. `apply_fn(params, x, pattern=A)` and
  `kernel_fn(x1, x2, pattern=(A1, A2))` take the graphs of each batch
  (`pattern=None`, or `(None, None)` for the kernel, is the identity);
  with `x2=None` pass `(A1, A1)` (or `(A1, None)`).

  * `implementation='DENSE'`: ``A`` has shape ``(N, X_i1, ..., X_iK, X_i1,
    ..., X_iK)``; ``A[n, i, j] = w`` is an edge of weight `w` from vertex
    ``i`` to vertex ``j``, and ``y[n, ..., j, ...] = sum_i A[n, i, j] x[n, ...,
    i, ...]``. `to_dense` (a TensorFlow-traceable function, identity by
    default) is applied to each `pattern` first, e.g. to decode a compact
    format.
  * `implementation='SPARSE'`: ``A`` is an integer array ``(N, n_edges, K,
    2)`` (or ``(N, n_edges, 2)`` when `K == 1`) of (tail, head) coordinates of
    unit-weight edges; repeated edges add up. Edges whose head has a negative
    coordinate are ignored (padding for examples with fewer edges); a tail
    with a negative coordinate stands for the last vertex and coordinates
    beyond an axis wrap around, as in neural-tangents.

  Args:
    aggregate_axis: axis or axes to aggregate over (default: all spatial
      axes); the pattern's vertex coordinates follow these axes in increasing
      order (whatever order they are given in).
    batch_axis, channel_axis: axes of the inputs.
    to_dense: see above (ignored by `'SPARSE'`).
    implementation: `'DENSE'` or `'SPARSE'` (or an `AggregateImplementation`).

  Returns:
    `(init_fn, apply_fn, kernel_fn)`; outputs have the input's shape and
    dtype (float32 or float64); patterns are cast to that dtype.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> rng = np.random.RandomState(0)
    >>> x = rng.randn(4, 6, 3)                        # 4 graphs, 6 vertices
    >>> adj = (rng.rand(4, 6, 6) < 0.4).astype(float)
    >>> init_fn, apply_fn, kernel_fn = stax.serial(
    ...     stax.Dense(16), stax.Relu(), stax.Aggregate(), stax.Dense(16),
    ...     stax.GlobalSumPool(), stax.Dense(1))
    >>> tuple(kernel_fn(x, None, 'ntk', pattern=(adj, adj)).shape)
    (4, 4)
    >>> _, params = init_fn(0, x.shape)
    >>> tuple(apply_fn(params, x, pattern=adj).shape)
    (4, 1)
  """
  if isinstance(implementation, AggregateImplementation):
    impl = implementation
  else:
    try:
      impl = AggregateImplementation(str(implementation).upper())
    except ValueError:
      raise ValueError(f'`implementation` must be "DENSE" or "SPARSE", got '
                       f'{implementation!r}.') from None
  if to_dense is None:
    to_dense = _identity
  if not callable(to_dense):
    raise TypeError('`to_dense` must be callable.')

  def agg_axes_of(ndim):
    ba, ca = batch_axis % ndim, channel_axis % ndim
    if ba == ca:
      raise ValueError('`batch_axis` and `channel_axis` must differ.')
    if aggregate_axis is None:
      axes = tuple(i for i in range(ndim) if i not in (ba, ca))
    else:
      raw = ((aggregate_axis,) if isinstance(aggregate_axis, (int, np.integer))
             else tuple(aggregate_axis))
      for a in raw:
        if not isinstance(a, (int, np.integer)) or not -ndim <= a < ndim:
          raise ValueError(f'`aggregate_axis` {aggregate_axis!r} is invalid '
                           f'for inputs of rank {ndim}.')
      axes = tuple(sorted(int(a) % ndim for a in raw))
      if len(set(axes)) != len(axes) or ba in axes or ca in axes:
        raise ValueError(f'`aggregate_axis` must be distinct spatial axes '
                         f'(not the batch axis {ba} or channel axis {ca}), '
                         f'got {aggregate_axis!r}.')
    return axes, ba, ca

  def shape_fn(input_shape):
    agg_axes_of(len(input_shape))
    return tuple(input_shape)

  def dense_pattern(pattern, n, agg_shape, dtype, name='pattern'):
    p = to_dense(pattern)
    p = tf.convert_to_tensor(p)
    expected = [n] + list(agg_shape) * 2
    if p.shape.rank != len(expected) or any(
        a is not None and a != b for a, b in zip(p.shape.as_list(),
                                                 expected)):
      raise ValueError(f'Aggregate (DENSE): `{name}` must have shape '
                       f'{tuple(expected)} (batch, then the aggregated axes '
                       f'twice), got {tuple(p.shape)}.')
    return tf.cast(p, dtype)

  def edges(pattern, n, agg_shape, name='pattern'):
    """Flat `(senders, receivers)`, each `(N, E)` int32 (-1 = dropped)."""
    p = tf.convert_to_tensor(pattern)
    if p.dtype.is_floating or p.dtype == tf.bool:
      raise TypeError(f'Aggregate (SPARSE): `{name}` must be an integer array '
                      f'of edges, got dtype {p.dtype.name}.')
    k_agg = len(agg_shape)
    if p.shape.rank is None or p.shape[-1] != 2:
      raise ValueError(f'Aggregate (SPARSE): `{name}` must end in a dimension '
                       f'of size 2 (tail, head), got shape {tuple(p.shape)}.')
    s, r = p[..., 0], p[..., 1]
    if k_agg == 1 and s.shape.rank == 2:
      s, r = s[..., None], r[..., None]
    if s.shape.rank != 3 or s.shape[2] != k_agg or s.shape[0] != n:
      raise ValueError(
          f'Aggregate (SPARSE): `{name}` must have shape (batch={n}, n_edges, '
          f'{k_agg}, 2){" or (batch, n_edges, 2)" if k_agg == 1 else ""}, '
          f'got {tuple(p.shape)}.')
    strides = np.cumprod((list(agg_shape[1:]) + [1])[::-1])[::-1]

    def ravel(idx):
      idx = tf.cast(idx, tf.int64)
      sizes = tf.constant(agg_shape, tf.int64)
      flat = tf.reduce_sum(tf.math.floormod(idx, sizes) *
                           tf.constant(strides, tf.int64), axis=-1)
      flat = tf.where(tf.reduce_all(idx >= 0, axis=-1), flat, -1)
      return tf.cast(flat, tf.int32)
    return ravel(s), ravel(r)

  def apply_fn(params, inputs, pattern=None, **kwargs):
    x = tf.convert_to_tensor(inputs)
    if pattern is None:
      return x
    ndim = x.shape.rank
    agg, ba, _ = agg_axes_of(ndim)
    agg_shape = [x.shape[a] for a in agg]
    n = x.shape[ba]
    if impl == AggregateImplementation.DENSE:
      p = dense_pattern(pattern, n, agg_shape, x.dtype)
      letters = string.ascii_letters
      x_sub = letters[:ndim]
      new = {a: letters[ndim + j] for j, a in enumerate(agg)}
      p_sub = x_sub[ba] + ''.join(x_sub[a] for a in agg) + ''.join(
          new[a] for a in agg)
      out_sub = ''.join(new.get(i, x_sub[i]) for i in range(ndim))
      return tf.einsum(f'{x_sub},{p_sub}->{out_sub}', x, p)
    s, r = edges(pattern, n, agg_shape)
    v = int(np.prod(agg_shape, dtype=np.int64))
    rest = [i for i in range(ndim) if i != ba and i not in agg]
    perm = [ba] + list(agg) + rest
    t = tf.transpose(x, perm)
    canon_shape = tf.shape(t)
    t = tf.reshape(t, tf.concat([[n, v], canon_shape[1 + len(agg):]], 0))
    msgs = tf.gather(t, _wrap(s, v), axis=1, batch_dims=1)
    out = tf.reshape(_segment_sum(msgs, r, v), canon_shape)
    return tf.transpose(out, np.argsort(perm).tolist())

  def get_patterns(pattern):
    if pattern is None:
      return None, None
    if not isinstance(pattern, (tuple, list)) or len(pattern) != 2:
      raise TypeError('Aggregate: the kernel needs `pattern=(pattern1, '
                      'pattern2)`, one graph batch per input batch (pass '
                      '`(pattern1, pattern1)` or `(pattern1, None)` when '
                      '`x2` is None).')
    return tuple(pattern)

  @requires(batch_axis=batch_axis, channel_axis=channel_axis,
            diagonal_spatial=Diagonal(input=Bool.NO, output=Bool.NO))
  def rule(k, pattern=None, **kwargs):
    p1, p2 = get_patterns(pattern)
    if p1 is None and p2 is None:
      return k
    if p1 is None:
      raise ValueError('Aggregate: `pattern1` is None but `pattern2` is not.')
    if p2 is None:
      if k.cov2 is not None:
        raise ValueError('Aggregate: `pattern2` is None but `x2` is given; '
                         'pass the graphs of `x2`.')
      p2 = p1
    ndim = len(k.shape1)
    agg, ba, ca = agg_axes_of(ndim)
    spatial = [i for i in range(ndim) if i not in (ba, ca)]
    sizes = [k.shape1[i] for i in spatial]
    agg_shape = [k.shape1[a] for a in agg]
    n1, n2 = k.shape1[ba], k.shape2[ba]
    group = [spatial.index(a) for a in agg]
    dtype = k.dtype

    if impl == AggregateImplementation.DENSE:
      a1 = dense_pattern(p1, n1, agg_shape, dtype, 'pattern1')
      a2 = dense_pattern(p2, n2, agg_shape, dtype, 'pattern2')
      nngp, ntk, cov1, cov2 = _dense_map(
          k.nngp, k.ntk, k.cov1, k.cov2, a1, a2,
          (tuple(spatial), tuple(agg), k.diagonal_batch))
    else:
      v = int(np.prod(agg_shape, dtype=np.int64))
      s1, r1 = edges(p1, n1, agg_shape, 'pattern1')
      s2, r2 = edges(p2, n2, agg_shape, 'pattern2')
      nngp, ntk, cov1, cov2 = _sparse_map(
          k.nngp, k.ntk, k.cov1, k.cov2, _wrap(s1, v), r1, _wrap(s2, v), r2,
          (tuple(sizes), tuple(group), v, k.diagonal_batch))
    return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2)

  return make_init_fn(shape_fn), apply_fn, rule


def _wrap(s, v):
  """A negative (padding) tail indexes the last vertex."""
  return tf.where(s < 0, s + v, s)


def _segment_sum(data, ids, v):
  """Sums `data (N, E, ...)` into `(N, V, ...)` by `ids (N, E)` (-1 dropped)."""
  n = ids.shape[0] if ids.shape[0] is not None else tf.shape(ids)[0]
  offsets = tf.range(n, dtype=ids.dtype)[:, None] * v
  flat_ids = tf.reshape(tf.where(ids >= 0, ids + offsets, -1), [-1])
  rest = tf.shape(data)[2:]
  flat = tf.reshape(data, tf.concat([[-1], rest], 0))
  out = tf.math.unsorted_segment_sum(flat, flat_ids, n * v)
  return tf.reshape(out, tf.concat([[n, v], rest], 0))


def _dense_equation(spatial, agg, kind):
  """`einsum` equation of `A1^T K A2` on a batch-last covariance."""
  letters = iter(string.ascii_letters)
  left = {i: next(letters) for i in spatial}
  right = {i: next(letters) for i in spatial}
  left_new = {a: next(letters) for a in agg}
  right_new = {a: next(letters) for a in agg}
  bl = next(letters)
  br = bl if kind == 'diag' else next(letters)
  t_sub = ''.join(left[i] + right[i] for i in spatial)
  out = ''.join(left_new.get(i, left[i]) + right_new.get(i, right[i])
                for i in spatial)
  batch = bl if kind == 'diag' else bl + br
  pa_sub = bl + ''.join(left[a] for a in agg) + ''.join(
      left_new[a] for a in agg)
  pb_sub = br + ''.join(right[a] for a in agg) + ''.join(
      right_new[a] for a in agg)
  return f'{pa_sub},{t_sub}{batch},{pb_sub}->{out}{batch}'


def _dense_map_impl(nngp, ntk, cov1, cov2, a1, a2, static):
  spatial, agg, diagonal_batch = static

  def agg_fn(t, pa, pb, kind):
    if t is None or t.shape.rank == 0:
      return t
    return tf.einsum(_dense_equation(spatial, agg, kind), pa, t, pb)
  cov_kind = 'diag' if diagonal_batch else 'pair'
  return (agg_fn(nngp, a1, a2, 'pair'), agg_fn(ntk, a1, a2, 'pair'),
          agg_fn(cov1, a1, a1, cov_kind), agg_fn(cov2, a2, a2, cov_kind))


def _sparse_map_impl(nngp, ntk, cov1, cov2, s1, r1, s2, r2, static):
  sizes, group, v, diagonal_batch = static

  def agg_fn(t, sa, ra, sb, rb, kind):
    if t is None or t.shape.rank == 0:
      return t
    bn = 1 if kind == 'diag' else 2
    g = spatial_matrix.to_grouped(t, sizes, group, bn)
    if kind == 'diag':                                  # (N, V, V', R)
      g = tf.gather(g, sa, axis=1, batch_dims=1)        # (N, E, V', R)
      g = tf.gather(g, sa, axis=2, batch_dims=1)        # (N, E, E', R)
      g = _segment_sum(tf.transpose(g, [0, 2, 1, 3]), ra, v)  # (N, V', E, R)
      g = _segment_sum(tf.transpose(g, [0, 2, 1, 3]), ra, v)  # (N, V, V', R)
    else:                                               # (N1, N2, V, V', R)
      g = tf.gather(g, sa, axis=2, batch_dims=1)        # (N1, N2, E1, V', R)
      g = tf.transpose(g, [1, 0, 2, 3, 4])              # (N2, N1, E1, V', R)
      g = tf.gather(g, sb, axis=3, batch_dims=1)        # (N2, N1, E1, E2, R)
      g = tf.transpose(g, [0, 3, 1, 2, 4])              # (N2, E2, N1, E1, R)
      g = _segment_sum(g, rb, v)                        # (N2, V', N1, E1, R)
      g = tf.transpose(g, [2, 3, 0, 1, 4])              # (N1, E1, N2, V', R)
      g = _segment_sum(g, ra, v)                        # (N1, V, N2, V', R)
      g = tf.transpose(g, [0, 2, 1, 3, 4])              # (N1, N2, V, V', R)
    return spatial_matrix.from_grouped(g, sizes, group, bn)
  cov_kind = 'diag' if diagonal_batch else 'pair'
  return (agg_fn(nngp, s1, r1, s2, r2, 'pair'),
          agg_fn(ntk, s1, r1, s2, r2, 'pair'),
          agg_fn(cov1, s1, r1, s1, r1, cov_kind),
          agg_fn(cov2, s2, r2, s2, r2, cov_kind))


# Each covariance map runs as one XLA cluster.
_dense_map = compile_ops.xla(_dense_map_impl)
_sparse_map = compile_ops.xla(_sparse_map_impl)
