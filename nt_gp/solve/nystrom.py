"""`nystrom_sweep`: Nyström GP means / kernel ridge regression for large N.

For ``M`` centres ``Z`` (a subset of the training inputs), solves Falkon's
system (`nt_gp.solve.falkon`) for every ``diag_reg`` value and target column
at once, with ``K(X, Z)`` computed block by block by the network's
``kernel_fn`` (locally, cached in memory or on disk, or on `tf.distribute`
workers) or read from `KernelStore`s. The result predicts
``m(x) = K(x, Z) alpha``: the subset-of-regressors / DTC posterior mean,
the same as GPflow's `SGPR` with inducing points ``Z`` and fixed noise
``diag_reg`` (absolute), and Nyström kernel ridge regression.

With ``posterior=True`` the first pass also accumulates ``K_ZX K_XZ``
(``N M^2`` more flops, no more kernel evaluations), from which the result
gives the DTC model's predictive variances (`NystromResult.predict_variance`,
GPflow `SGPR.predict_f`'s), its log marginal likelihood
``log N(y | 0, Q_XX + s2 I)`` and Titsias' bound (`SGPR.elbo`); see
`nt_gp.solve.dtc`.

Example:
  >>> import numpy as np
  >>> from nt_gp import stax
  >>> _, _, kernel_fn = stax.serial(stax.Dense(1, 1.5, 0.05), stax.Relu(),
  ...                               stax.Dense(1, 1.5, 0.05))
  >>> x = np.random.RandomState(0).randn(200, 2)
  >>> y = np.sin(2 * x[:, :1])
  >>> fit = nystrom_sweep(y, [1e-3, 1e-1], kernel_fn=kernel_fn, x_train=x,
  ...                     n_centres=50, batch_size=64)
  >>> fit.alpha.shape, fit.predict(x[:5]).shape
  ((2, 50, 1), (2, 5, 1))
  >>> fit = nystrom_sweep(y, [1e-3, 1e-1], kernel_fn=kernel_fn, x_train=x,
  ...                     n_centres=50, batch_size=64, posterior=True)
  >>> fit.predict_variance(x[:5]).shape, fit.log_marginal_likelihood.shape
  ((2, 5), (2,))
"""
import dataclasses
from typing import Callable, Optional

import numpy as np

from nt_gp.solve import centres as centres_lib
from nt_gp.solve.dtc import DTCPosterior
from nt_gp.solve.falkon import FalkonResult, falkon_solve
from nt_gp.solve.kernel_blocks import FunctionBlocks, StoreBlocks
from nt_gp.solve.memory import MemoryBudget
from nt_gp.solve.progress import WorkProgress
from nt_gp.solve.regularization import absolute_regs, check_regs
from nt_gp.solve.sources import check_pairing, open_source
from nt_gp.solve.targets import Targets

__all__ = ['nystrom_sweep', 'NystromResult']


