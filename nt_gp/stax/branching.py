"""Branching layers: `FanOut`, `FanInSum`, `FanInProd`, `FanInConcat`.

Fan-in rules assume the branches are independent given their inputs (each
branch has its own affine layer), as in neural-tangents.
"""
import functools

import tensorflow as tf

from nt_gp import validation
from nt_gp.kernel import Kernel
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking
from nt_gp.stax.rule_spec import capabilities
from nt_gp.stax.shapes import make_init_fn

__all__ = ['FanOut', 'FanInSum', 'FanInProd', 'FanInConcat', 'check_fan_in',
           'sum_kernels']


@layer
def FanOut(num: int):
  """Copies the input into `num` branches.

  Example:
    >>> from nt_gp import stax
    >>> init_fn, _, _ = stax.FanOut(2)
    >>> init_fn(0, (3, 4))[0]
    [(3, 4), (3, 4)]
  """
  validation.check_positive_int('num', num)
  init_fn = make_init_fn(lambda shape: [shape] * num)

  def apply_fn(params, inputs, **kwargs):
    return [inputs] * num

  @capabilities(packed=True)
  def rule(k, **kwargs):
    return [k] * num
  return init_fn, apply_fn, rule


def check_fan_in(ks, name: str, same_shapes: bool = False) -> list:
  """Validates the input of a fan-in layer `name`: a list of kernels of one
  layout (and of equal shapes if `same_shapes`); returns it as a list.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> k = stax.Dense(1)[2](np.ones((2, 3)), get=None)
    >>> check_fan_in(k, 'FanInSum')
    Traceback (most recent call last):
    ...
    ValueError: `FanInSum` needs a list of kernels (use FanOut/parallel before it).
  """
  if isinstance(ks, Kernel) or not isinstance(ks, (list, tuple)):
    raise ValueError(f'`{name}` needs a list of kernels (use FanOut/parallel '
                     f'before it).')
  ref = ks[0]
  for k in ks[1:]:
    if (k.diagonal_batch, k.diagonal_spatial, k.batch_axis,
        k.channel_axis) != (ref.diagonal_batch, ref.diagonal_spatial,
                            ref.batch_axis, ref.channel_axis):
      raise ValueError(f'`{name}`: all branches must have the same kernel '
                       f'layout (diagonal_batch, diagonal_spatial, batch and '
                       f'channel axes).')
  if same_shapes and not all(k.shape1 == ref.shape1 and k.shape2 == ref.shape2
                             for k in ks[1:]):
    raise ValueError(f'All branch shapes must be equal in `{name}`, got '
                     f'{[k.shape1 for k in ks]}.')
  return list(ks)


def sum_kernels(ks, is_gaussian: bool):
  """The kernel of the sum of independent branches with kernels `ks`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> k = stax.Dense(1)[2](np.ones((1, 3)), get=None)
    >>> float(sum_kernels([k, k], is_gaussian=True).nngp[0, 0])
    2.0
  """
  def total(attr):
    mats = [getattr(k, attr) for k in ks]
    return None if mats[0] is None else functools.reduce(tf.add, mats)
  return _merged(ks, cov1=total('cov1'), cov2=total('cov2'),
                 nngp=total('nngp'), ntk=total('ntk'), is_gaussian=is_gaussian)


def _merged(ks, **fields):
  ref = ks[0]
  return ref.replace(mask1=None, mask2=None, is_reversed=False, **fields)


def _list_shape_fn(fn):
  def shape_fn(shapes):
    if not isinstance(shapes, (list, tuple)) or not shapes:
      raise ValueError('Fan-in layers need a list of inputs.')
    return fn(shapes)
  return shape_fn


@layer
@supports_masking(remask_kernel=False)
def FanInSum():
  """Sums the branches.

  Example:
    >>> from nt_gp import stax
    >>> init_fn, _, _ = stax.FanInSum()
    >>> init_fn(0, [(3, 4), (3, 4)])[0]
    (3, 4)
  """
  init_fn = make_init_fn(_list_shape_fn(lambda shapes: shapes[0]))

  def apply_fn(params, inputs, **kwargs):
    return functools.reduce(tf.add, inputs)

  @capabilities(packed=True)
  def rule(ks, **kwargs):
    ks = check_fan_in(ks, 'FanInSum', same_shapes=True)
    is_gaussian = all(k.is_gaussian for k in ks)
    if not is_gaussian and len(ks) != 1:
      raise ValueError('`FanInSum` needs Gaussian branches (each ending in an '
                       'affine layer such as Dense or Conv) to give a kernel.')
    return sum_kernels(ks, is_gaussian)

  def mask_fn(masks, shapes):
    return _reduce_masks(masks, tf.logical_and)
  return init_fn, apply_fn, rule, mask_fn


