"""Monte Carlo estimates of the NNGP and NTK: empirical kernels averaged over
random initialisations of a finite network."""
import numbers
from typing import Callable

import numpy as np
import tensorflow as tf

from nt_gp import validation
from nt_gp.empirical import _axes
from nt_gp.empirical import _fn
from nt_gp.empirical import kernel as _kernel
from nt_gp.empirical import ntk as _ntk
from nt_gp.stax import _random

__all__ = ['monte_carlo_kernel_fn']


def _canonicalize_n_samples(n_samples):
  """`(sorted counts, is_generator)`."""
  if isinstance(n_samples, bool):
    raise TypeError('`n_samples` must be an int or a sequence of ints, got a '
                    'bool.')
  if isinstance(n_samples, numbers.Integral):
    counts, generator = [int(n_samples)], False
  elif hasattr(n_samples, '__iter__') and not isinstance(n_samples, str):
    counts = list(n_samples)
    generator = True
    for n in counts:
      if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise ValueError(f'`n_samples` must contain only integers, got '
                         f'{n_samples!r}.')
    counts = [int(n) for n in counts]
    if not counts:
      raise ValueError('`n_samples` must not be empty.')
  else:
    raise TypeError(f'`n_samples` must be an int or a sequence of ints, got '
                    f'{type(n_samples).__name__}.')
  if any(n <= 0 for n in counts):
    raise ValueError(f'`n_samples` must be positive, got {n_samples!r}.')
  return sorted(set(counts)), generator


def _batch_axis_role(ndim, trace_axes, diagonal_axes):
  trace, diag = _axes.canonicalize(trace_axes, diagonal_axes, ndim)
  if 0 in trace:
    return 'trace'
  return 'diagonal' if 0 in diag else 'pair'


def _blocks(x, batch_size, name):
  leaves = tf.nest.flatten(x)
  n = int(leaves[0].shape[0])
  if n % batch_size:
    raise ValueError(f'`batch_size={batch_size}` must divide the batch size '
                     f'of `{name}` ({n}).')
  return [tf.nest.map_structure(lambda l, i=i: l[i:i + batch_size], x)
          for i in range(0, n, batch_size)]