@dataclasses.dataclass
class NystromResult:
  """A Nyström solve for each value of a `diag_reg` list.

  Attributes:
    diag_reg: ``(R,)`` the values asked for.
    reg: ``(R,)`` absolute noise variances.
    alpha: ``(R, M, C)``: means are ``K(x, Z) @ alpha[r]``.
    centres: ``(M,)`` indices of the centres in the training inputs (None
      when kernels were given).
    z: ``(M, ...)`` the centres' inputs (None when kernels were given).
    targets: the `Targets` (task, classes).
    solve: the `FalkonResult` (iterations, residuals, validation losses).
    mean_diagonal: mean of ``diag K(X, X)`` (None if not needed).
    log_marginal_likelihood: ``(R,)`` the DTC model's ``log N(y | 0, Q_XX +
      s2 I)`` summed over target columns (None without ``posterior=True``).
    elbo: ``(R,)`` Titsias' bound, GPflow `SGPR.elbo` (None without
      ``posterior=True`` or, for kernels given, without ``k_train_diag``).
    dtc: the `nt_gp.solve.dtc.DTCPosterior` (None without
      ``posterior=True``).
  """
  diag_reg: np.ndarray
  reg: np.ndarray
  alpha: np.ndarray
  centres: Optional[np.ndarray]
  z: Optional[np.ndarray]
  targets: Targets
  solve: FalkonResult
  mean_diagonal: Optional[float]
  kernel_fn: Optional[Callable] = None
  get: str = 'nngp'
  batch_size: int = 1024
  runner: object = None
  log_marginal_likelihood: Optional[np.ndarray] = None
  elbo: Optional[np.ndarray] = None
  dtc: Optional[DTCPosterior] = None

  def predict(self, x=None, k_test_centres=None) -> np.ndarray:
    """Posterior means ``(R, T, C)`` at new inputs `x` or from their
    ``(T, M)`` kernel against the centres (array or store)."""
    r, m, c = self.alpha.shape
    stacked = self.alpha.transpose(1, 0, 2).reshape(m, r * c)
    blocks = self._test_blocks(x, k_test_centres, '`k_test_centres`')
    try:
      out = blocks.apply(stacked)
    finally:
      blocks.close()
    return out.reshape(-1, r, c).transpose(1, 0, 2)

  def predict_variance(self, x=None, k_test_centres=None,
                       k_test_diag=None) -> np.ndarray:
    """Posterior variances ``(R, T)`` of the latent function (without the
    noise, as GPflow's `SGPR.predict_f`): ``k_** - Q_** + s2 K_*Z (s2 K_ZZ +
    K_ZX K_XZ)^{-1} K_Z*``.

    Give test inputs `x` (kernels computed by the solve's ``kernel_fn``), or
    their ``(T, M)`` kernel against the centres `k_test_centres` and
    `k_test_diag`: ``k(test, test)`` as the ``(T,)`` diagonal, the ``(T, T)``
    kernel or a store (only its diagonal is read). Needs a solve made with
    ``posterior=True``.
    """
    if self.dtc is None:
      raise ValueError('Variances need the solve to be made with '
                       '`posterior=True`.')
    if x is not None and k_test_diag is not None:
      raise ValueError('With test inputs `x`, k(x, x) is computed; leave '
                       '`k_test_diag` out.')
    if k_test_centres is not None and k_test_diag is None:
      raise ValueError('Give `k_test_diag`, the diagonal of k(test, test) '
                       '(the prior variances).')
    blocks = self._test_blocks(x, k_test_centres,
                               '`k_test_centres` and `k_test_diag`')
    try:
      if x is not None:
        prior = FunctionBlocks(self.kernel_fn, x, x[:1], self.get,
                               min(self.batch_size, 256))
        diagonal = prior.diagonal()
      else:
        from nt_gp.solve.exact import diagonal_of  # pylint: disable=g-import-not-at-top
        diagonal = diagonal_of(k_test_diag, blocks.n, 'k_test_diag', self.get,
                            verify=False)
      out = np.empty((len(self.reg), blocks.n))
      for i, s in enumerate(blocks.slices):        # computed here, blockwise
        out[:, s] = diagonal[s] + self.dtc.variance_terms(blocks.block(i))
    finally:
      blocks.close()
    return out

  def _test_blocks(self, x, k_test_centres, what):
    """Row blocks of ``K(test, Z)`` from test inputs or a kernel/store."""
    if (x is None) == (k_test_centres is None):
      raise ValueError('Give either test inputs `x` or `k_test_centres`.')
    if x is not None:
      if self.kernel_fn is None:
        raise ValueError(f'This solve was made from kernels; give {what}.')
      return _function_blocks(self.kernel_fn, x, self.z, self.get,
                              self.batch_size, self.runner)
    blocks = StoreBlocks(k_test_centres, self.batch_size, self.get,
                         label='k_test_centres')
    if blocks.m != self.alpha.shape[1]:
      blocks.close()
      raise ValueError(f'`k_test_centres` has {blocks.m} columns, there are '
                       f'{self.alpha.shape[1]} centres.')
    return blocks


def _function_blocks(kernel_fn, x, z, get, batch_size, runner, **kwargs):
  if runner is None:
    return FunctionBlocks(kernel_fn, x, z, get, batch_size, **kwargs)
  from nt_gp.solve.cluster_blocks import ClusterBlocks  # pylint: disable=g-import-not-at-top
  return ClusterBlocks(runner, kernel_fn, x, z, get, batch_size)