@layer
@supports_masking(remask_kernel=False)
def FanInProd():
  """Multiplies the branches elementwise.

  Example:
    >>> from nt_gp import stax
    >>> init_fn, _, _ = stax.FanInProd()
    >>> init_fn(0, [(3, 4), (3, 4)])[0]
    (3, 4)
  """
  init_fn = make_init_fn(_list_shape_fn(lambda shapes: shapes[0]))

  def apply_fn(params, inputs, **kwargs):
    return functools.reduce(tf.multiply, inputs)

  @capabilities(packed=True)
  def rule(ks, **kwargs):
    ks = check_fan_in(ks, 'FanInProd', same_shapes=True)
    is_gaussian = len(ks) == 1 and ks[0].is_gaussian
    nngps = [k.nngp for k in ks]
    ntks = [k.ntk for k in ks]
    if any(t is None for t in ntks):
      nngp, ntk = functools.reduce(tf.multiply, nngps), None
    else:
      nngp, ntk = None, None
      for n, t in zip(nngps, ntks):
        if nngp is None:
          nngp, ntk = n, t
        else:
          ntk = ntk * n + nngp * t
          nngp = nngp * n
    cov1 = functools.reduce(tf.multiply, [k.cov1 for k in ks])
    cov2s = [k.cov2 for k in ks]
    cov2 = None if None in cov2s else functools.reduce(tf.multiply, cov2s)
    return _merged(ks, cov1=cov1, cov2=cov2, nngp=nngp, ntk=ntk,
                   is_gaussian=is_gaussian)

  def mask_fn(masks, shapes):
    return _reduce_masks(masks, tf.logical_and)
  return init_fn, apply_fn, rule, mask_fn


def _reduce_masks(masks, op):
  masks = [m for m in masks if m is not None]
  if not masks:
    return None
  return functools.reduce(op, masks)


@layer
@supports_masking(remask_kernel=False)
def FanInConcat(axis: int = -1):
  """Concatenates the branches along `axis`.

  Along the channel axis the kernel is the width-weighted average of the
  branch kernels; along a spatial or batch axis the covariances are assembled
  block by block (different branches are independent).

  Example:
    >>> from nt_gp import stax
    >>> init_fn, _, _ = stax.FanInConcat()
    >>> init_fn(0, [(3, 4), (3, 2)])[0]
    (3, 6)
  """
  def concat_shape(shapes):
    ndim = len(shapes[0])
    ax = axis % ndim
    for s in shapes[1:]:
      if len(s) != ndim or any(a != b for i, (a, b) in enumerate(
          zip(s, shapes[0])) if i != ax):
        raise ValueError(f'`FanInConcat({axis})`: shapes must match except '
                         f'along the axis, got {shapes}.')
    total = sum(s[ax] for s in shapes)
    return shapes[0][:ax] + (total,) + shapes[0][ax + 1:]
  init_fn = make_init_fn(_list_shape_fn(concat_shape))

  def apply_fn(params, inputs, **kwargs):
    return tf.concat(list(inputs), axis)

  def rule(ks, **kwargs):
    ks = check_fan_in(ks, 'FanInConcat')
    ref = ks[0]
    ndim = len(ref.shape1)
    ax = axis % ndim
    for k in ks[1:]:
      drop = lambda s: s[:ax] + s[ax + 1:]
      if drop(k.shape1) != drop(ref.shape1) or drop(k.shape2) != drop(
          ref.shape2):
        raise ValueError('`FanInConcat`: shapes must match except along the '
                         'concatenation axis.')
    ba, ca = ref.batch_axis % ndim, ref.channel_axis % ndim
    spatial = [i for i in range(ndim) if i not in (ba, ca)]
    if ax == ca:
      widths = [k.shape1[ca] for k in ks]
      if all(w == widths[0] for w in widths):
        widths = [1] * len(widths)
      def avg(attr):
        mats = [getattr(k, attr) for k in ks]
        if mats[0] is None:
          return None
        return functools.reduce(tf.add, [m * w for m, w in zip(mats, widths)]
                                ) / sum(widths)
      return _merged(ks, cov1=avg('cov1'), cov2=avg('cov2'), nngp=avg('nngp'),
                     ntk=avg('ntk'), is_gaussian=False)
    if not all(k.is_gaussian for k in ks):
      raise ValueError('`FanInConcat` along a non-channel axis needs Gaussian '
                       'branches (each ending in an affine layer).')
    n_sp = len(spatial)
    def cat(attr, batch_pair):
      mats = [getattr(k, attr) for k in ks]
      if mats[0] is None:
        return None
      if mats[0].shape.rank == 0:
        return mats[0]
      if ax == ba:
        axes = (-2, -1) if batch_pair else (-1,)
      else:
        i = spatial.index(ax)
        axes = (i,) if ref.diagonal_spatial else (2 * i, 2 * i + 1)
      return _concat_axes(mats, axes)
    return _merged(ks, cov1=cat('cov1', not ref.diagonal_batch),
                   cov2=cat('cov2', not ref.diagonal_batch),
                   nngp=cat('nngp', True), ntk=cat('ntk', True),
                   is_gaussian=True)
    del n_sp

  def mask_fn(masks, shapes):
    if all(m is None for m in masks):
      return None
    full = []
    for m, s in zip(masks, shapes):
      if m is None:
        m = tf.zeros([1] * len(s), tf.bool)
      target = list(s)
      ax = axis % len(s)
      shape = [d if i == ax else 1 for i, d in enumerate(target)]
      full.append(tf.broadcast_to(m, [max(a, b) for a, b in zip(
          tf.broadcast_static_shape(tf.TensorShape(shape), m.shape).as_list(),
          shape)]))
    return tf.concat(full, axis)
  return init_fn, apply_fn, rule, mask_fn


def _concat_axes(mats, axes):
  """Concatenates covariances along one axis, or block-diagonally on a pair."""
  if len(axes) == 1:
    return tf.concat(mats, axes[0])
  a, b = axes
  rank = mats[0].shape.rank
  a, b = a % rank, b % rank
  sizes = [m.shape[a] for m in mats]
  rows = []
  for i, m in enumerate(mats):
    pads = [[0, 0]] * rank
    pads[a] = [sum(sizes[:i]), sum(sizes[i + 1:])]
    rows.append(tf.pad(m, pads))
  return tf.concat(rows, b)
