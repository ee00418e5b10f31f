"""`compute_kernel`: a kernel computed block by block into a `KernelStore`.

The same loop drives every way of computing blocks: a *runner* turns tasks
(`nt_gp.blocks.Task`) into block outputs, and this process writes each
finished block to the store, so only one process ever writes the file.

* `LocalRunner`: the local devices of this process (`nt_gp.devices`).
* `ClusterRunner` (`nt_gp.distributed.cluster`): worker processes of a
  `tf.distribute` cluster.
"""
import os
import sys
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
import tqdm

from nt_gp import _config
from nt_gp.blocks import BlockGrid, Task, mirror_perm
from nt_gp.devices import DeviceRunner, local_devices
from nt_gp.input_checks import check_kernel_inputs
from nt_gp.nonfinite import NonFiniteKernelError, checked_after, non_finite_message
from nt_gp.store import KernelStore, StoreExistsError, fingerprint
from nt_gp.store_fingerprint import compare_probes, make_probe
from nt_gp.store_lock import WriterLock

__all__ = ['compute_kernel', 'BlockComputer', 'LocalRunner', 'STORABLE']

STORABLE = ('nngp', 'ntk')


def canonical_names(get) -> tuple:
  """`get` as a tuple of storable names (``'nngp'``, ``'ntk'``)."""
  names = (get,) if isinstance(get, str) else tuple(get)
  if not names or any(n not in STORABLE for n in names):
    raise ValueError(f'`get` must be one of {STORABLE} or a tuple of them, '
                     f'got {get!r}.')
  if len(set(names)) != len(names):
    raise ValueError(f'`get` names a quantity twice: {get!r}.')
  return names