def monte_carlo_kernel_fn(init_fn: Callable,
                          apply_fn: Callable,
                          key,
                          n_samples,
                          batch_size: int = 0,
                          device_count: int = -1,
                          store_on_device: bool = True,
                          trace_axes=(-1,),
                          diagonal_axes=(),
                          vmap_axes=None,
                          implementation=_ntk.DEFAULT_NTK_IMPLEMENTATION
                          ) -> Callable:
  """Returns a Monte Carlo estimator of the NNGP/NTK of a finite network.

  Each sample draws parameters with `init_fn` and computes the empirical
  kernels (`empirical_kernel_fn`); the estimate is their average. Sample `i`
  uses the `i`-th key of the chain `key -> split -> ...`, split again into an
  init key and an `rng` key passed to `apply_fn` (if it accepts `rng`, e.g. for
  `stax.Dropout`).

  Args:
    init_fn: `init_fn(key, input_shape) -> (output_shape, params)`.
    apply_fn: `apply_fn(params, x, **kwargs)`.
    key: int seed or shape-`[2]` integer key (see `nt_gp.stax`).
    n_samples: an int, or a sequence of ints: then the returned function
      gives a generator of the running estimates after each of those sample
      counts (in increasing order).
    batch_size: compute the kernel in blocks of `x1`/`x2` of this many rows
      (must divide both batch sizes); 0 computes it whole. The batch axis is
      axis 0 of inputs and outputs.
    device_count: accepted for neural-tangents compatibility (an int >= -1);
      TensorFlow places the computation itself.
    store_on_device: if False, results are copied to host memory.
    trace_axes, diagonal_axes, vmap_axes, implementation: as in
      `empirical_kernel_fn`.

  Returns:
    `kernel_fn(x1, x2=None, get=None, **apply_fn_kwargs)` returning the
    estimate (a tensor for a string `get`, else a `MonteCarloKernel`
    namedtuple; `get=None` means `("nngp", "ntk")`), or a generator of them
    if `n_samples` is a sequence. Shapes as in `empirical_kernel_fn`, dtype of
    the inputs.

  Example:
    >>> import numpy as np
    >>> import nt_gp
    >>> from nt_gp import stax
    >>> init_fn, apply_fn, _ = stax.serial(stax.Dense(32), stax.Relu(),
    ...                                    stax.Dense(1))
    >>> x = np.random.RandomState(0).randn(3, 4).astype(np.float32)
    >>> mc = nt_gp.monte_carlo_kernel_fn(init_fn, apply_fn, 0, [1, 4])
    >>> [tuple(k.shape) for k in mc(x, None, 'ntk')]
    [(3, 3), (3, 3)]
  """
  if not callable(init_fn) or not callable(apply_fn):
    raise TypeError('`init_fn` and `apply_fn` must be callables.')
  counts, generator = _canonicalize_n_samples(n_samples)
  validation.check_int('batch_size', batch_size, lower=0)
  if isinstance(device_count, bool) or not isinstance(
      device_count, numbers.Integral) or device_count < -1:
    raise ValueError(f'`device_count` must be an int >= -1, got '
                     f'{device_count!r}.')
  if not isinstance(store_on_device, (bool, np.bool_)):
    raise TypeError(f'`store_on_device` must be a bool, got '
                    f'{store_on_device!r}.')
  key = _random.as_key(key, 'key')
  emp = _kernel.empirical_kernel_fn(apply_fn, trace_axes, diagonal_axes,
                                    vmap_axes, implementation)
  pass_rng = _fn.accepts_kwarg(apply_fn, 'rng')
  trace_axes = _axes.check_axes_arg('trace_axes', trace_axes)
  diagonal_axes = _axes.check_axes_arg('diagonal_axes', diagonal_axes)

  def one_block(x1, x2, names, params, kwargs):
    out = emp(x1, x2, names, params, **kwargs)
    return dict(zip(names, out))

  def batched(x1, x2, names, params, kwargs):
    if not batch_size:
      return one_block(x1, x2, names, params, kwargs)
    roles = [_batch_axis_role(l.shape.rank, trace_axes, diagonal_axes)
             for l in tf.nest.flatten(apply_fn(
                 params, tf.nest.map_structure(lambda l: l[:1], x1),
                 **kwargs))]
    if 'trace' in roles:
      raise ValueError('`batch_size` needs the batch axis 0 outside '
                       '`trace_axes`.')
    b1 = _blocks(x1, batch_size, 'x1')
    b2 = b1 if x2 is None else _blocks(x2, batch_size, 'x2')
    rows = []
    for i, xa in enumerate(b1):
      row = []
      for j, xb in enumerate(b2):
        if roles[0] == 'diagonal' and i != j:
          continue
        same = x2 is None and i == j
        row.append(one_block(xa, None if same else xb, names, params, kwargs))
      rows.append(row)

    def merge(*leaf_blocks_and_role):
      *blocks, role = leaf_blocks_and_role
      grid = [blocks[k * len(rows[0]):(k + 1) * len(rows[0])]
              for k in range(len(rows))]
      if role == 'diagonal':
        return tf.concat([g[0] for g in grid], axis=0)
      return tf.concat([tf.concat(g, axis=1) for g in grid], axis=0)
    out = {}
    for g in names:
      flat_blocks = [tf.nest.flatten(blk[g]) for row in rows for blk in row]
      merged = [merge(*[fb[leaf] for fb in flat_blocks], roles[leaf])
                for leaf in range(len(flat_blocks[0]))]
      out[g] = tf.nest.pack_sequence_as(rows[0][0][g], merged)
    return out

  def sample_once(x1, x2, k, names, kwargs):
    init_key, rng_key = _random.split(k)
    shapes = tf.nest.map_structure(lambda l: tuple(l.shape.as_list()), x1)
    _, params = init_fn(init_key, shapes)
    kw = dict(kwargs)
    if pass_rng and 'rng' not in kw:
      kw['rng'] = rng_key
    return batched(x1, x2, names, params, kw)

  def estimates(x1, x2, names, kwargs):
    total, k = None, key
    for n in range(1, counts[-1] + 1):
      k, sub = _random.split(k)
      sample = sample_once(x1, x2, sub, names, kwargs)
      total = sample if total is None else {
          g: tf.nest.map_structure(tf.add, total[g], sample[g]) for g in names}
      if n in counts:
        est = {g: tf.nest.map_structure(lambda t, n=n: t / n, total[g])
               for g in names}
        if not store_on_device:
          with tf.device('CPU:0'):
            est = tf.nest.map_structure(tf.identity, est)
        yield est

  if generator:
    def kernel_fn(x1, x2=None, get=None, **apply_fn_kwargs):
      single, names = _kernel.canonicalize_get(get)
      x1, x2 = _fn.check_inputs(x1, x2)
      gen = estimates(x1, x2, names, apply_fn_kwargs)
      return (_kernel.select(e, single, names, 'MonteCarloKernel')
              for e in gen)
  else:
    def kernel_fn(x1, x2=None, get=None, **apply_fn_kwargs):
      single, names = _kernel.canonicalize_get(get)
      x1, x2 = _fn.check_inputs(x1, x2)
      for est in estimates(x1, x2, names, apply_fn_kwargs):
        pass
      return _kernel.select(est, single, names, 'MonteCarloKernel')
  return kernel_fn
