"""`ImageResize`: resampling of activations as `jax.image.resize` defines it.

Resizing an axis from `m` to `n` entries is linear: `y = R x` along that axis
with an `(n, m)` matrix `R` (scale-and-translate sampling with half-pixel
centres: output `i` samples the input at `(i + 0.5) m / n - 0.5`; with
`antialias` the interpolation kernel is stretched by `m / n` when
downsampling). For nearest-neighbour resizing `R` selects input
`floor((i + 0.5) m / n)` (rounded in float32 exactly as XLA evaluates
JAX's expression, see `nearest_indices`). The matrices are
built in numpy float64 from the (static) sizes and cast to the activations'
dtype.

Since the map is linear and acts on each axis separately, the covariance of
the resized activations is `R K Rᵀ` along each resized axis: for a resized
spatial dimension `R` is applied to both axes of its spatial pair, for a
resized batch axis to `N1` and `N2` (this needs `diagonal_batch=False`).
"""
import functools
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from nt_gp.ops import compile as compile_ops
from nt_gp.stax.layer import layer
from nt_gp.stax.masking import supports_masking
from nt_gp.stax.requirements import Bool, Diagonal, requires
from nt_gp.stax.rule_spec import capabilities
from nt_gp.stax.shapes import make_init_fn

__all__ = ['ImageResize', 'resize_matrix', 'nearest_indices']

_METHODS = {
    'nearest': 'nearest',
    'linear': 'linear', 'bilinear': 'linear', 'trilinear': 'linear',
    'triangle': 'linear',
    'cubic': 'cubic', 'bicubic': 'cubic', 'tricubic': 'cubic',
    'lanczos3': 'lanczos3',
    'lanczos5': 'lanczos5',
}
_KERNEL_METHODS = ('linear', 'nearest')


def _canonical_method(method) -> str:
  name = getattr(method, 'name', method)   # e.g. jax.image.ResizeMethod.LINEAR
  if not isinstance(name, str):
    raise TypeError(f'`method` must be a string (e.g. "linear", "nearest"), '
                    f'got {method!r}.')
  key = name.lower()
  if key not in _METHODS:
    raise ValueError(f'Unknown resize method {method!r}; choose from '
                     f'{sorted(_METHODS)}.')
  return _METHODS[key]


def _triangle(x):
  return np.maximum(0., 1. - np.abs(x))


def _keys_cubic(x):
  out = ((1.5 * x - 2.5) * x) * x + 1.
  out = np.where(x >= 1., ((-0.5 * x + 2.5) * x - 4.) * x + 2., out)
  return np.where(x >= 2., 0., out)


def _lanczos(radius, x):
  y = radius * np.sin(np.pi * x) * np.sin(np.pi * x / radius)
  denom = np.where(x != 0, np.pi**2 * x**2, 1.)
  out = np.where(x > 1e-3, y / denom, 1.)
  return np.where(x > radius, 0., out)


_FILTERS = {
    'linear': _triangle,
    'cubic': _keys_cubic,
    'lanczos3': functools.partial(_lanczos, 3.),
    'lanczos5': functools.partial(_lanczos, 5.),
}


@functools.lru_cache(maxsize=None)
def _resize_matrix(m: int, n: int, method: str, antialias: bool) -> np.ndarray:
  scale = n / m
  inv_scale = 1. / scale
  kernel_scale = max(inv_scale, 1.) if antialias else 1.
  sample = (np.arange(n, dtype=np.float64) + 0.5) * inv_scale - 0.5
  dist = np.abs(sample[None, :] - np.arange(m, dtype=np.float64)[:, None])
  weights = _FILTERS[method](dist / kernel_scale)              # (m, n)
  total = np.sum(weights, axis=0, keepdims=True)
  safe = np.where(total != 0, total, 1.)
  weights = np.where(np.abs(total) > 1000. * float(np.finfo(np.float32).eps),
                     weights / safe, 0.)
  inside = np.logical_and(sample >= -0.5, sample <= m - 0.5)
  weights = np.where(inside[None, :], weights, 0.)
  out = np.ascontiguousarray(weights.T)
  out.setflags(write=False)
  return out


def resize_matrix(m: int, n: int, method: str = 'linear',
                  antialias: bool = True) -> np.ndarray:
  """The `(n, m)` float64 matrix resizing one axis from `m` to `n` entries.

  Row `i` holds the weights of output `i` over the inputs, as
  `jax.image.resize` computes them (half-pixel centres, kernel normalised to
  sum 1, outputs sampling outside the input get weight 0).

  Args:
    m: input size (positive int).
    n: output size (positive int).
    method: `'linear'` (or an alias), `'nearest'`, `'cubic'`, `'lanczos3'`,
      `'lanczos5'`.
    antialias: stretch the kernel by `m / n` when downsampling (not used by
      `'nearest'`).

  Returns:
    A read-only float64 array of shape `(n, m)`.

  Example:
    >>> resize_matrix(2, 4, 'linear')
    array([[1.  , 0.  ],
           [0.75, 0.25],
           [0.25, 0.75],
           [0.  , 1.  ]])
  """
  method = _canonical_method(method)
  m, n = int(m), int(n)
  if m < 1 or n < 1:
    raise ValueError(f'Sizes must be positive, got {m} -> {n}.')
  if method == 'nearest':
    out = np.zeros((n, m))
    out[np.arange(n), nearest_indices(m, n)] = 1.
    return out
  if m == n:
    return np.eye(n)
  return _resize_matrix(m, n, method, bool(antialias))


