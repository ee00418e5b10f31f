"""Symmetric block packing of covariances between a batch and itself.

When `x2` is `x1`, `nngp[..., a, b, i, j] = nngp[..., b, a, j, i]`: the
entry for the input pair (j, i) is that of (i, j) with the spatial positions
swapped. The batch is split into `B` blocks of `b = N / B` inputs and only
the block pairs I <= J are propagated, as a trailing `(B (B + 1) / 2, b, b)`
array instead of `(N, N)`: for B = 8 that is 56% of the entries. A batch
size without a suitable divisor is padded to one (`block_count`). Blocks keep
the computation free of per-entry index lookups (which XLA:CPU executes
slowly when fused into elementwise loops); each block pair only needs the
variances of its two blocks, a small gather. Convolutions, pooling and
readouts act on the spatial axes and commute with the swap.
"""
import functools

import numpy as np
import tensorflow as tf

from nt_gp.ops import static_shape

__all__ = ['block_count', 'padded_size', 'pad_batch', 'block_pairs', 'pack',
           'unpack',
           'unpack_adjoint', 'pair_variances', 'swap_spatial_pairs',
           'MAX_BLOCKS']

MAX_BLOCKS = 8


def _divisor_blocks(n: int) -> int:
  """The largest divisor of `n` that is at most `MAX_BLOCKS` and leaves
  blocks of at least 2 inputs (1 if none)."""
  for blocks in range(min(MAX_BLOCKS, n // 2), 1, -1):
    if n % blocks == 0:
      return blocks
  return 1


def _entries(size: int, blocks: int) -> float:
  """Entries propagated for `size` inputs in `blocks` blocks."""
  return size * size * ((blocks + 1) / (2 * blocks) if blocks > 1 else 1.)


# Padding must cut the propagated entries by at least this factor: block
# sizes that are not multiples of the vector width cost time too (N = 500
# padded to 504 = 8 x 63 propagates 5% fewer entries than 5 x 100, but an
# ElementwiseNumerical MLP took 0.04 s instead of 0.03 s).
_PAD_GAIN = 0.9


@functools.lru_cache(maxsize=256)
def block_count(n: int) -> int:
  """Number of blocks B for a batch of `n` (1 means: do not pack).

  Packing `n` inputs in B blocks propagates ``n'² (B + 1) / (2B)`` entries,
  where ``n' = padded_size(n, B)`` is `n` rounded up to a multiple of B (the
  batch is padded with copies of its first input, and the padded pairs are
  dropped when unpacking). Without padding, B is the largest divisor of `n`
  up to `MAX_BLOCKS` that leaves blocks of at least 2 inputs. A padded size
  ``n < n' <= n + n // 16`` is used instead when it propagates at least 10%
  fewer entries (the fewest of them): a prime batch size such as 257 is
  packed as 259 = 7 x 37 (0.58x the entries of 257²) instead of not at all.

  Example:
    >>> block_count(32), block_count(100), block_count(31), block_count(4)
    (8, 5, 8, 2)
    >>> block_count(257), padded_size(257, block_count(257))
    (7, 259)
  """
  plain = _divisor_blocks(n)
  best_cost, best = _entries(n, plain), plain
  for size in range(n + 1, n + n // 16 + 1):
    blocks = _divisor_blocks(size)
    cost = _entries(size, blocks)
    if (blocks > 1 and cost < best_cost and
        cost < _PAD_GAIN * _entries(n, plain)):
      best_cost, best = cost, blocks
  return best


def padded_size(n: int, blocks: int) -> int:
  """`n` rounded up to a multiple of `blocks`.

  Example:
    >>> padded_size(31, 8), padded_size(32, 8)
    (32, 32)
  """
  return -(-n // blocks) * blocks


def pad_batch(t: tf.Tensor, size: int, axis: int = 0) -> tf.Tensor:
  """Pads `t` to `size` along `axis` with copies of its first entry.

  Copies, not zeros: padded inputs give valid covariances (a zero input has
  zero variance, and normalised maps would divide by it, sending NaNs into
  the gradients even of entries that are dropped).

  Example:
    >>> pad_batch(tf.constant([[1., 2.], [3., 4.]]), 3).numpy().tolist()
    [[1.0, 2.0], [3.0, 4.0], [1.0, 2.0]]
  """
  n = t.shape[axis]
  if size == n:
    return t
  first = tf.gather(t, [0] * (size - n), axis=axis)
  return tf.concat([t, first], axis)


def block_pairs(blocks: int):
  """Row and column block indices of the pairs I <= J, row-major.

  Example:
    >>> [r.tolist() for r in block_pairs(3)]
    [[0, 0, 0, 1, 1, 2], [0, 1, 2, 1, 2, 2]]
  """
  return np.triu_indices(blocks)


def _by_blocks(t: tf.Tensor, blocks: int) -> tf.Tensor:
  """`(..., N, N)` -> `(..., B², N' / B, N' / B)`: every block (I, J) at
  index I B + J, with ``N' = padded_size(N, B)`` (padded with zeros)."""
  t = tf.convert_to_tensor(t)
  n = t.shape[-1]
  size = padded_size(n, blocks)
  rank = t.shape.rank
  if size > n:
    t = tf.pad(t, [[0, 0]] * (rank - 2) + [[0, size - n]] * 2)
  b = size // blocks
  lead = static_shape.dims(t, 0, -2)
  t = tf.reshape(t, lead + [blocks, b, blocks, b])
  t = tf.transpose(t, list(range(rank - 2)) + [rank - 2, rank, rank - 1,
                                               rank + 1])
  return tf.reshape(t, lead + [blocks * blocks, b, b])


def pack(t: tf.Tensor, blocks: int) -> tf.Tensor:
  """`(..., N, N)` -> `(..., B (B + 1) / 2, N' / B, N' / B)` with
  ``N' = padded_size(N, B)`` (padded with zeros)."""
  rows, cols = block_pairs(blocks)
  return tf.gather(_by_blocks(t, blocks), rows * blocks + cols, axis=-3)


def swap_spatial_pairs(t: tf.Tensor, n_spatial: int) -> tf.Tensor:
  """Swaps the two axes of every spatial pair of a full-spatial covariance."""
  perm = []
  for k in range(n_spatial):
    perm += [2 * k + 1, 2 * k]
  perm += list(range(2 * n_spatial, t.shape.rank))
  return tf.transpose(t, perm)


def unpack(t: tf.Tensor, blocks: int, n_spatial: int,
           diagonal_spatial: bool, n: int = None) -> tf.Tensor:
  """`(..., B (B + 1) / 2, b, b)` -> `(..., n, n)`; see the module docstring.

  `n` (default ``B b``) drops the pairs of padded inputs (see `block_count`).

  Its gradient is `unpack_adjoint`: two dense packings of the incoming
  gradient. (Differentiated as written, each of the B² gathered blocks would
  send back a gradient of the whole packed size; summed in graph mode they
  kept gigabytes alive.)

  Example:
    >>> import numpy as np
    >>> full = np.arange(16.).reshape(4, 4); full = full + full.T
    >>> bool(np.all(unpack(pack(full, 2), 2, 0, True).numpy() == full))
    True
  """
  if t is None or t.shape.rank == 0:
    return t

  size = blocks * t.shape[-1]
  n = size if n is None else n

  @tf.custom_gradient
  def unpack_op(t):
    def grad(g):     # `pack` pads g with zeros: the adjoint of the slice
      return unpack_adjoint(g, blocks, n_spatial, diagonal_spatial)
    out = _unpack(t, blocks, n_spatial, diagonal_spatial)
    if n < size:
      out = out[..., :n, :n]
    return out, grad
  return unpack_op(t)


def unpack_adjoint(g: tf.Tensor, blocks: int, n_spatial: int,
                   diagonal_spatial: bool) -> tf.Tensor:
  """The transpose of the linear map `unpack`: `(..., N, N)` -> packed.

  A packed block (I, J) appears in the unpacked matrix at (I, J) and, for
  I < J, mirrored (batch axes transposed, spatial pairs swapped) at (J, I);
  it receives the sum of `g` at both places. `g` is laid out by blocks once;
  only the gathered mirror blocks (half of `g`) are transposed.

  Example:
    >>> import numpy as np
    >>> g = np.arange(16.).reshape(4, 4)
    >>> unpack_adjoint(g, 2, 0, True).numpy()[1].tolist()   # block (0, 1)
    [[10.0, 15.0], [15.0, 20.0]]
  """
  g = _by_blocks(g, blocks)
  rank = g.shape.rank
  rows, cols = block_pairs(blocks)
  direct = tf.gather(g, rows * blocks + cols, axis=-3)
  if blocks == 1:
    return direct
  mirrored = tf.gather(g, cols * blocks + rows, axis=-3)
  mirrored = tf.transpose(mirrored, list(range(rank - 2)) + [rank - 1,
                                                             rank - 2])
  if n_spatial and not diagonal_spatial:
    mirrored = swap_spatial_pairs(mirrored, n_spatial)
  off_diagonal = tf.constant((rows != cols)[:, None, None], g.dtype)
  return direct + off_diagonal * mirrored


def _unpack(t, blocks, n_spatial, diagonal_spatial):
  swapped = (swap_spatial_pairs(t, n_spatial)
             if n_spatial and not diagonal_spatial else t)
  if t.shape.num_elements() is not None and (
      t.shape.num_elements() <= _GATHERED_MAX_ENTRIES):
    return _unpack_gathered(t, swapped, blocks)
  return _unpack_by_blocks(t, swapped, blocks)


# Up to this many stored entries, unpacking is one gather (a handful of ops,
# quick to trace: small kernels are dominated by tracing, and every new
# input size is traced again). Above it, block by block (B² gathers, B + 1
# concats), which moves less memory: 1.45-1.6x faster at N = 4000, B = 8.
_GATHERED_MAX_ENTRIES = 2 ** 20


def _unpack_gathered(t, swapped, blocks):
  """The stored blocks, then the transposed ones for the pairs I > J,
  gathered into block order (I, J) and laid out as (N, N)."""
  rank = t.shape.rank
  lower = tf.transpose(swapped, list(range(rank - 2)) + [rank - 1, rank - 2])
  both = tf.concat([t, lower], -3)
  full = tf.gather(both, _unpack_index(blocks), axis=-3)
  b = t.shape[-1]
  lead = static_shape.dims(t, 0, -3)
  full = tf.reshape(full, lead + [blocks, blocks, b, b])
  full = tf.transpose(full, list(range(rank - 3)) + [
      rank - 3, rank - 1, rank - 2, rank])
  return tf.reshape(full, lead + [blocks * b, blocks * b])


def _unpack_by_blocks(t, swapped, blocks):
  """Row by row of blocks, concatenated."""
  rows, cols = block_pairs(blocks)
  index = {(int(r), int(c)): p for p, (r, c) in enumerate(zip(rows, cols))}
  rank = t.shape.rank
  transpose_last = list(range(rank - 3)) + [rank - 2, rank - 3]
  block_rows = []
  for i in range(blocks):
    row = []
    for j in range(blocks):
      if i <= j:
        row.append(tf.gather(t, index[(i, j)], axis=-3))
      else:
        row.append(tf.transpose(tf.gather(swapped, index[(j, i)], axis=-3),
                                transpose_last))
    block_rows.append(tf.concat(row, -1))
  return tf.concat(block_rows, -2)


def _unpack_index(blocks: int) -> np.ndarray:
  """For block (I, J) in row-major order, its position in the stored pairs
  (I <= J), or the number of pairs plus that of (J, I) (I > J)."""
  rows, cols = block_pairs(blocks)
  pairs = len(rows)
  index = np.zeros((blocks, blocks), np.int32)
  index[rows, cols] = np.arange(pairs)
  index[cols, rows] = np.where(rows == cols, index[rows, cols],
                               pairs + np.arange(pairs))
  return index.reshape(-1)


def pair_variances(v: tf.Tensor, blocks: int):
  """Per block pair, the variances of its row and column blocks.

  Args:
    v: `(..., N)` variances (padded like the batch, see `block_count`).
    blocks: B.

  Returns:
    Two `(..., B (B + 1) / 2, N' / B)` tensors, ``N' = padded_size(N, B)``.
  """
  n = padded_size(v.shape[-1], blocks)
  v = pad_batch(v, n, axis=-1)
  v = tf.reshape(v, static_shape.dims(v, 0, -1) + [blocks, n // blocks])
  rows, cols = block_pairs(blocks)
  return tf.gather(v, rows, axis=-2), tf.gather(v, cols, axis=-2)