def nystrom_sweep(y_train, diag_reg=0., diag_reg_absolute_scale: bool = False,
                  *, kernel_fn: Optional[Callable] = None, x_train=None,
                  get: str = 'nngp', n_centres: Optional[int] = None,
                  centres='uniform', k_train_centres=None,
                  k_centres_centres=None, k_train_diag=None,
                  validation=None, task: str = 'auto', batch_size: int = 1024,
                  tol: float = 1e-7, max_iter: int = 100, patience: int = 3,
                  memory_limit=None, cache_dir: Optional[str] = None,
                  runner=None, seed: int = 0, progress: bool = False,
                  log: Optional[Callable[[str], None]] = None,
                  posterior: bool = False) -> NystromResult:
  """Nyström GP means for every value of `diag_reg` (see module docstring).

  Give either `kernel_fn` and `x_train` (kernels computed on the fly), or
  `k_train_centres` and `k_centres_centres` (arrays or `KernelStore`s).

  Args:
    y_train: ``(N,)`` / ``(N, C)`` targets, or integer class labels (become
      centred one-hot targets, see `nt_gp.solve.Targets`).
    diag_reg: a number or a list: the noise variance, relative to the mean
      of ``diag K(X, X)`` unless `diag_reg_absolute_scale`.
    diag_reg_absolute_scale: as in `nt_gp.predict.gp_inference`.
    kernel_fn: a `stax` kernel function.
    x_train: ``(N, ...)`` training inputs (float32/float64: the kernel's
      dtype).
    get: ``'nngp'`` or ``'ntk'`` (``'ntkgp'`` is the same kernel).
    n_centres: ``M``, with `centres` ``'uniform'`` or ``'leverage'``.
    centres: ``'uniform'``, ``'leverage'`` (approximate ridge leverage
      scores for the smallest positive regulariser), or an index array.
    k_train_centres: ``(N, M)`` ``K(X, Z)`` (array / store / path).
    k_centres_centres: ``(M, M)`` ``K(Z, Z)``.
    k_train_diag: ``(N,)`` ``diag K(X, X)`` for relative `diag_reg` (and
      Titsias' bound) with kernels given.
    validation: ``(x_val, y_val)`` (with `kernel_fn`) or
      ``(k_val_centres, y_val)``: early stopping on the validation RMSE
      (regression) or error rate (classification).
    task: ``'auto'``, ``'classification'`` or ``'regression'``.
    batch_size: rows of ``K(X, Z)`` per block.
    tol: CG tolerance (relative preconditioned residual).
    max_iter: most CG iterations.
    patience: early-stopping patience (iterations).
    memory_limit: process-wide limit (bytes or e.g. ``'8G'``); blocks of
      ``K(X, Z)`` are kept in memory after the first pass as far as it
      allows. None: up to a quarter of the available memory.
    cache_dir: keep the blocks that do not fit in memory in an HDF5 file in
      this folder (read back instead of recomputed; deleted at the end).
    runner: a `nt_gp.distributed.ClusterRunner`: compute the passes over
      ``K(X, Z)`` on its workers.
    seed: seed of the centre sampling.
    progress: progress bar (kernel entries, rate, ETA) on stderr.
    log: called with a line per step.
    posterior: also accumulate ``K_ZX K_XZ`` in the first pass (``N M^2``
      flops, ``M^2`` memory) for the DTC variances, log marginal likelihood
      and Titsias bound (see the module docstring). Every absolute
      ``diag_reg`` must then be positive; ``get='ntk'`` (the infinite
      ensemble's mean) has no such variances: use ``'ntkgp'``.

  Returns:
    A `NystromResult`.
  """
  say = log or (lambda _: None)
  regs = check_regs(diag_reg)
  targets = Targets.from_labels(y_train, task)
  y = targets.values
  if get not in ('nngp', 'ntk', 'ntkgp'):
    raise ValueError(f'`get` must be "nngp", "ntk" or "ntkgp", got {get!r}.')
  kget = 'nngp' if get == 'nngp' else 'ntk'
  for name, v in (('batch_size', batch_size), ('max_iter', max_iter),
                  ('patience', patience)):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
      raise ValueError(f'`{name}` must be a positive int, got {v!r}.')
  if not tol > 0:
    raise ValueError(f'`tol` must be positive, got {tol!r}.')
  if posterior and not np.all(regs > 0):
    raise ValueError('With `posterior=True` every `diag_reg` must be '
                     'positive (with reg = 0 the DTC covariance Q_XX has '
                     'rank M < N); drop 0 from `diag_reg`.')
  if posterior and get == 'ntk':
    raise NotImplementedError(
        'Posterior variances and the marginal likelihood of get="ntk" (the '
        'infinite ensemble trained by gradient descent) are not those of a '
        'GP; use get="ntkgp" (the GP with the NTK as prior, same means).')
  budget = MemoryBudget(memory_limit)
  from_kernels = k_train_centres is not None or k_centres_centres is not None
  if from_kernels == (kernel_fn is not None or x_train is not None):
    raise ValueError('Give either `kernel_fn` and `x_train`, or '
                     '`k_train_centres` and `k_centres_centres`.')
  blocks = None
  try:
    if from_kernels:
      blocks, k_zz, idx, z = _from_kernels(
          k_train_centres, k_centres_centres, k_train_diag, kget, batch_size,
          centres)
      n = blocks.n
    else:
      if kernel_fn is None or x_train is None:
        raise ValueError('`kernel_fn` and `x_train` go together.')
      x = np.asarray(x_train.numpy() if hasattr(x_train, 'numpy') else x_train)
      n = x.shape[0]
    targets.check_rows(n, 'the training set')
    needs_diag = not diag_reg_absolute_scale or (
        isinstance(centres, str) and centres == 'leverage') or (
            posterior and not from_kernels)
    mean_diag = None
    diagonal = None
    if not from_kernels:
      if needs_diag:
        say(f'diag K(X, X) of {n} training points')
        diag_blocks = _function_blocks(kernel_fn, x, x[:1], kget,
                                       min(batch_size, 256), runner)
        diagonal = diag_blocks.diagonal()
        diag_blocks.close()
        mean_diag = float(np.mean(diagonal))
      reg_abs = absolute_regs(regs, mean_diag, diag_reg_absolute_scale)
      idx = _choose_centres(centres, n_centres, n, reg_abs, diagonal,
                            kernel_fn, x, kget, batch_size, runner, seed, say)
      z = x[idx]
      m = len(idx)
      cache = _cache_bytes(budget, n, m, len(regs), y.shape[1], batch_size,
                           memory_limit, validation, posterior)
      blocks = _function_blocks(kernel_fn, x, z, kget, batch_size, runner,
                                cache_bytes=cache, cache_dir=cache_dir)
      k_zz = blocks.kzz()
    else:
      if needs_diag or (posterior and k_train_diag is not None):
        diagonal = blocks.diagonal()
        mean_diag = float(np.mean(diagonal))
      reg_abs = absolute_regs(regs, mean_diag, diag_reg_absolute_scale)
    m = k_zz.shape[0]
    if blocks.m != m:
      raise ValueError(f'K(X, Z) has {blocks.m} columns but K(Z, Z) is '
                       f'{m} x {m}.')
    val_loss = _validation(validation, targets, kernel_fn, z, kget,
                           batch_size, runner, m)
    passes = max_iter + 1
    bar = WorkProgress(float(n) * m * passes, 'nystrom', enabled=progress,
                       unit='Mentry', scale=1e6)
    blocks.on_block = lambda rows: bar.add(float(rows) * m)
    say(f'Nyström: {n} points, {m} centres, {len(regs)} regularisers, '
        f'{y.shape[1]} target column(s)')
    try:
      if posterior:
        gram, rhs = blocks.gram_and_transpose_apply(y)
      else:
        rhs = blocks.transpose_apply(y)

      def on_iteration(it, rel):
        bar.note(f'iteration {it}, residual {float(np.max(rel)):.2e}')
        say(f'iteration {it}: largest relative residual '
            f'{float(np.max(rel)):.3e}')

      solve = falkon_solve(blocks.gram_apply, k_zz, rhs, n, reg_abs, tol=tol,
                           max_iter=max_iter, validation=val_loss,
                           patience=patience, on_iteration=on_iteration)
    finally:
      bar.close()
  finally:
    if blocks is not None:
      blocks.close()
  result = NystromResult(regs, reg_abs, solve.alpha,
                         None if from_kernels else idx, z, targets, solve,
                         mean_diag, kernel_fn, kget, int(batch_size), runner)
  if posterior:
    result.dtc = DTCPosterior(
        k_zz, gram, rhs, np.einsum('ij,ij->j', y, y), n, reg_abs,
        None if diagonal is None else float(np.sum(diagonal)))
    if result.dtc.jitter > 0:
      say(f'K(Z, Z) is numerically singular: its factor for the variances '
          f'and likelihood has {result.dtc.jitter:.3g} added to the diagonal '
          f'(duplicated or too close centres?)')
    result.log_marginal_likelihood = result.dtc.log_marginal_likelihood()
    result.elbo = result.dtc.elbo()
  return result


