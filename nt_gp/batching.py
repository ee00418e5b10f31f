"""`batch`: compute a kernel block by block, over one or several devices.

`batch(kernel_fn, batch_size, device_count, store_on_device)` returns a function
with `kernel_fn`'s signature that cuts `x1` and `x2` into blocks of
`batch_size` inputs, computes the kernel of each pair of blocks, and assembles
the blocks into the result of the unbatched call (every `get`, including a
whole `Kernel`). Memory used by the computation itself is that of one block
per device; the assembled output is of course the full kernel (use
`nt_gp.store` to keep it on disk instead).

Semantics follow neural-tangents' `nt.batch`, except that any block size
works for any number of inputs:

* `batch_size=0` means no serial batching; with several devices, the rows of
  `x1` are split over them (``ceil(N1 / device_count)`` rows each, fewer for
  the last).
* `batch_size` need not divide ``N1`` or ``N2`` (neural-tangents requires
  it): the last row and column of blocks are smaller. A `batch_size` larger
  than ``N1`` (``N2``) means one block along that side. Blocks are spread
  over the devices as they become free, so `device_count` places no
  condition on ``N1`` either.
* `device_count=-1` uses all local devices (accelerators, else CPU devices),
  `0` only the default device.
* `store_on_device=False` moves each finished block to host memory.
* Calls with 64 block tasks or more show a tqdm bar when stderr is a terminal.
* Kernels with `diagonal_batch=False` (full `cov1`/`cov2`) cannot be
  assembled from blocks; asking for them raises `NotImplementedError`.

For a symmetric kernel (`x2=None`) only the blocks on and above the diagonal
are computed: diagonal blocks are `kernel_fn(x1_i, None)` as in the unbatched
call, and each off-diagonal block is mirrored into its transposed position.
"""
import functools
from typing import Callable

import numpy as np
import tensorflow as tf
import tqdm

from nt_gp import validation
from nt_gp.blocks import BlockGrid, mirror_perm
from nt_gp.devices import DeviceRunner, local_devices
from nt_gp.kernel import Kernel, is_kernel_tree
from nt_gp.stax import requirements
from nt_gp.stax.layer import canonicalize_get
from nt_gp.validation import namedtuple_of

__all__ = ['batch']

_LAYOUT_FIELDS = ('diagonal_batch', 'diagonal_spatial')
_EPS = 1e-12  # same tolerance as the input layer's `x1_is_x2`
_BAR_MIN_TASKS = 64


def batch(kernel_fn: Callable, batch_size: int = 0, device_count: int = -1,
          store_on_device: bool = True) -> Callable:
  """Returns `kernel_fn` computed in blocks of `batch_size` over local devices.

  Args:
    kernel_fn: a kernel function ``kernel_fn(x1_or_kernel, x2=None, *args,
      **kwargs)`` returning ``(N1, N2, ...)`` kernels, e.g. from `nt_gp.stax`.
    batch_size: block size (``0``: no serial batching); any positive size
      works, the last blocks along each side being smaller.
    device_count: ``-1`` all local devices, ``0`` the default device, or a
      number of devices.
    store_on_device: keep finished blocks on their device (True) or move them
      to host memory (False).

  Returns:
    A function with `kernel_fn`'s signature and results (same shapes, dtype
    float32/float64 as the inputs, same `get` forms).

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> from nt_gp.batching import batch
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu(), stax.Dense(1))
    >>> x1, x2 = np.random.randn(8, 3), np.random.randn(11, 3)
    >>> batched = batch(kernel_fn, batch_size=4)      # blocks of 4, 4, 3
    >>> k = batched(x1, x2, 'ntk')
    >>> k.shape, k.dtype.name
    (TensorShape([8, 11]), 'float64')
    >>> bool(np.allclose(k, kernel_fn(x1, x2, 'ntk')))
    True
  """
  if not callable(kernel_fn):
    raise TypeError(f'`kernel_fn` must be callable, got {kernel_fn!r}.')
  batch_size = validation.check_int('batch_size', batch_size, lower=0)
  if (isinstance(device_count, bool) or
      not isinstance(device_count, (int, np.integer)) or device_count < -1):
    raise ValueError(f'`device_count` must be -1 (all devices), 0 (default '
                     f'device) or a positive int, got {device_count!r}.')
  device_count = int(device_count)
  analytic = requirements.get_req(kernel_fn) is not None

  @functools.wraps(kernel_fn)
  def batched_kernel_fn(x1_or_kernel, x2=None, *args, **kwargs):
    devices = local_devices(device_count)
    if batch_size == 0 and len(devices) == 1:
      return kernel_fn(x1_or_kernel, x2, *args, **kwargs)
    job = _Job(kernel_fn, x1_or_kernel, x2, args, kwargs, analytic,
               batch_size, devices, store_on_device)
    return job.run()

  batched_kernel_fn.batch_size = batch_size
  batched_kernel_fn.device_count = device_count
  return batched_kernel_fn


