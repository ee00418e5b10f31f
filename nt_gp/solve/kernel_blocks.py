"""Row blocks of ``K(X, Z)`` and the passes a Nyström solver makes over them.

The Nyström solver never holds ``K(X, Z)`` (``N x M``) whole: it makes
*passes* over row blocks ``K(x_b, Z)``, each reducing the block at once:

* `gram_apply`: ``K(X, Z)^T K(X, Z) U`` (one CG step for all columns of U),
* `transpose_apply`: ``K(X, Z)^T V`` (right-hand sides),
* `gram_and_transpose_apply`: ``K(X, Z)^T K(X, Z)`` and ``K(X, Z)^T V`` (the
  Nyström GP's variances and marginal likelihood, `nt_gp.solve.dtc`),
* `apply`: ``K(X, Z) A`` (predictions),
* `quad`: ``rowsum((K(X, Z) R)^2)`` (leverage scores),
* `diagonal`: ``diag K(X, X)`` (the scale of a relative ``diag_reg``).

Blocks come from

* `FunctionBlocks`: a `stax` ``kernel_fn`` (any layer's, batched), evaluated
  on the fly as a compiled `tf.function` — optionally kept in memory
  (`cache_bytes`) or in an HDF5 file (`cache_dir`) after the first pass;
* `StoreBlocks`: arrays or `KernelStore`s of ``K(X, Z)`` and ``K(Z, Z)``.

`nt_gp.solve.cluster_blocks.ClusterBlocks` runs the same passes on
`tf.distribute` workers.

Example:
  >>> import numpy as np
  >>> from nt_gp import stax
  >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu(), stax.Dense(1))
  >>> x = np.random.RandomState(0).randn(10, 3)
  >>> blocks = FunctionBlocks(kernel_fn, x, x[:4], batch_size=3)
  >>> k = kernel_fn(x, x[:4], 'nngp').numpy()
  >>> u = np.ones((4, 2))
  >>> bool(np.allclose(blocks.gram_apply(u), k.T @ k @ u))
  True
"""
import os
import tempfile
from typing import Callable, Optional

import numpy as np

__all__ = ['KernelBlocks', 'FunctionBlocks', 'StoreBlocks', 'row_slices']


def row_slices(n: int, batch_size: int):
  """Slices of `batch_size` rows covering ``range(n)`` (the last smaller).

  Example:
    >>> row_slices(5, 2)
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
  """
  if batch_size < 1:
    raise ValueError(f'`batch_size` must be positive, got {batch_size}.')
  return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


class KernelBlocks:
  """Row blocks of ``K(X, Z)`` (``N x M``) and passes over them.

  Subclasses define `block` (and `diag_block` where they can).

  Attributes:
    n: rows (points).
    m: columns (centres).
    slices: the row blocks.
    on_block: called with the number of rows of each block a pass finishes
      (progress bars).
  """
  n = 0
  m = 0
  slices = ()
  on_block: Optional[Callable[[int], None]] = None

  def block(self, i: int) -> np.ndarray:
    """``K(x_b, Z)`` of block `i` as float64."""
    raise NotImplementedError

  def diag_block(self, i: int) -> np.ndarray:
    """``diag K(x_b, x_b)`` of block `i`."""
    raise NotImplementedError(
        f'{type(self).__name__} cannot give diag K(X, X); pass the training '
        f'kernel\'s diagonal, or use `diag_reg_absolute_scale=True`.')

  def _done(self, rows):
    if self.on_block is not None:
      self.on_block(rows)

  # -- passes (subclasses may run them elsewhere) -----------------------------
  def gram_apply(self, u: np.ndarray) -> np.ndarray:
    """``K^T (K u)`` for ``u`` of shape ``(M, k)``."""
    out = np.zeros((self.m, u.shape[1]))
    for i, s in enumerate(self.slices):
      kb = self.block(i)
      out += kb.T @ (kb @ u)
      self._done(s.stop - s.start)
    return out

  def transpose_apply(self, v: np.ndarray) -> np.ndarray:
    """``K^T v`` for ``v`` of shape ``(N, k)``."""
    out = np.zeros((self.m, v.shape[1]))
    for i, s in enumerate(self.slices):
      out += self.block(i).T @ v[s]
      self._done(s.stop - s.start)
    return out

  def gram_and_transpose_apply(self, v: np.ndarray):
    """``(K^T K, K^T v)``, ``(M, M)`` and ``(M, k)``, in one pass."""
    gram = np.zeros((self.m, self.m))
    out = np.zeros((self.m, v.shape[1]))
    for i, s in enumerate(self.slices):
      kb = self.block(i)
      gram += kb.T @ kb
      out += kb.T @ v[s]
      self._done(s.stop - s.start)
    return gram, out

  def apply(self, a: np.ndarray) -> np.ndarray:
    """``K a`` for ``a`` of shape ``(M, k)``: ``(N, k)``."""
    out = np.empty((self.n, a.shape[1]))
    for i, s in enumerate(self.slices):
      out[s] = self.block(i) @ a
      self._done(s.stop - s.start)
    return out

  def quad(self, r: np.ndarray) -> np.ndarray:
    """``rowsum((K r)^2)`` for ``r`` of shape ``(M, M')``: ``(N,)``."""
    out = np.empty(self.n)
    for i, s in enumerate(self.slices):
      p = self.block(i) @ r
      out[s] = np.einsum('ij,ij->i', p, p)
      self._done(s.stop - s.start)
    return out

  def diagonal(self) -> np.ndarray:
    """``diag K(X, X)`` ``(N,)``."""
    out = np.empty(self.n)
    for i, s in enumerate(self.slices):
      out[s] = self.diag_block(i)
      self._done(s.stop - s.start)
    return out

  def dense(self) -> np.ndarray:
    """The whole ``(N, M)`` matrix (small sets, e.g. validation points)."""
    out = np.empty((self.n, self.m))
    for i, s in enumerate(self.slices):
      out[s] = self.block(i)
    return out

  def close(self):
    """Releases files and caches."""