def _from_kernels(k_xz, k_zz, k_diag, get, batch_size, centres):
  if k_xz is None or k_zz is None:
    raise ValueError('Give both `k_train_centres` and `k_centres_centres`.')
  if not (isinstance(centres, str) and centres == 'uniform'):
    raise ValueError('With kernels given, the centres are those the kernels '
                     'were computed for; leave `centres` at its default.')
  zz = open_source(k_zz, 'k_centres_centres', get)
  try:
    if zz.shape[0] != zz.shape[1]:
      raise ValueError(f'`k_centres_centres` must be square, got {zz.shape}.')
    blocks = StoreBlocks(k_xz, batch_size, get, diagonal=k_diag,
                         label='k_train_centres')
    check_pairing(zz, blocks.source, 'train', points='centres')
    k = zz.read(slice(0, zz.shape[0]), slice(0, zz.shape[1]))
  finally:
    zz.close()
  return blocks, k, None, None


def _choose_centres(centres, n_centres, n, reg_abs, diagonal, kernel_fn, x,
                    get, batch_size, runner, seed, say):
  if isinstance(centres, str):
    if n_centres is None:
      raise ValueError('Give `n_centres` (the number M of centres).')
    if centres == 'uniform':
      return centres_lib.uniform_centres(n, int(n_centres), seed)
    if centres == 'leverage':
      positive = reg_abs[reg_abs > 0]
      reg = float(positive.min()) if positive.size else 1e-3 * float(
          np.mean(diagonal))
      say(f'approximate leverage scores of {n} points (reg {reg:.3g})')

      def cross_quad(subset, r):
        b = _function_blocks(kernel_fn, x, x[subset], get, batch_size, runner)
        try:
          return b.quad(r)
        finally:
          b.close()

      def k_subset(subset):
        b = FunctionBlocks(kernel_fn, x[subset], x[subset], get, batch_size)
        return b.kzz()

      idx, _ = centres_lib.leverage_centres(n, int(n_centres), reg, diagonal,
                                            cross_quad, k_subset, seed=seed)
      return idx
    raise ValueError(f'`centres` must be "uniform", "leverage" or an array '
                     f'of indices, got {centres!r}.')
  idx = np.asarray(centres)
  if idx.ndim != 1 or idx.dtype.kind not in 'iu' or idx.size == 0:
    raise ValueError('`centres` as an array must be 1-D integer indices into '
                     'the training inputs.')
  if idx.min() < 0 or idx.max() >= n or len(np.unique(idx)) != idx.size:
    raise ValueError(f'`centres` must be distinct indices in [0, {n}).')
  return idx