# ----------------------------------------------------------------------------
# Inputs: arrays (or lists of arrays) and Kernels.
# ----------------------------------------------------------------------------
def _leading_dim(x):
  if isinstance(x, (list, tuple)):
    return _leading_dim(x[0])
  shape = getattr(x, 'shape', None)
  if shape is None or len(shape) < 1:
    raise ValueError(f'Inputs must be arrays with a batch axis, got {x!r}.')
  return int(shape[0])


def _take(x, s: slice):
  if isinstance(x, (list, tuple)):
    return type(x)(_take(y, s) for y in x)
  return x[s]


def _slice_kernel(k, rows: slice, cols: slice):
  """`Kernel.slice` of a kernel or of each kernel in a list/tuple of them."""
  if isinstance(k, (list, tuple)):
    return type(k)(_slice_kernel(kk, rows, cols) for kk in k)
  return k.slice(rows, cols)


def _inputs_equal(x1, x2) -> bool:
  """`x1_is_x2` of the unbatched call, computed from the inputs."""
  if x2 is None:
    return True
  if isinstance(x1, (list, tuple)):
    return all(_inputs_equal(a, b) for a, b in zip(x1, x2))
  if tuple(x1.shape) != tuple(x2.shape):
    return False
  return bool(tf.reduce_all(tf.abs(tf.convert_to_tensor(x1) -
                                   tf.convert_to_tensor(x2)) < _EPS))


# ----------------------------------------------------------------------------
# Outputs: walking trees of Kernels / namedtuples / tensors.
# ----------------------------------------------------------------------------
def _is_namedtuple(x) -> bool:
  return isinstance(x, tuple) and hasattr(x, '_fields')


def _map_leaves(fn, out, path=(), field=None, layout=None):
  """Rebuilds `out`, replacing each kernel quantity by `fn(path, field, layout)`.

  `layout` is ``(diagonal_batch, diagonal_spatial)`` where known, else None.
  """
  if isinstance(out, Kernel):
    lay = (out.diagonal_batch, out.diagonal_spatial)
    return out.replace(**{
        f: fn(path + (f,), f, lay) for f in
        ('nngp', 'ntk', 'cov1', 'cov2', 'x1_is_x2', 'mask1', 'mask2',
         'shape1', 'shape2')})
  if _is_namedtuple(out):
    d = out._asdict()
    lay = ((d['diagonal_batch'], d['diagonal_spatial'])
           if all(f in d for f in _LAYOUT_FIELDS) else None)
    return type(out)(**{f: fn(path + (f,), f, lay) for f in d})
  if isinstance(out, (list, tuple)):
    return type(out)(_map_leaves(fn, o, path + (i,), field, layout)
                     for i, o in enumerate(out))
  return fn(path, field or 'nngp', layout)


def _at(out, path):
  for p in path:
    out = getattr(out, p) if isinstance(p, str) else out[p]
  return out


def _to_host(out):
  """Copies every tensor of an output tree to host (numpy) memory."""
  if isinstance(out, Kernel):
    return out.replace(**{f: _to_host(getattr(out, f)) for f in
                          ('nngp', 'ntk', 'cov1', 'cov2', 'x1_is_x2', 'mask1',
                           'mask2')})
  if _is_namedtuple(out):
    return type(out)(*(_to_host(v) for v in out))
  if isinstance(out, (list, tuple)):
    return type(out)(_to_host(v) for v in out)
  if isinstance(out, (tf.Tensor, tf.Variable)):
    return out.numpy()
  return out


def _strip_layout(out, single, names):
  """Turns the augmented `get` result back into what `get` asked for."""
  if isinstance(out, (list, tuple)) and not _is_namedtuple(out):
    return type(out)(_strip_layout(o, single, names) for o in out)
  values = tuple(getattr(out, n) for n in names)
  cls = namedtuple_of('AnalyticKernel', names)
  return values[0] if single else cls(*values)