@functools.lru_cache(maxsize=None)
def _nearest_indices(m: int, n: int) -> np.ndarray:
  f32 = np.float32
  # JAX writes `(i + 0.5) * m / n`; XLA folds the constants to
  # `(i + 0.5) * (m * (1 / n))`, all in float32, which decides ties.
  ratio = f32(m) * (f32(1.) / f32(n))
  offsets = (np.arange(n, dtype=f32) + f32(0.5)) * ratio
  out = np.floor(offsets).astype(np.int32)
  out.setflags(write=False)
  return out


def nearest_indices(m: int, n: int) -> np.ndarray:
  """Input index of each output of a nearest-neighbour resize from `m` to `n`.

  `floor((i + 0.5) * (m * (1 / n)))` evaluated in float32, which is how
  `jax.image.resize` (compiled by XLA) computes `floor((i + 0.5) * m / n)`.

  Args:
    m: input size.
    n: output size.

  Returns:
    A read-only int32 array of shape `(n,)`.

  Example:
    >>> nearest_indices(4, 6).tolist()
    [0, 1, 1, 2, 3, 3]
    >>> nearest_indices(10, 25)[:3].tolist()   # 2.5 * 10 / 25 rounds down
    [0, 0, 0]
  """
  m, n = int(m), int(n)
  if m < 1 or n < 1:
    raise ValueError(f'Sizes must be positive, got {m} -> {n}.')
  return _nearest_indices(m, n)


def _resize_axis(t, axis: int, n: int, method: str, antialias: bool):
  """Resizes axis `axis` of `t` to `n` entries (identity if sizes agree)."""
  m = t.shape[axis]
  if m is None:
    raise ValueError(f'Cannot resize axis {axis} of unknown size (shape '
                     f'{t.shape}).')
  if m == n:
    return t
  if method == 'nearest':
    return tf.gather(t, tf.constant(nearest_indices(m, n)), axis=axis)
  r = tf.constant(_resize_matrix(m, n, method, antialias), dtype=t.dtype)
  rank = t.shape.rank
  letters = 'abcdefghijklmnopqrstuvwxy'
  if rank >= len(letters):
    raise ValueError(f'Tensors of rank {rank} are not supported.')
  src = letters[:rank]
  dst = src[:axis] + 'z' + src[axis + 1:]
  return tf.einsum(f'z{src[axis]},{src}->{dst}', r, t)