def _cache_bytes(budget, n, m, n_regs, c, batch_size, memory_limit,
                 validation, posterior=False):
  fixed = 8 * m * m * (3 + n_regs) + 8 * 6 * batch_size * m + 16 * n * c
  if posterior:                        # K_ZX K_XZ, P and a factor per value
    fixed += 8 * m * m * (3 + n_regs)
  if validation is not None:
    fixed += 8 * len(validation[1]) * m
  if memory_limit is not None:
    budget.require(fixed, f'a Nyström solve with {m} centres')
    return int(budget.available - fixed)
  return int(max(0, 0.25 * budget.available - fixed))


def _validation(validation, targets, kernel_fn, z, get, batch_size, runner,
                m):
  if validation is None:
    return None
  if not isinstance(validation, (tuple, list)) or len(validation) != 2:
    raise ValueError('`validation` must be (x_val, y_val) or '
                     '(k_val_centres, y_val).')
  first, y_val = validation
  if kernel_fn is not None:
    b = _function_blocks(kernel_fn, first, z, get, batch_size, runner)
    k_vz = b.dense()
    b.close()
  else:
    b = StoreBlocks(first, batch_size, get, label='k_val_centres')
    k_vz = b.dense()
    b.close()
  if k_vz.shape[1] != m:
    raise ValueError(f'The validation kernel has {k_vz.shape[1]} columns, '
                     f'there are {m} centres.')
  truth = targets.labels_of(y_val, k_vz.shape[0], 'y_val')
  del truth

  def loss(alpha):
    out = np.empty(alpha.shape[0])
    for r in range(alpha.shape[0]):
      score = targets.score(k_vz @ alpha[r], y_val)
      out[r] = 1. - score if targets.task == 'classification' else score
    return out

  return loss