# ----------------------------------------------------------------------------
# One batched call.
# ----------------------------------------------------------------------------
class _Job:
  """Plans, computes and assembles one batched call."""

  def __init__(self, kernel_fn, x1_or_kernel, x2, args, kwargs, analytic,
               batch_size, devices, store_on_device):
    self.kernel_fn = kernel_fn
    self.devices = devices
    self.store_on_device = store_on_device
    self.is_kernel = is_kernel_tree(x1_or_kernel)
    self.x = x1_or_kernel
    if self.is_kernel:
      if x2 is not None:
        raise ValueError(f'`x2` must be None when a Kernel is given, got {x2}.')
      k0 = x1_or_kernel
      while isinstance(k0, (list, tuple)):
        k0 = k0[0]
      self.symmetric = k0.cov2 is None
      n1, n2 = int(k0.nngp.shape[0]), int(k0.nngp.shape[1])
      self.x1_is_x2 = k0.x1_is_x2
    else:
      self.symmetric = x2 is None
      n1 = _leading_dim(x1_or_kernel)
      n2 = n1 if x2 is None else _leading_dim(x2)
      self.x1_is_x2 = None
      self._x2_for_eq = x2
    self.x2 = x2
    self.n1, self.n2 = n1, n2
    if 'rng' in kwargs and kwargs['rng'] is not None:
      raise NotImplementedError('`batch` does not split `rng` keys; call the '
                                'kernel function without batching.')

    # `get`: analytic kernel functions also return the output layout, which
    # tells how to mirror blocks and whether `cov1`/`cov2` can be assembled.
    self.args, self.kwargs = list(args), dict(kwargs)
    get_in_args = bool(self.args)
    get = self.args[0] if get_in_args else self.kwargs.get('get')
    self.single, self.names = (canonicalize_get(get) if analytic
                               else (isinstance(get, str), None))
    self.get_name = get if isinstance(get, str) else None
    if analytic and self.names is not None:
      extra = [f for f in _LAYOUT_FIELDS if f not in self.names]
      if {'shape1', 'shape2'} & set(self.names) and 'batch_axis' not in self.names:
        extra.append('batch_axis')
      inner_get = self.names + tuple(extra)
      if get_in_args:
        self.args[0] = inner_get
      else:
        self.kwargs['get'] = inner_get
      self.augmented = True
    else:
      self.augmented = False

    if batch_size == 0:
      rows = -(-n1 // len(devices))     # one block of rows per device
      self.grid = BlockGrid(n1, n2, rows, n2, symmetric=False)
    else:
      self.grid = BlockGrid.of(n1, n2, batch_size, symmetric=self.symmetric)

  # -- computing blocks -------------------------------------------------------
  def _sliced_kwargs(self, rows, cols, diagonal):
    out = {}
    for key, v in self.kwargs.items():
      if (isinstance(v, tuple) and len(v) == 2 and v[0] is not None and
          hasattr(v[0], 'shape') and key != 'get'):
        v1, v2 = v
        if diagonal:
          out[key] = (v1[rows], None if v2 is None else v2[rows])
        else:
          src2 = v1 if (self.symmetric and v2 is None) else v2
          out[key] = (v1[rows], None if src2 is None else src2[cols])
      else:
        out[key] = v
    return out

  def compute(self, task, unused_device=None):
    grid = self.grid
    rows, cols = grid.rows_of(task.i), grid.cols_of(task.j)
    kwargs = self._sliced_kwargs(rows, cols, task.diagonal)
    if self.is_kernel:
      k = _slice_kernel(self.x, rows, cols)
      out = self.kernel_fn(k, None, *self.args, **kwargs)
    else:
      a = _take(self.x, rows)
      if task.diagonal:
        b = None
      else:
        b = _take(self.x if self.symmetric else self.x2, cols)
      out = self.kernel_fn(a, b, *self.args, **kwargs)
    if not self.store_on_device:
      out = _to_host(out)
    return out

  # -- assembling --------------------------------------------------------------
  def _mirrorable(self, out) -> bool:
    ok = [True]

    def check(path, field, layout):
      v = _at(out, path)
      if field in ('nngp', 'ntk') and v is not None and len(v.shape) >= 2:
        if mirror_perm(len(v.shape), None if layout is None else layout[1]) is None:
          ok[0] = False
      return v
    _map_leaves(check, out, field=self.get_name)
    return ok[0]

  def run(self):
    grid = self.grid
    tasks = grid.tasks()
    results = {}
    runner = DeviceRunner(self.devices)
    # A bar for long jobs in interactive sessions only (tqdm disables itself
    # when stderr is not a terminal).
    bar = tqdm.tqdm(total=len(tasks), unit='block', desc='batch', leave=False,
                    disable=None if len(tasks) >= _BAR_MIN_TASKS else True)
    it = runner.imap(self.compute, tasks)
    first_task, first = next(it)
    results[(first_task.i, first_task.j)] = first
    bar.update()
    if grid.symmetric and not self._mirrorable(first):
      # Unknown output layout: compute every block instead of mirroring.
      it.close()
      self.grid = grid = BlockGrid(grid.n1, grid.n2, grid.rows, grid.cols,
                                   symmetric=False)
      results = {}
      bar.reset(total=len(grid.tasks()))
      it = runner.imap(self.compute, grid.tasks())
    for task, out in it:
      results[(task.i, task.j)] = out
      bar.update()
    bar.close()
    out = self._assemble(results)
    if self.augmented:
      out = _strip_layout(out, self.single, self.names)
    return out

  def _block(self, results, i, j, path, layout):
    """Output `path` of block (i, j), mirrored from (j, i) where needed."""
    if (i, j) in results:
      return _at(results[(i, j)], path)
    v = _at(results[(j, i)], path)
    perm = mirror_perm(len(v.shape), None if layout is None else layout[1])
    if isinstance(v, np.ndarray):
      return np.transpose(v, perm)
    return tf.transpose(v, perm)

  def _concat(self, parts, axis):
    if len(parts) == 1:
      return parts[0]
    if isinstance(parts[0], np.ndarray):
      return np.concatenate(parts, axis)
    return tf.concat(parts, axis)

  def _finish(self, v):
    if isinstance(v, np.ndarray):
      with tf.device('/CPU:0'):
        return tf.convert_to_tensor(v)
    return v

  def _assemble(self, results):
    grid = self.grid
    b1, b2 = grid.shape
    template = results[(0, 0)]

    def leaf(path, field, layout):
      v0 = _at(template, path)
      if field in ('nngp', 'ntk'):
        if v0 is None or not hasattr(v0, 'shape') or len(v0.shape) < 2:
          return self._finish(v0) if isinstance(v0, np.ndarray) else v0
        if tuple(v0.shape[:2]) != (grid.rows, grid.cols):
          raise ValueError(
              f'`kernel_fn` returned `{field}` of shape {tuple(v0.shape)} for '
              f'a block of {grid.rows} x {grid.cols} inputs; `batch` needs '
              f'outputs of shape (N1, N2, ...).')
        return self._grid_concat(results, path, layout)
      if field in ('cov1', 'cov2', 'mask1', 'mask2'):
        if v0 is None:
          return None
        if field in ('cov2', 'mask2') and self.symmetric:
          return None
        if field in ('cov1', 'cov2') and (layout is None or not layout[0]):
          if layout is None:
            raise NotImplementedError(
                f'Cannot tell how to assemble `{field}` from blocks.')
          raise NotImplementedError(
              'Batching is not implemented for kernels with '
              '`diagonal_batch=False` (full `cov1`/`cov2` across the batch): '
              'ask for `get="nngp"`/`"ntk"` only, or call the kernel function '
              'without batching.')
        if field in ('mask1', 'mask2') and (
            not hasattr(v0, 'shape') or len(v0.shape) == 0 or
            v0.shape[0] != (grid.rows if field == 'mask1' else grid.cols)):
          return v0
        if field in ('cov1', 'mask1'):
          parts = [_at(results[(i, i if grid.symmetric else 0)], path)
                   for i in range(b1)]
        else:
          parts = [_at(results[(0, j)], path) for j in range(b2)]
        return self._finish(self._concat(parts, 0))
      if field == 'x1_is_x2':
        return tf.constant(self._x1_is_x2())
      if field in ('shape1', 'shape2'):
        if v0 is None:
          return v0
        axis = self._batch_axis(template, path)
        shape = list(v0)
        shape[axis] = self.n1 if field == 'shape1' else self.n2
        return tuple(shape)
      return v0

    return _map_leaves(leaf, template, field=self.get_name)

  def _batch_axis(self, template, path):
    parent = _at(template, path[:-1])
    return getattr(parent, 'batch_axis', 0)

  def _x1_is_x2(self) -> bool:
    if self.symmetric:
      return True
    if self.is_kernel:
      return bool(self.x1_is_x2)
    return _inputs_equal(self.x, self._x2_for_eq)

  def _grid_concat(self, results, path, layout):
    grid = self.grid
    b1, b2 = grid.shape
    if not self.store_on_device:
      v0 = _at(results[(0, 0)], path)
      out = np.empty((grid.n1, grid.n2) + tuple(v0.shape[2:]), v0.dtype)
      for i in range(b1):
        for j in range(b2):
          out[grid.rows_of(i), grid.cols_of(j)] = self._block(
              results, i, j, path, layout)
      return self._finish(out)
    rows = [self._concat([self._block(results, i, j, path, layout)
                          for j in range(b2)], 1) for i in range(b1)]
    return self._concat(rows, 0)