def _check_inputs(x, name):
  if hasattr(x, 'numpy') and not isinstance(x, np.ndarray):
    x = x.numpy()
  x = np.asarray(x)
  if x.ndim < 2:
    raise ValueError(f'`{name}` must have a batch and a feature axis, got '
                     f'shape {x.shape}.')
  if x.dtype.kind not in 'biuf':
    raise TypeError(f'`{name}` must be numeric, got dtype {x.dtype}.')
  if x.dtype not in (np.float32, np.float64):
    x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    raise ValueError(f'`{name}` has non-finite values.')
  return np.ascontiguousarray(x)


class FunctionBlocks(KernelBlocks):
  """``K(X, Z)`` computed by a `stax` ``kernel_fn``, block by block.

  Args:
    kernel_fn: ``kernel_fn(x1, x2, get)`` of a stax network whose kernel is
      one number per pair of inputs.
    x: ``(N, ...)`` inputs (float32 or float64: the kernel's dtype).
    z: ``(M, ...)`` centres.
    get: ``'nngp'`` or ``'ntk'``.
    batch_size: rows per block.
    cache_bytes: keep up to this many bytes of blocks in memory after the
      first pass (0: recompute every pass).
    cache_dir: if given, keep every block in an HDF5 file there after the
      first pass (deleted by `close`).

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Erf(), stax.Dense(1))
    >>> x = np.random.RandomState(0).randn(5, 2)
    >>> FunctionBlocks(kernel_fn, x, x[:2], 'ntk', batch_size=2).block(2).shape
    (1, 2)
  """

  def __init__(self, kernel_fn: Callable, x, z, get: str = 'nngp',
               batch_size: int = 1024, cache_bytes: int = 0,
               cache_dir: Optional[str] = None):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from nt_gp import _config  # pylint: disable=g-import-not-at-top
    from nt_gp import nonfinite  # pylint: disable=g-import-not-at-top
    if get not in ('nngp', 'ntk'):
      raise ValueError(f'`get` must be "nngp" or "ntk", got {get!r}.')
    self.kernel_fn = kernel_fn
    self.get = get
    self.x = _check_inputs(x, 'x')
    self.z = _check_inputs(z, 'centres').astype(self.x.dtype)
    if self.z.shape[1:] != self.x.shape[1:]:
      raise ValueError(f'Centres of shape {self.z.shape[1:]} do not match '
                       f'inputs of shape {self.x.shape[1:]}.')
    self.n, self.m = self.x.shape[0], self.z.shape[0]
    self.batch_size = int(batch_size)
    self.slices = row_slices(self.n, self.batch_size)
    self.dtype = self.x.dtype
    jit = _config.config.resolve_jit()
    z_value = self.z
    # Their results are checked to be finite on the host (`_host`).
    self._cross = tf.function(
        nonfinite.checked_after(
            lambda a: kernel_fn(a, tf.constant(z_value), get)),
        autograph=False, jit_compile=jit)
    # Shapes stay static (the kernel's layers need them): one trace for the
    # full blocks, one for a smaller last block.
    self._self = tf.function(
        nonfinite.checked_after(lambda a: kernel_fn(a, None, get)),
        autograph=False, jit_compile=jit)
    row_bytes = self.m * self.dtype.itemsize     # cached in the kernel's dtype
    self._cache = {}
    self._cache_rows = int(cache_bytes) // row_bytes if cache_bytes else 0
    self._cached_rows = 0
    self._file = None
    self._cache_dir = cache_dir

  def kernel(self, a, b=None) -> np.ndarray:
    """``kernel_fn(a, b, get)`` as float64 (b=None: symmetric)."""
    out = self.kernel_fn(a, b, self.get)
    return _host(out)

  def kzz(self) -> np.ndarray:
    """``K(Z, Z)`` ``(M, M)`` float64."""
    return _host(self._self(self.z))

  def compute_block(self, i: int) -> np.ndarray:
    return _host(self._cross(self.x[self.slices[i]]))

  def block(self, i: int) -> np.ndarray:
    if i in self._cache:
      return self._cache[i].astype(np.float64)
    if self._file is not None and self._file_done[i]:
      s = self.slices[i]
      return self._file['k'][s].astype(np.float64)
    kb = self.compute_block(i)
    rows = kb.shape[0]
    if self._cached_rows + rows <= self._cache_rows:
      self._cache[i] = kb.astype(self.dtype)
      self._cached_rows += rows
    elif self._cache_dir is not None:
      self._store(i, kb)
    return kb

  def _store(self, i, kb):
    import h5py  # pylint: disable=g-import-not-at-top
    if self._file is None:
      fd, path = tempfile.mkstemp(suffix='.h5', prefix='nt_gp_kxz_',
                                  dir=self._cache_dir)
      os.close(fd)
      self._path = path
      self._file = h5py.File(path, 'w')
      self._file.create_dataset('k', shape=(self.n, self.m), dtype=self.dtype,
                                chunks=(min(self.batch_size, self.n), self.m))
      self._file_done = np.zeros(len(self.slices), bool)
    self._file['k'][self.slices[i]] = kb.astype(self.dtype)
    self._file_done[i] = True

  def diag_block(self, i: int) -> np.ndarray:
    a = self.x[self.slices[i]]
    return np.diagonal(_host(self._self(a))).copy()

  def close(self):
    """Deletes the disk cache, if any."""
    if self._file is not None:
      self._file.close()
      self._file = None
      os.unlink(self._path)
    self._cache.clear()


