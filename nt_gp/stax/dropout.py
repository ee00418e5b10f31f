"""`Dropout`, with neural-tangents' convention that `rate` is the *keep*
probability.

In 'train' mode the finite-width layer keeps each entry with probability
`rate` and rescales it by ``1 / rate``. At infinite width the masks of
different inputs (or positions) are independent, so only covariances of an
activation with itself grow, by ``1 / rate``: the entries of `cov1`/`cov2`
where batch and spatial indices coincide, and the same entries of `nngp`/`ntk`
when the two batches are the same inputs (`x1_is_x2`). 'test' mode is the
identity.
"""
import tensorflow as tf

from nt_gp.stax import _random
from nt_gp.stax import hparams
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking
from nt_gp.stax.requirements import requires
from nt_gp.stax.shapes import make_init_fn

__all__ = ['Dropout']


def _self_entries(t, n_spatial: int, diagonal_spatial: bool, batch_ndim: int):
  """0/1 tensor (broadcastable to batch-last `t`) marking entries where every
  spatial pair and the batch pair coincide; None if all entries qualify."""
  ind = None
  rank = t.shape.rank
  pairs = [] if diagonal_spatial else [(2 * i, 2 * i + 1)
                                       for i in range(n_spatial)]
  if batch_ndim == 2:
    pairs.append((rank - 2, rank - 1))
  for a, b in pairs:
    n = t.shape[a]
    shape = [1] * rank
    shape[a], shape[b] = n, n
    eye = tf.reshape(tf.eye(n, dtype=t.dtype), shape)
    ind = eye if ind is None else ind * eye
  return ind


def _scale_self_entries(t, factor, n_spatial, diagonal_spatial, batch_ndim):
  if t is None:
    return None
  if batch_ndim == 2 and t.shape[-1] != t.shape[-2]:
    return t
  ind = _self_entries(t, n_spatial, diagonal_spatial, batch_ndim)
  if ind is None:
    return t * factor
  return t * (1 + (factor - 1) * ind)


@layer
@supports_masking(remask_kernel=False)
def Dropout(rate, mode: str = 'train'):
  """Dropout keeping each entry with probability `rate`.

  Args:
    rate: keep probability in (0, 1] (``rate=1`` keeps everything), a number
      or a scalar tensor/variable.
    mode: 'train' (random masks; changes the kernel) or 'test' (identity).

  Returns:
    `(init_fn, apply_fn, kernel_fn)`. In 'train' mode `apply_fn(params, x,
    rng=key)` needs a key (int or shape-[2] int tensor); the output has the
    shape and dtype of `x`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Dropout(0.5))
    >>> x = np.array([[1., 1.], [1., -1.]])
    >>> kernel_fn(x, get='nngp').numpy().tolist()  # diagonal doubled
    [[2.0, 0.0], [0.0, 2.0]]
  """
  if mode not in ('train', 'test'):
    raise ValueError(f'`mode` must be "train" or "test", got {mode!r}.')
  hparams.check_hparam('rate', rate, lower=0., lower_inclusive=False, upper=1.)
  init_fn = make_init_fn(lambda shape: shape)

  def apply_fn(params, inputs, rng=None, **kwargs):
    x = tf.convert_to_tensor(inputs)
    if mode == 'test':
      return x
    if rng is None:
      raise ValueError('Dropout in "train" mode needs a random key: call '
                       '`apply_fn(params, x, rng=key)`.')
    keep_rate = hparams.cast(rate, x.dtype)
    u = tf.random.stateless_uniform(
        tf.shape(x), seed=_random.as_key(rng, 'rng'), dtype=x.dtype)
    return tf.where(u < keep_rate, x / keep_rate, tf.zeros_like(x))

  if mode == 'test':
    def rule_test(k, **kwargs):
      return k
    return init_fn, apply_fn, rule_test

  @requires(use_dropout=True)
  def rule(k, **kwargs):
    if k.is_input:
      raise ValueError('Dropout cannot be applied to the input layer: put an '
                       'affine layer (Dense, Conv, ...) before it.')
    factor = 1 / hparams.cast(rate, k.dtype)
    s, ds = k.n_spatial, k.diagonal_spatial
    cov_batch = 1 if k.diagonal_batch else 2
    cross = tf.where(tf.cast(k.x1_is_x2, tf.bool), factor,
                     tf.ones_like(factor))
    return k.replace(
        cov1=_scale_self_entries(k.cov1, factor, s, ds, cov_batch),
        cov2=_scale_self_entries(k.cov2, factor, s, ds, cov_batch),
        nngp=_scale_self_entries(k.nngp, cross, s, ds, 2),
        ntk=_scale_self_entries(k.ntk, cross, s, ds, 2),
        is_gaussian=False)

  return init_fn, apply_fn, rule
