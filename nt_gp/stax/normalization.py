"""`LayerNorm`: normalisation over the channel axis (and optionally spatial
or batch axes).

At infinite width the empirical mean of a centred Gaussian over channels is
zero and its empirical variance is the kernel variance, so a normalised
activation has covariances

  q12' = q12 / sqrt(v1 v2),     ntk' = ntk / sqrt(v1 v2),

where v is ``eps`` plus the variance averaged over the normalised non-channel
axes, as in neural-tangents (with masks: the sum of ``eps + variance`` over
all positions, whose variances are zero where masked, divided by the number
of unmasked positions). The rule works
directly on the batch-last layouts: variances ``(*spatial, N)`` are averaged
(keeping singleton axes) and broadcast against every covariance.
"""
import numpy as np
import tensorflow as tf

from nt_gp.ops import diagonal
from nt_gp.ops import packing
from nt_gp.stax import hparams
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking
from nt_gp.stax.requirements import requires
from nt_gp.stax.rule_spec import capabilities
from nt_gp.stax.shapes import make_init_fn

__all__ = ['LayerNorm']


def _canonical_axes(axis, ndim: int):
  axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
  out = []
  for a in axes:
    if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)):
      raise TypeError(f'`axis` must be an int or a sequence of ints, got '
                      f'{axis!r}.')
    if not -ndim <= a < ndim:
      raise ValueError(f'`axis={axis!r}` is out of range for activations of '
                       f'rank {ndim}.')
    if a % ndim in out:
      raise ValueError(f'`axis={axis!r}` repeats axis {a % ndim}.')
    out.append(int(a) % ndim)
  return sorted(out)


def _masked_mean(v, mask, axes, skip_masked=True):
  """Mean of `v` over `axes` (keepdims) divided by the number of unmasked
  entries (at least 1). Masked entries are left out of the sum if
  `skip_masked`, else summed too (neural-tangents' kernel statistics, where
  they hold `eps`, so that fully masked rows stay finite)."""
  if not axes:
    return v
  if mask is None:
    return tf.reduce_mean(v, axis=axes, keepdims=True)
  mask = tf.broadcast_to(mask, tf.shape(v))
  if skip_masked:
    v = tf.where(mask, tf.zeros_like(v), v)
  total = tf.reduce_sum(v, axes, keepdims=True)
  count = tf.reduce_sum(tf.cast(tf.logical_not(mask), v.dtype), axes,
                        keepdims=True)
  return total / tf.maximum(count, 1)


@layer
@supports_masking(remask_kernel=False)
def LayerNorm(axis=-1, eps=1e-12, batch_axis: int = 0, channel_axis: int = -1):
  """Layer normalisation, ``(x - mean(x)) / sqrt(eps + var(x))`` over `axis`.

  Args:
    axis: axis or axes of the activations to normalise over; must include the
      channel axis (e.g. ``-1``, or ``(1, 2, 3)`` for NHWC images to normalise
      over positions and channels).
    eps: non-negative constant added to the variance (number or tensor).
    batch_axis: batch axis of the activations.
    channel_axis: channel axis of the activations.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`. `apply_fn(params, x, mask=None)` takes an
    optional boolean mask (True = excluded from the statistics).

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1, W_std=3.), stax.LayerNorm())
    >>> x = np.array([[1., 1.], [1., -1.]])
    >>> kernel_fn(x, get='nngp').numpy().round(6).tolist()   # correlations
    [[1.0, 0.0], [0.0, 1.0]]
  """
  _canonical_axes(axis, 64)   # type checks only; ranges are checked later.
  hparams.check_hparam('eps', eps, lower=0.)

  def apply_fn(params, inputs, mask=None, **kwargs):
    x = tf.convert_to_tensor(inputs)
    axes = _canonical_axes(axis, x.shape.rank)
    e = hparams.cast(eps, x.dtype)
    if mask is None:
      mean, var = tf.nn.moments(x, axes, keepdims=True)
    else:
      mask = tf.convert_to_tensor(mask)
      mean = _masked_mean(x, mask, axes)
      var = _masked_mean(tf.square(x - mean), mask, axes)
    return (x - mean) / tf.sqrt(e + var)

  @requires(batch_axis=batch_axis, channel_axis=channel_axis)
  @capabilities(packed=True)
  def rule(k, **kwargs):
    if not k.is_gaussian:
      raise NotImplementedError(
          'LayerNorm is only implemented for Gaussian inputs: put an affine '
          'layer (Dense, Conv, ...) right before it.')
    ndim = len(k.shape1)
    ca, ba = channel_axis % ndim, batch_axis % ndim
    axes = _canonical_axes(axis, ndim)
    if ca not in axes:
      raise ValueError(f'LayerNorm must normalise over the channel axis '
                       f'({ca}) to have an infinite-width limit; got '
                       f'axis={axis!r}.')
    s = k.n_spatial
    spatial_axes = [i for i in range(ndim) if i not in (ca, ba)]
    # Axes of the batch-last variances (X, Y, ..., N).
    var_axes = [spatial_axes.index(a) for a in axes if a in spatial_axes]
    if ba in axes:
      var_axes.append(s)
    e = hparams.cast(eps, k.dtype)
    ds, db = k.diagonal_spatial, k.diagonal_batch

    def batch_last(m):                                   # (*spatial, N)
      if m is None:
        return None
      return tf.transpose(m, list(range(1, s + 1)) + [0]) if s else m

    def inv_std(cov, mask):
      v = diagonal.variances(cov, db, ds, s) + e
      return tf.math.rsqrt(_masked_mean(v, batch_last(mask), var_axes,
                                        skip_masked=False))

    mask1, mask2 = k.position_masks()
    r1 = inv_std(k.cov1, mask1)
    r2 = r1 if k.cov2 is None else inv_std(k.cov2, mask2)
    # A symmetric block-packed kernel (x2 = x1) stays packed where each block
    # pair's factors broadcast in at most 5 dimensions (TensorFlow's kernels)
    # and every input has its own factor (not normalised over the batch).
    if k.packed and (s > (2 if ds else 1) or r1.shape[-1] != k.shape1[ba]):
      k = k.unpack()
    if k.packed:      # then r2 is r1 (no second batch)
      rows, cols = packing.pair_variances(r1, packing.block_count(
          k.shape1[ba]))
      row_factor = diagonal.expand_block_variance(rows, 0, ds, s)
      col_factor = diagonal.expand_block_variance(cols, 1, ds, s)

    def scale(t, a, b, batch_pair):
      if t is None:
        return None
      if batch_pair and k.packed:
        return t * row_factor * col_factor
      return t * diagonal.outer(a, b, tf.multiply, ds, s, batch_pair)

    return k.replace(
        nngp=scale(k.nngp, r1, r2, True),
        ntk=scale(k.ntk, r1, r2, True),
        cov1=scale(k.cov1, r1, r1, not db),
        cov2=scale(k.cov2, r2, r2, not db))

  return make_init_fn(lambda shape: shape), apply_fn, rule