def _host(t) -> np.ndarray:
  a = t.numpy() if hasattr(t, 'numpy') else np.asarray(t)
  if a.ndim != 2:
    raise ValueError(f'The kernel has shape {a.shape}; a Nyström solve needs '
                     f'one number per pair of inputs (end the network with a '
                     f'readout such as GlobalAvgPool or Flatten + Dense).')
  if not np.all(np.isfinite(a)):
    raise ValueError('The kernel has non-finite entries; use float64 inputs '
                     'or inputs of a smaller scale.')
  return a.astype(np.float64)


class StoreBlocks(KernelBlocks):
  """``K(X, Z)`` read from an array or a `KernelStore`.

  Args:
    k_xz: ``(N, M)`` array, store or store path (see
      `nt_gp.solve.sources.open_source`).
    batch_size: rows per block.
    get: which kernel of a store or record.
    diagonal: optional ``(N,)`` ``diag K(X, X)``.

  Example:
    >>> import numpy as np
    >>> StoreBlocks(np.ones((3, 2)), batch_size=2).apply(np.ones((2, 1))).T
    array([[2., 2., 2.]])
  """

  def __init__(self, k_xz, batch_size: int = 4096, get: str = 'nngp',
               diagonal: Optional[np.ndarray] = None, label: str = 'k_x_z'):
    from nt_gp.solve.sources import open_source  # pylint: disable=g-import-not-at-top
    self.source = open_source(k_xz, label, get)
    self.n, self.m = self.source.shape
    self.slices = row_slices(self.n, int(batch_size))
    self._diagonal = None if diagonal is None else np.asarray(diagonal,
                                                              np.float64)
    if self._diagonal is not None and self._diagonal.shape != (self.n,):
      raise ValueError(f'The diagonal must have shape ({self.n},), got '
                       f'{self._diagonal.shape}.')

  def block(self, i: int) -> np.ndarray:
    return self.source.read(self.slices[i], slice(0, self.m))

  def diag_block(self, i: int) -> np.ndarray:
    if self._diagonal is None:
      return super().diag_block(i)
    return self._diagonal[self.slices[i]]

  def close(self):
    self.source.close()