@layer
@supports_masking(remask_kernel=True)
def ImageResize(shape: Sequence[int], method, antialias: bool = True,
                precision=None, batch_axis: int = 0, channel_axis: int = -1):
  """Resizes the activations like `jax.image.resize`.

  Args:
    shape: output shape, one entry per axis of the inputs (batch and channel
      included); `-1` keeps an axis unchanged. In `kernel_fn` the channel axis
      must be `-1`; resizing the batch axis needs the full batch covariance
      (the network then computes it with `diagonal_batch=False`).
    method: `'linear'` (also `'bilinear'`, `'trilinear'`, `'triangle'`) or
      `'nearest'`; `apply_fn` (but not `kernel_fn`) also supports `'cubic'`
      (`'bicubic'`, `'tricubic'`), `'lanczos3'` and `'lanczos5'`. Case is
      ignored; enum members (with a `.name`) are accepted too.
    antialias: with a linear/cubic/Lanczos kernel, low-pass filter when
      downsampling (stretch the kernel by the size ratio). Ignored by
      `'nearest'` and when upsampling.
    precision: accepted for neural-tangents compatibility and ignored
      (TensorFlow computes in the full precision of the dtype).
    batch_axis: batch axis of the inputs.
    channel_axis: channel axis of the inputs.

  Returns:
    `(init_fn, apply_fn, kernel_fn)`. `apply_fn` maps an array of the input
    shape to one of `shape` (entries `-1` filled from the input), in the
    input dtype (integers are cast to float32 except with `'nearest'`).
    `kernel_fn` gives covariances with the resized batch/spatial sizes.

  Raises:
    ValueError: bad `shape` or `method`; in `kernel_fn`, a method other than
      linear/nearest or a resized channel axis.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> init_fn, apply_fn, kernel_fn = stax.serial(
    ...     stax.Conv(8, (3, 3), padding='SAME'), stax.Relu(),
    ...     stax.ImageResize((-1, 8, 3, -1), 'linear'),
    ...     stax.Conv(8, (3, 3)), stax.GlobalAvgPool(), stax.Dense(1))
    >>> init_fn(0, (2, 4, 6, 3))[0]
    (2, 1)
    >>> x = np.random.RandomState(0).randn(2, 4, 6, 3)
    >>> tuple(kernel_fn(x, None, 'nngp').shape)
    (2, 2)
  """
  method_name = _canonical_method(method)
  try:
    shape = tuple(int(s) for s in shape)
  except (TypeError, ValueError):
    raise TypeError(f'`shape` must be a sequence of ints, got {shape!r}.'
                    ) from None
  if any(s != -1 and s < 1 for s in shape):
    raise ValueError(f'`shape` entries must be positive or -1 (keep the axis), '
                     f'got {shape}.')
  if not isinstance(antialias, (bool, np.bool_)):
    raise TypeError(f'`antialias` must be a bool, got {antialias!r}.')
  antialias = bool(antialias)
  for name, ax in (('batch_axis', batch_axis), ('channel_axis', channel_axis)):
    if not isinstance(ax, (int, np.integer)) or isinstance(ax, bool):
      raise TypeError(f'`{name}` must be an int, got {ax!r}.')
    if not -len(shape) <= ax < len(shape):
      raise ValueError(f'`{name}={ax}` is out of range for `shape` {shape} of '
                       f'length {len(shape)}.')
  ndim = len(shape)
  ba, ca = int(batch_axis) % ndim, int(channel_axis) % ndim
  if ba == ca:
    raise ValueError('`batch_axis` and `channel_axis` must differ.')
  spatial_axes = [a for a in range(ndim) if a not in (ba, ca)]

  def out_shape(input_shape):
    input_shape = tuple(input_shape)
    if len(input_shape) != ndim:
      raise ValueError(f'ImageResize with `shape` {shape} expects inputs of '
                       f'rank {ndim}, got shape {input_shape}.')
    return tuple(d if s == -1 else s for s, d in zip(shape, input_shape))

  def resize_array(x, m_method):
    target = out_shape(x.shape.as_list())
    for a in range(ndim):
      if shape[a] != -1:
        x = _resize_axis(x, a, target[a], m_method, antialias)
    return x

  def apply_fn(params, inputs, **kwargs):
    x = tf.convert_to_tensor(inputs)
    if not x.dtype.is_floating and method_name != 'nearest':
      x = tf.cast(x, tf.float32)
    return resize_array(x, method_name)

  def mask_fn(mask, input_shape):
    # An output is masked only if every input it draws from is masked:
    # resize the *unmasked* indicator and keep outputs with any weight.
    mask = tf.convert_to_tensor(mask)
    keep = tf.cast(tf.logical_not(mask), tf.float64)
    return tf.equal(resize_array(keep, method_name), 0.)

  diag_spatial = Diagonal(input=Bool.NO if any(
      shape[a] != -1 for a in spatial_axes) else Bool.YES)
  reqs = dict(batch_axis=ba, channel_axis=ca, diagonal_spatial=diag_spatial)
  if shape[ba] != -1:
    reqs['diagonal_batch'] = False

  def covariance_map(nngp, ntk, cov1, cov2, spatial_targets, batch_target):
    # The batch is resized only in unpacked kernels with `diagonal_batch=False`
    # (`rule` ensures it), where every tensor ends with two batch axes.
    def res(t):
      if t is None or t.shape.rank == 0:
        return t
      for i, n in enumerate(spatial_targets):
        if n != -1:
          t = _resize_axis(t, 2 * i, n, method_name, antialias)
          t = _resize_axis(t, 2 * i + 1, n, method_name, antialias)
      if batch_target != -1:
        for a in (t.shape.rank - 2, t.shape.rank - 1):
          t = _resize_axis(t, a, batch_target, method_name, antialias)
      return t
    return res(nngp), res(ntk), res(cov1), res(cov2)
  compiled_map = compile_ops.xla(covariance_map)

  @requires(**reqs)
  @capabilities(packed=True)
  def rule(k, **kwargs):
    if method_name not in _KERNEL_METHODS:
      raise ValueError(
          f'ImageResize: kernel_fn supports only "linear" and "nearest" '
          f'resizing, got {method!r} (`apply_fn` supports it).')
    if shape[ca] != -1:
      raise ValueError(
          f'ImageResize: resizing the channel axis {ca} is not defined in the '
          f'infinite-width limit; set `shape[{ca}] = -1`.')
    out_shape(k.shape1)
    sizes = [k.shape1[a] for a in spatial_axes]
    targets = tuple(-1 if shape[a] in (-1, m) else shape[a]
                    for a, m in zip(spatial_axes, sizes))
    batch_target = shape[ba]
    if batch_target in (k.shape1[ba], -1) and (
        k.shape2 is None or batch_target in (k.shape2[ba], -1)):
      batch_target = -1
    if batch_target != -1:
      k = k.unpack()
    if all(t == -1 for t in targets) and batch_target == -1:
      return k
    nngp, ntk, cov1, cov2 = compiled_map(
        k.nngp, k.ntk, k.cov1, k.cov2, targets, batch_target)
    return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2)

  return make_init_fn(out_shape), apply_fn, rule, mask_fn
