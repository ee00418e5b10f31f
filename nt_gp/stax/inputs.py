"""From input arrays to the input-layer `Kernel` (batch-last layout).

The input "covariance" is the channel-averaged outer product of the inputs,
``nngp[..., n1, n2] = sum_c x1[n1, ..., c] x2[n2, ..., c] / C``, kept over the
spatial diagonal or over all pairs of positions as the network requires.
"""
from typing import Optional

import tensorflow as tf

from nt_gp.kernel import Kernel
from nt_gp.ops import packing

__all__ = ['inputs_to_kernel']


def _canonical(x: tf.Tensor, batch_axis: int, channel_axis: int) -> tf.Tensor:
  """Moves the batch axis to the front and the channel axis to the back."""
  rank = x.shape.rank
  others = [i for i in range(rank) if i not in (batch_axis, channel_axis)]
  perm = [batch_axis] + others + [channel_axis]
  return x if perm == list(range(rank)) else tf.transpose(x, perm)


def _interleave_perm(n_spatial: int) -> list:
  """Perm from (N1, X1..XS, N2, Y1..YS) to (X1, Y1, ..., XS, YS, N1, N2)."""
  perm = []
  for i in range(n_spatial):
    perm += [1 + i, n_spatial + 2 + i]
  return perm + [0, n_spatial + 1]


def cross_cov(a: tf.Tensor, b: tf.Tensor, diagonal_spatial: bool) -> tf.Tensor:
  """Covariance between two canonical batches `(N, *spatial, C)`, batch-last."""
  n1, n2 = tf.shape(a)[0], tf.shape(b)[0]
  spatial = a.shape[1:-1]
  c = a.shape[-1]
  s = len(spatial)
  if s == 0:
    return tf.matmul(a, b, transpose_b=True) / c
  p = spatial.num_elements()
  if diagonal_spatial:
    a_p = tf.transpose(tf.reshape(a, [-1, p, c]), [1, 0, 2])
    b_p = tf.transpose(tf.reshape(b, [-1, p, c]), [1, 0, 2])
    out = tf.matmul(a_p, b_p, transpose_b=True) / c            # (P, N1, N2)
    return tf.reshape(out, list(spatial) + [n1, n2])
  out = tf.matmul(tf.reshape(a, [-1, c]), tf.reshape(b, [-1, c]),
                  transpose_b=True) / c                      # (N1 P, N2 P)
  out = tf.reshape(out, [n1] + list(spatial) + [n2] + list(spatial))
  return tf.transpose(out, _interleave_perm(s))


def packed_self_cov(a: tf.Tensor, diagonal_spatial: bool,
                    blocks: int) -> tf.Tensor:
  """Covariance of a canonical batch with itself over block pairs I <= J.

  Returns `(*spatial, B (B + 1) / 2, N / B, N / B)` (see `nt_gp.ops.packing`).
  """
  n = a.shape[0]
  spatial = a.shape[1:-1]
  s = len(spatial)
  if s == 0:
    return packing.pack(cross_cov(a, a, False), blocks)
  c = a.shape[-1]
  b = n // blocks
  rows, cols = packing.block_pairs(blocks)
  flat = tf.reshape(a, [blocks, b, -1, c])                   # (B, b, S, C)
  left, right = tf.gather(flat, rows), tf.gather(flat, cols)  # (K, b, S, C)
  if diagonal_spatial:
    out = tf.einsum('kisc,kjsc->skij', left, right) / c
    return tf.reshape(out, list(spatial) + [-1, b, b])
  out = tf.einsum('kisc,kjtc->stkij', left, right) / c       # (S, S, K, b, b)
  out = tf.reshape(out, list(spatial) * 2 + [-1, b, b])
  perm = []
  for k in range(s):
    perm += [k, s + k]
  return tf.transpose(out, perm + [2 * s, 2 * s + 1, 2 * s + 2])


def self_cov(a: tf.Tensor, diagonal_batch: bool,
             diagonal_spatial: bool) -> tf.Tensor:
  """Covariance of a canonical batch with itself, batch-last."""
  if not diagonal_batch:
    return cross_cov(a, a, diagonal_spatial)
  c = a.shape[-1]
  spatial = a.shape[1:-1]
  s = len(spatial)
  if diagonal_spatial or s == 0:
    out = tf.reduce_sum(tf.square(a), axis=-1) / c           # (N, *spatial)
    return tf.transpose(out, list(range(1, s + 1)) + [0]) if s else out
  p = spatial.num_elements()
  flat = tf.reshape(a, [-1, p, c])
  out = tf.matmul(flat, flat, transpose_b=True) / c          # (N, P, P)
  out = tf.reshape(out, [-1] + list(spatial) * 2)
  perm = []
  for i in range(s):
    perm += [1 + i, 1 + s + i]
  return tf.transpose(out, perm + [0])


def inputs_to_kernel(x1: tf.Tensor,
                     x2: Optional[tf.Tensor],
                     *,
                     diagonal_batch: bool,
                     diagonal_spatial: bool,
                     compute_ntk: bool,
                     batch_axis: int,
                     channel_axis: int,
                     eps: float = 1e-12,
                     mask1=None,
                     mask2=None,
                     pack: bool = False,
                     **unused_kwargs) -> Kernel:
  """Builds the input-layer `Kernel` in batch-last layout.

  Args:
    x1: `(N1, ...)` float tensor (batch and channel axes as given).
    x2: `(N2, ...)` float tensor of the same dtype and non-batch shape, or None.
    diagonal_batch: keep only `cov1[n, n]`.
    diagonal_spatial: keep only the spatial diagonal.
    compute_ntk: whether an NTK (zero at the input) is tracked.
    batch_axis, channel_axis: axes of `x1`/`x2`.
    eps: tolerance for deciding whether `x1` and `x2` are the same inputs.
    mask1, mask2: optional boolean masks of the inputs.
    pack: when `x2` is None, keep only pairs n1 <= n2 of `nngp`/`ntk`.

  Returns:
    A batch-last `Kernel` with `nngp` of shape `(*spatial, N1, N2)`.
  """
  ndim = x1.shape.rank
  batch_axis %= ndim
  channel_axis %= ndim
  a = _canonical(x1, batch_axis, channel_axis)
  b = None if x2 is None else _canonical(x2, batch_axis, channel_axis)
  if ndim == 2:
    diagonal_spatial = False
  blocks = packing.block_count(x1.shape[batch_axis])
  pack = pack and b is None and mask1 is None and blocks > 1
  if pack:
    nngp = packed_self_cov(a, diagonal_spatial, blocks)
  else:
    nngp = cross_cov(a, a if b is None else b, diagonal_spatial)
  cov1 = self_cov(a, diagonal_batch, diagonal_spatial)
  cov2 = None if b is None else self_cov(b, diagonal_batch, diagonal_spatial)
  if x2 is None:
    x1_is_x2 = tf.constant(True)
  elif x1.shape != x2.shape:
    x1_is_x2 = tf.constant(False)
  else:
    x1_is_x2 = tf.reduce_all(tf.abs(x1 - x2) < eps)
  ntk = tf.zeros((), nngp.dtype) if compute_ntk else None
  return Kernel(
      nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, x1_is_x2=x1_is_x2,
      is_gaussian=False, is_reversed=False, is_input=True,
      diagonal_batch=diagonal_batch, diagonal_spatial=diagonal_spatial,
      shape1=tuple(x1.shape), shape2=tuple((x1 if x2 is None else x2).shape),
      batch_axis=batch_axis, channel_axis=channel_axis,
      mask1=mask1, mask2=mask2, batch_last=True, packed=pack)