class BlockComputer:
  """Computes the outputs of one block task.

  Args:
    kernel_fn: ``kernel_fn(x1, x2=None, get=...)`` as in `nt_gp.stax`.
    x1, x2: `(N1, ...)`, `(N2, ...)` float arrays (`x2=None`: symmetric).
    names: quantities to compute, e.g. ``('nngp', 'ntk')``.
    grid: the `BlockGrid`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> from nt_gp.blocks import BlockGrid
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu(), stax.Dense(1))
    >>> grid = BlockGrid(4, 4, 2, 2, symmetric=True)
    >>> c = BlockComputer(kernel_fn, np.ones((4, 3)), None, ('nngp',), grid)
    >>> c.eager(grid.tasks()[1])['nngp'].shape
    (2, 2)
  """

  def __init__(self, kernel_fn: Callable, x1, x2, names: Sequence[str],
               grid: BlockGrid):
    self.kernel_fn = kernel_fn
    self.names = tuple(names)
    self.grid = grid
    self.x1 = tf.convert_to_tensor(x1)
    self.x2 = None if x2 is None else tf.convert_to_tensor(x2)
    self.diagonal_spatial = None
    self._fns = None

  def inputs(self, task: Task):
    """``(x1 block, x2 block or None)`` of `task`."""
    a = self.x1[self.grid.rows_of(task.i)]
    if task.diagonal:
      return a, None
    src = self.x1 if self.x2 is None else self.x2
    return a, src[self.grid.cols_of(task.j)]

  def call(self, a, b) -> tuple:
    """The outputs for one pair of input blocks, in `names` order."""
    try:
      out = self.kernel_fn(a, b, get=self.names + ('diagonal_spatial',))
      self.diagonal_spatial = bool(out.diagonal_spatial)
    except NonFiniteKernelError:
      raise
    except (ValueError, TypeError, AttributeError):
      out = self.kernel_fn(a, b, get=self.names)
    if isinstance(out, tuple) and hasattr(out, '_fields'):
      return tuple(getattr(out, n) for n in self.names)
    if len(self.names) == 1:
      return (out,)
    raise TypeError(f'`kernel_fn(x1, x2, get={self.names})` must return a '
                    f'namedtuple, got {type(out).__name__}.')

  def eager(self, task: Task, unused_device=None) -> Dict[str, np.ndarray]:
    """Computes `task` in this process; returns host arrays by name."""
    try:
      vals = self.call(*self.inputs(task))
    except NonFiniteKernelError as e:
      raise NonFiniteKernelError(f'block ({task.i}, {task.j}): {e}') from None
    return {n: np.asarray(v) for n, v in zip(self.names, vals)}

  def probe(self, dtype) -> dict:
    """The probe record (`nt_gp.store_fingerprint.make_probe`): the kernel
    of the first (up to) 2 inputs of `x1` against themselves (``x2=None``)
    or against the first 2 of `x2`, computed here."""
    rows = min(2, self.x1.shape[0])
    a = self.x1[:rows]
    b = None if self.x2 is None else self.x2[:min(2, self.x2.shape[0])]
    vals = {n: np.asarray(v) for n, v in zip(self.names, self.call(a, b))}
    for n, v in vals.items():
      if not np.all(np.isfinite(v)):
        raise NonFiniteKernelError(non_finite_message(n, v))
    return make_probe(vals, rows, None if b is None else b.shape[0],
                      np.dtype(dtype).name)

  def functions(self):
    """``(pair_fn(a, b), diag_fn(a))`` as `tf.function`s (for remote use)."""
    if self._fns is None:
      jit = _config.config.resolve_jit()
      # Their blocks are checked to be finite where they arrive.
      pair = tf.function(checked_after(lambda a, b: self.call(a, b)),
                         autograph=False, jit_compile=jit)
      diag = tf.function(checked_after(lambda a: self.call(a, None)),
                         autograph=False, jit_compile=jit)
      self._fns = pair, diag
    return self._fns

  def mirror(self, outputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Block ``(j, i)`` from the outputs of block ``(i, j)``."""
    out = {}
    for n, v in outputs.items():
      perm = mirror_perm(v.ndim, self.diagonal_spatial)
      if perm is None:
        raise ValueError(
            f'Cannot mirror `{n}` of shape {v.shape}: its spatial layout is '
            f'unknown (kernel_fn did not report `diagonal_spatial`). Pass '
            f'`x2` explicitly to compute every block.')
      out[n] = np.ascontiguousarray(np.transpose(v, perm))
    return out


class LocalRunner:
  """Computes blocks on the local devices of this process.

  Args:
    device_count: as in `nt_gp.devices.local_devices` (``-1``: all).

  Example:
    >>> LocalRunner(1).n_workers
    1
  """

  def __init__(self, device_count: int = -1):
    self.devices = local_devices(device_count)
    self.n_workers = len(self.devices)

  def imap(self, computer: BlockComputer, tasks):
    """Yields ``(task, {name: array})`` as blocks finish."""
    return DeviceRunner(self.devices).imap(computer.eager, tasks)

  def close(self):
    pass


def _prepare(x, name, dtype):
  if x is None:
    return None
  if isinstance(x, (tf.Tensor, tf.Variable)):
    x = x.numpy()
  x = np.asarray(x)
  check_kernel_inputs(f'`{name}`', x, dtype)
  return np.ascontiguousarray(x, dtype=dtype)


def compute_kernel(kernel_fn: Callable, x1, x2=None, *, out, arch,
                   get='nngp', batch_size: int, dtype=None,
                   resume: bool = False, runner=None, progress: bool = True,
                   log: Optional[Callable[[str], None]] = None,
                   fsync: bool = True, verify: bool = True) -> str:
  """Computes ``kernel_fn(x1, x2, get)`` block by block into an HDF5 store.

  Args:
    kernel_fn: a kernel function from `nt_gp.stax` (or compatible).
    x1: `(N1, ...)` inputs.
    x2: `(N2, ...)` inputs, or None for the symmetric kernel of `x1`.
    out: path of the `KernelStore` file.
    arch: JSON-serialisable identity of the architecture (recorded, and
      compared on resume).
    get: ``'nngp'``, ``'ntk'`` or both as a tuple; each becomes a dataset of
      shape ``(N1, N2, ...)``.
    batch_size: block size: blocks of `batch_size` x `batch_size` inputs
      (the last row and column of blocks smaller where it does not divide
      `N1` or `N2`).
    dtype: ``'float32'`` or ``'float64'`` (default: that of `x1`, float32 for
      other inputs). The stored kernel has this dtype.
    resume: continue an existing store made for the same computation
      (otherwise an existing `out` is an error).
    runner: `LocalRunner` (default, all local devices) or `ClusterRunner`.
    progress: show a tqdm bar (blocks, kernel entries/s, ETA) on stderr.
    log: called with one line per block written (e.g. ``print``, or
      ``tqdm.tqdm.write`` next to the progress bar).
    fsync: fsync the store before recording each block.
    verify: on resume, check every finished block against its checksum.

  Returns:
    `out`.

  Raises:
    ValueError, TypeError: bad arguments or inputs (empty, complex, NaN/inf,
      out of the dtype's range).
    nt_gp.nonfinite.NonFiniteKernelError: the kernel overflowed (the blocks
      written before are kept).
    nt_gp.store.StoreError: the output exists (without `resume`), is locked
      by another writer, was made for another computation, is damaged or
      read-only, or cannot be written (e.g. a full disk).

  Example:
    >>> import os, tempfile
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> from nt_gp.store import KernelStore
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu(), stax.Dense(1))
    >>> x = np.random.RandomState(0).randn(8, 3)
    >>> path = os.path.join(tempfile.mkdtemp(), 'k.h5')
    >>> _ = compute_kernel(kernel_fn, x, out=path, arch='relu-mlp',
    ...                    batch_size=4, progress=False)
    >>> with KernelStore.open(path) as s:
    ...   bool(np.allclose(s.read('nngp'), kernel_fn(x, None, 'nngp')))
    True
  """
  names = canonical_names(get)
  if dtype is None:
    given = np.asarray(x1).dtype
    dtype = given if given in (np.float32, np.float64) else np.float32
  dtype = np.dtype(dtype)
  if dtype not in (np.float32, np.float64):
    raise ValueError(f'`dtype` must be float32 or float64, got {dtype}.')
  x1 = _prepare(x1, 'x1', dtype)
  x2 = _prepare(x2, 'x2', dtype)
  if x2 is not None and x2.shape[1:] != x1.shape[1:]:
    raise ValueError(f'`x1` and `x2` must have the same shape apart from the '
                     f'batch axis, got {x1.shape} and {x2.shape}.')
  n1 = x1.shape[0]
  n2 = n1 if x2 is None else x2.shape[0]
  if (isinstance(batch_size, bool) or
      not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
    raise ValueError(f'`batch_size` must be a positive int, got '
                     f'{batch_size!r}.')
  batch_size = int(batch_size)
  grid = BlockGrid.of(n1, n2, batch_size, symmetric=x2 is None)
  fp = fingerprint(x1, x2, arch=arch, get=names, dtype=dtype.name,
                   batch_size=batch_size)
  out = os.fspath(out)
  if os.path.lexists(out) and not resume:
    raise StoreExistsError(
        f'{out} already exists; refusing to overwrite it. Resume it (it '
        f'must have been made for the same inputs and architecture) or '
        f'choose another output file.')
  computer = BlockComputer(kernel_fn, x1, x2, names, grid)
  runner = runner or LocalRunner()
  store = None
  with WriterLock(out) as lock:
    try:
      if os.path.lexists(out):
        store = KernelStore.open(out, 'r+', fingerprint=fp, verify=verify,
                                 fsync=fsync, lock=lock)
      # A few entries computed before any block: a changed architecture is
      # refused on resume, an overflowing one stops here, and their shape
      # gives the layout of a new store.
      probe = computer.probe(dtype)
      if store is None:
        spec = {n: (tuple(probe['shape'][n][2:]), dtype.name) for n in names}
        store = KernelStore.create(
            out, fp, grid, spec, fsync=fsync, probe=probe, lock=lock,
            meta={'diagonal_spatial': computer.diagonal_spatial})
      else:
        compare_probes(store.probe, probe, out)
        if 'diagonal_spatial' in store.meta:
          computer.diagonal_spatial = store.meta['diagonal_spatial']
      _compute_missing(store, computer, grid, runner, progress, log)
    finally:
      if store is not None:
        store.close()
  return out


def _compute_missing(store, computer, grid, runner, progress, log):
  """Computes and writes every block `store` does not have yet."""
  names = computer.names
  n1, n2 = grid.n1, grid.n2

  def is_done(task):
    return all(store.is_done(i, j) for i, j in grid.blocks_of(task))

  tasks = [t for t in grid.tasks() if not is_done(t)]
  done_entries = sum(grid.entries(t) for t in grid.tasks() if is_done(t))
  n_tasks = len(grid.tasks())
  bar = tqdm.tqdm(total=n1 * n2, initial=done_entries, unit='entry',
                  unit_scale=True, desc='kernel', disable=not progress,
                  file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
  bar.set_postfix_str(f'blocks {n_tasks - len(tasks)}/{n_tasks}', refresh=False)

  def emit(msg):
    if log is not None:
      log(msg)

  try:
    # A symmetric pair half-recorded when the job stopped: mirror, don't
    # recompute.
    if grid.symmetric:
      remaining = []
      for t in tasks:
        halves = [store.is_done(i, j) for i, j in grid.blocks_of(t)]
        if t.mirrored and any(halves):
          src, dst = ((t.i, t.j), (t.j, t.i)) if halves[0] else (
              (t.j, t.i), (t.i, t.j))
          block = {n: store.dataset(n)[grid.rows_of(src[0]),
                                       grid.cols_of(src[1])] for n in names}
          try:
            mirrored = computer.mirror(block)
          except ValueError:
            remaining.append(t)
            continue
          store.write_blocks([(dst[0], dst[1], mirrored)])
          emit(f'mirrored block ({dst[0]}, {dst[1]}) from ({src[0]}, '
               f'{src[1]})')
          rows, cols = grid.block_shape(*dst)
          bar.update(rows * cols)
        else:
          remaining.append(t)
      tasks = remaining

    finished = n_tasks - len(tasks)
    try:
      for task, outputs in runner.imap(computer, tasks):
        for n, v in outputs.items():
          if not np.all(np.isfinite(v)):
            raise NonFiniteKernelError(
                f'block ({task.i}, {task.j}): {non_finite_message(n, v)}')
        blocks = [(task.i, task.j, outputs)]
        if task.mirrored:
          blocks.append((task.j, task.i, computer.mirror(outputs)))
        store.write_blocks(blocks)
        finished += 1
        emit(f'computed block ({task.i}, {task.j})')
        bar.set_postfix_str(f'blocks {finished}/{n_tasks}', refresh=False)
        bar.update(grid.entries(task))
    except tf.errors.InvalidArgumentError as e:
      # The check of `nt_gp.nonfinite` inside a traced block (cluster runs).
      if 'non-finite' not in str(e):
        raise
      raise NonFiniteKernelError(e.message.splitlines()[0]) from None
  finally:
    bar.close()
