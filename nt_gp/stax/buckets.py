"""Size buckets: nearby batch sizes share one traced and compiled propagation.

The engine traces and compiles a `kernel_fn` per input signature, since its
layers need static shapes. For small inputs that compile is most of a call,
and new sizes are ordinary use: a GP's test sets, a notebook, a sweep over
nearby sizes. So a top-level call whose covariances are small
(`nt_gp.config.bucket_max_entries`) pads each batch up to its bucket size,
with copies of its first input, and slices the kernel back: every size in a
bucket runs the same compiled program. Bucket sizes are the multiples of
2^(⌊log2 N⌋ - 4), so a batch grows by less than 1/16 (N ≤ 32 is exact).

Copies rather than zeros: a copy has the variance of a real input, so no
normalised map (ReLU's cosine, `LayerNorm`) divides by zero and no NaN can
reach a gradient. The padded pairs are dropped by the slice, whose gradient
gives them zero.
"""
import math
from typing import Optional

import tensorflow as tf

from nt_gp import _config

__all__ = ['bucket_size', 'bucketed_sizes', 'pad_batch']


def bucket_size(n: int) -> int:
  """The size a batch of `n` inputs is padded to: the next multiple of
  2^(⌊log2 n⌋ - 4), so at most n + n/16.

  Example:
    >>> [bucket_size(n) for n in (7, 32, 33, 100, 1000, 1024, 1025)]
    [7, 32, 34, 100, 1024, 1024, 1088]
  """
  if n <= 32:
    return int(n)
  step = 2 ** (int(math.floor(math.log2(n))) - 4)
  return int(-(-n // step) * step)


def bucketed_sizes(x1, x2, reqs, entries: int) -> Optional[tuple]:
  """`(n1, n2, m1, m2)` (sizes and padded sizes; `n2`, `m2` None when `x2`
  is None) if this call pads, else None.

  A call pads when `config.bucket_max_entries` allows its `entries` (the
  input covariance's size, see `layer._covariance_entries`), its batch axis
  is the first, and some batch is not a bucket size already.
  """
  limit = _config.config.bucket_max_entries
  if not limit or entries > limit or reqs.get('batch_axis', 0) != 0:
    return None
  n1 = int(tf.nest.flatten(x1)[0].shape[0])
  n2 = None if x2 is None else int(tf.nest.flatten(x2)[0].shape[0])
  m1 = bucket_size(n1)
  m2 = None if n2 is None else bucket_size(n2)
  if m1 == n1 and m2 == n2:
    return None
  return n1, n2, m1, m2


def pad_batch(x, m: int):
  """Pads every array of the tree `x` to `m` inputs with copies of its first.

  Example:
    >>> import numpy as np
    >>> pad_batch(np.arange(3.).reshape(3, 1), 5)[:, 0].numpy().tolist()
    [0.0, 1.0, 2.0, 0.0, 0.0]
  """
  def pad(t):
    n = int(t.shape[0])
    if n == m:
      return t
    # concat, not gather: the gradient with respect to `x` stays a dense
    # tensor (a gather's would be IndexedSlices).
    copies = tf.repeat(t[:1], m - n, axis=0)
    return tf.concat([t, copies], axis=0)
  return tf.nest.map_structure(pad, x)
