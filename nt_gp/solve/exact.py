"""`exact_sweep`: exact GP solves over a list of regularisers, memory-bounded.

Given ``k(train, train)`` and, for each set of points to predict,
``k(set, train)`` and optionally the diagonal of ``k(set, set)`` — as arrays
or `KernelStore` files — computes for every ``diag_reg`` the posterior means,
variances, the log marginal likelihood and ``alpha = (K + reg I)^{-1} Y``.

* If the kernel fits the memory budget it is solved in memory
  (`nt_gp.solve.dense`: a Cholesky factorisation per value, or one shared
  eigendecomposition when that is cheaper).
* Otherwise each value is factored out of core (`nt_gp.solve.tiled`) into a
  panel file in `work_dir`, resumable after a kill; finished values are
  recorded in `work_dir` too, so rerunning the same call continues where it
  stopped, and the panel files are deleted once a value is done.

Example:
  >>> import numpy as np
  >>> k = np.array([[2., 1.], [1., 2.]])
  >>> out = exact_sweep(k, np.array([1., -1.]), diag_reg=[0., 1.],
  ...                   diag_reg_absolute_scale=True,
  ...                   eval_sets={'test': (np.array([[1., 0.]]), [1.])})
  >>> out.mean['test'][:, 0, 0].round(4).tolist()
  [1.0, 0.5]
  >>> out.variance['test'][:, 0].round(4).tolist()
  [0.3333, 0.625]
"""
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Callable, Dict, List, Optional

import numpy as np

from nt_gp.solve import dense, tiled
from nt_gp.solve.memory import MemoryBudget
from nt_gp.solve.panel_file import PanelFile
from nt_gp.solve.progress import WorkProgress
from nt_gp.solve.records import EvalSet, RegResult
from nt_gp.solve.regularization import absolute_regs, check_regs
from nt_gp.solve.sources import (ArraySource, KernelSource, check_pairing,
                                 check_train_kernel, open_source,
                                 read_diagonal)

__all__ = ['exact_sweep', 'SweepResult', 'open_eval_sets', 'diagonal_of']


@dataclasses.dataclass
class SweepResult:
  """Exact GP solves for each value of a `diag_reg` list.

  Attributes:
    diag_reg: ``(R,)`` the values asked for.
    reg: ``(R,)`` the values added to the diagonal (absolute).
    log_marginal_likelihood: ``(R,)`` ``log N(Y | 0, K + reg I)`` summed over
      target columns.
    alpha: ``(R, N, C)``; means of new points are ``k(new, train) @ alpha``.
    mean: ``{set: (R, T, C)}`` posterior means.
    variance: ``{set: (R, T)}`` posterior variances (sets given a
      ``k(set, set)`` diagonal).
    method: ``'cholesky'``, ``'eigh'`` (in memory) or ``'tiled'``.
    mean_diagonal: mean of the training kernel's diagonal.
  """
  diag_reg: np.ndarray
  reg: np.ndarray
  log_marginal_likelihood: np.ndarray
  alpha: np.ndarray
  mean: Dict[str, np.ndarray]
  variance: Dict[str, np.ndarray]
  method: str
  mean_diagonal: float


def _sha(a: np.ndarray) -> str:
  a = np.ascontiguousarray(a)
  return hashlib.sha256(a.view(np.uint8).reshape(-1)).hexdigest()


def _check_symmetric(source: KernelSource, block: int = 2048):
  if not isinstance(source, ArraySource):
    return               # stores of k(x, x) are symmetric by construction
  a = source.array
  n = a.shape[0]
  scale = max(float(np.max(np.abs(np.diagonal(a)))), 1e-300)
  tol = (1e-5 if a.dtype == np.float32 else 1e-10) * scale
  for i0 in range(0, n, block):
    for j0 in range(i0, n, block):
      with np.errstate(invalid='ignore'):   # non-finite entries: found later
        d = np.max(np.abs(a[i0:i0 + block, j0:j0 + block] -
                          a[j0:j0 + block, i0:i0 + block].T), initial=0.)
      if d > tol:
        raise ValueError(f'{source.label} is not symmetric (entries differ by '
                         f'{d:.3g} from their transposes); give the kernel of '
                         f'the training inputs with themselves.')


def diagonal_of(k, size: int, label: str, get: str, verify: bool):
  """The `(size,)` float64 diagonal k(x, x) of test points, from a 1-D
  array, a `(size, size)` matrix or a store (None stays None).

  Args:
    k: None, a 1-D array of the diagonal, or anything `open_source` reads.
    size: the number of test points.
    label: the argument's name, for error messages.
    get: `'nngp'` or `'ntk'`: which kernel of a store.
    verify: check a store's checksums.

  Example:
    >>> diagonal_of(np.eye(3) * 2, 3, 'k_test_test', 'nngp', False)
    array([2., 2., 2.])
  """
  if k is None:
    return None
  if isinstance(k, (list, tuple)) and not hasattr(k, '_fields'):
    k = np.asarray(k, np.float64)
  if isinstance(k, np.ndarray) and k.ndim == 1 or (
      hasattr(k, 'shape') and not hasattr(k, 'nngp') and len(k.shape) == 1):
    d = np.asarray(k, np.float64)
  else:
    src = open_source(k, label, get, verify=verify)
    try:
      if src.shape[0] != size:
        raise ValueError(f'{src.label} has {src.shape[0]} rows but there are '
                         f'{size} points to predict.')
      d = read_diagonal(src)
    finally:
      src.close()
  if d.shape != (size,):
    raise ValueError(f'`{label}` must be the ({size},) diagonal or the ({size},'
                     f' {size}) kernel of the points to predict, got shape '
                     f'{d.shape}.')
  if not np.all(np.isfinite(d)):
    raise ValueError(f'`{label}` has non-finite entries.')
  return d


def open_eval_sets(train: KernelSource, eval_sets, get: str = 'nngp',
                   verify: bool = False) -> List[EvalSet]:
  """`EvalSet`s from ``{name: k_test_train}`` or ``{name: (k_test_train,
  k_test_test)}`` (arrays, records, stores or store paths), checked against
  the training kernel.

  Example:
    >>> sets = open_eval_sets(ArraySource(np.eye(2), 'k'),
    ...                       {'test': np.ones((3, 2))})
    >>> sets[0].name, sets[0].size, sets[0].k_test_test_diag is None
    ('test', 3, True)
  """
  out = []
  try:
    for name, value in (eval_sets or {}).items():
      if isinstance(value, tuple) and not hasattr(value, '_fields'):
        if len(value) != 2:
          raise ValueError(f'Evaluation set {name!r} must be k_test_train or '
                           f'(k_test_train, k_test_test).')
        k_tx, k_tt = value
      else:
        k_tx, k_tt = value, None
      src = open_source(k_tx, f'k_{name}_train', get, verify=verify)
      out.append(EvalSet(name, src))
      check_pairing(train, src, name)
      if k_tt is not None and get == 'ntk':
        raise NotImplementedError(
            'Posterior variances of get="ntk" (the infinite ensemble trained '
            'by gradient descent) need both the NNGP and the NTK; use '
            'get="ntkgp" (the GP with the NTK as prior) or '
            '`nt_gp.predict.gp_inference` in memory.')
      diag = diagonal_of(k_tt, src.shape[0], f'k_{name}_{name}', get, verify)
      if isinstance(k_tt, (str, os.PathLike)) or hasattr(k_tt,
                                                         'fingerprint'):
        _check_diag_pairing(src, k_tt, name)      # both are stores
      out[-1].k_test_test_diag = diag
  except BaseException:
    for e in out:
      e.k_test_train.close()
    raise
  return out


def _check_diag_pairing(src, k_tt, name):
  from nt_gp.store import KernelStore  # pylint: disable=g-import-not-at-top
  fp_src = getattr(src, 'store_fingerprint', None)
  if not fp_src:
    return
  if isinstance(k_tt, KernelStore):
    fp = k_tt.fingerprint
  else:
    with KernelStore.open(os.fspath(k_tt), verify=False) as s:
      fp = s.fingerprint
  if fp.get('x1') is not None and fp_src.get('x1') is not None and \
      fp['x1'] != fp_src['x1']:
    raise ValueError(f'The k({name}, {name}) store was computed for other '
                     f'inputs than the k({name}, train) store; compute both '
                     f'from the same {name} inputs.')


def _y_matrix(y, n: int, train: KernelSource) -> np.ndarray:
  if hasattr(y, 'numpy') and not isinstance(y, np.ndarray):
    y = y.numpy()
  y = np.asarray(y)
  if y.dtype.kind not in 'biuf':
    raise TypeError(f'`y_train` must be numeric, got dtype {y.dtype}.')
  y = y.astype(np.float64)
  if y.ndim == 1:
    y = y[:, None]
  if y.ndim != 2:
    raise ValueError(f'`y_train` must have shape (N,) or (N, C), got '
                     f'{y.shape}.')
  if y.shape[0] != n:
    raise ValueError(f'`y_train` has {y.shape[0]} rows but {train.label} has '
                     f'{n} training points; give one target per training '
                     f'input, in the kernel\'s order.')
  if not np.all(np.isfinite(y)):
    raise ValueError('`y_train` has non-finite (NaN or inf) entries.')
  return y


def exact_sweep(k_train_train, y_train, diag_reg=0.,
                diag_reg_absolute_scale: bool = False, *, get: str = 'nngp',
                eval_sets: Optional[dict] = None, memory_limit=None,
                work_dir: Optional[str] = None, method: str = 'auto',
                dtype='float64', verify: bool = True, progress: bool = False,
                log: Optional[Callable[[str], None]] = None,
                keep_factors: bool = False, fsync: bool = True
                ) -> SweepResult:
  """Exact GP posteriors for each value of `diag_reg` (see module docstring).

  Args:
    k_train_train: ``(N, N)`` kernel: array, namedtuple / `nt_gp.Kernel`,
      `KernelStore` or the path of one.
    y_train: ``(N,)`` or ``(N, C)`` targets.
    diag_reg: a number or a list of non-negative numbers.
    diag_reg_absolute_scale: as in `nt_gp.predict.gp_inference`: if False,
      each value is relative to the mean of the kernel's diagonal.
    get: ``'nngp'``, ``'ntkgp'`` or ``'ntk'``: the kernel used as prior
      (``'ntk'``: means only).
    eval_sets: ``{name: k_test_train}`` or ``{name: (k_test_train,
      k_test_test)}``; ``k_test_test`` is the ``(T,)`` diagonal, the ``(T, T)``
      kernel or a store of it (only its diagonal is read).
    memory_limit: bytes or a string such as ``'8G'`` for the whole process
      (see `nt_gp.solve.memory`); None: 80% of what the machine has available.
    work_dir: folder for the out-of-core factorisation and the record of
      finished values (created if missing; default: a temporary folder,
      removed at the end). Rerun with the same folder to resume.
    method: ``'auto'``, ``'cholesky'``, ``'eigh'`` (in memory) or
      ``'tiled'`` (out of core even if the kernel fits).
    dtype: ``'float64'`` (default) or ``'float32'`` arithmetic.
    verify: check each store's blocks against their checksums when opening
      it (one extra read of each store).
    progress: show a progress bar (flops, rate, ETA) on stderr.
    log: called with a line for each step (e.g. ``print``).
    keep_factors: keep each value's panel file in `work_dir`.
    fsync: fsync panel files after each panel.

  Returns:
    A `SweepResult`.
  """
  regs = check_regs(diag_reg)
  if method not in ('auto', 'cholesky', 'eigh', 'tiled'):
    raise ValueError(f'`method` must be "auto", "cholesky", "eigh" or '
                     f'"tiled", got {method!r}.')
  dtype = np.dtype(dtype)
  if dtype not in (np.float32, np.float64):
    raise ValueError(f'`dtype` must be float32 or float64, got {dtype}.')
  budget = MemoryBudget(memory_limit)
  train = open_source(k_train_train, 'k_train_train', get, verify=verify)
  sets = []
  try:
    check_train_kernel(train)
    n = train.shape[0]
    y = _y_matrix(y_train, n, train)
    sets = open_eval_sets(train, eval_sets, get, verify)
    _check_symmetric(train)
    mean_diagonal = float(np.mean(read_diagonal(train)))
    reg_abs = absolute_regs(regs, mean_diagonal, diag_reg_absolute_scale)
    n_test = sum(e.size for e in sets)
    chosen = None if method == 'tiled' else dense.choose_dense_method(
        n, n_test, y.shape[1], len(regs), dtype.itemsize, budget,
        'auto' if method == 'auto' else method)
    if chosen is None and method in ('cholesky', 'eigh'):
      budget.require(dense.dense_bytes(n, dtype.itemsize, method),
                     f'the in-memory {method} method')
    say = log or (lambda _: None)
    if chosen is not None:
      total = n ** 3 / 3. * dense.sweep_costs(n, n_test, y.shape[1],
                                              len(regs))[chosen]
      say(f'solving in memory ({chosen}): {n} x {n} {dtype.name} kernel, '
          f'{len(regs)} regularisers, {n_test} points to predict')
      bar = WorkProgress(total, 'solve', enabled=progress)
      try:
        results = dense.dense_sweep(train, y, reg_abs, sets, dtype, chosen,
                                    budget, bar)
      finally:
        bar.close()
    else:
      chosen = 'tiled'
      results = _tiled_sweep(train, y, reg_abs, sets, dtype, budget, work_dir,
                             progress, say, keep_factors, fsync)
  finally:
    train.close()
    for e in sets:
      e.k_test_train.close()
  return SweepResult(
      diag_reg=regs, reg=reg_abs,
      log_marginal_likelihood=np.array([r.log_marginal_likelihood
                                        for r in results]),
      alpha=np.stack([r.alpha for r in results]),
      mean={e.name: np.stack([r.mean[e.name] for r in results]) for e in sets},
      variance={e.name: np.stack([r.variance[e.name] for r in results])
                for e in sets if e.k_test_test_diag is not None},
      method=chosen, mean_diagonal=mean_diagonal)


# ----------------------------------------------------------------------------
# Out of core, resumable.
# ----------------------------------------------------------------------------
def _key(identity) -> str:
  return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()
                        ).hexdigest()[:16]


def _save_result(path: str, result: RegResult, identity: dict):
  arrays = {'alpha': result.alpha,
            'lml': np.array(result.log_marginal_likelihood),
            'reg': np.array(result.reg),
            'identity': np.array(json.dumps(identity, sort_keys=True))}
  for name, m in result.mean.items():
    arrays[f'mean/{name}'] = m
  for name, v in result.variance.items():
    arrays[f'variance/{name}'] = v
  tmp = f'{path}.tmp-{os.getpid()}.npz'
  try:
    np.savez(tmp, **arrays)
    with open(tmp, 'rb') as f:
      os.fsync(f.fileno())
    os.link(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)


def _load_result(path: str, identity: dict) -> Optional[RegResult]:
  try:
    with np.load(path, allow_pickle=False) as z:
      if str(z['identity']) != json.dumps(identity, sort_keys=True):
        return None
      means = {k[5:]: z[k] for k in z.files if k.startswith('mean/')}
      variances = {k[9:]: z[k] for k in z.files if k.startswith('variance/')}
      return RegResult(float(z['reg']), float(z['lml']), z['alpha'], means,
                       variances)
  except (OSError, ValueError, KeyError):
    return None


def _plan_for(path: str, n: int, budget: MemoryBudget, itemsize: int):
  """The plan of an existing panel file (its bounds), else a new one."""
  if os.path.exists(path):
    with PanelFile.open(path, verify=False) as pf:
      bounds = pf.bounds
    return tiled.plan_from_bounds(bounds, budget, itemsize, path)
  return tiled.PanelPlan.for_budget(n, budget, itemsize)


def _tiled_sweep(train, y, regs, sets, dtype, budget, work_dir, progress, say,
                 keep_factors, fsync) -> List[RegResult]:
  n = train.shape[0]
  own_dir = work_dir is None
  work_dir = tempfile.mkdtemp(prefix='nt_gp_solve_') if own_dir else \
      os.fspath(work_dir)
  os.makedirs(work_dir, exist_ok=True)
  matrix = train.identity()
  sets_id = {e.name: {'k': e.k_test_train.identity(),
                      'diag': None if e.k_test_test_diag is None else
                              _sha(e.k_test_test_diag)} for e in sets}
  c = y.shape[1]
  n_test = sum(e.size for e in sets)
  per_reg = n ** 3 / 3. + float(n) * n * (n_test + 2 * c)
  bar = WorkProgress(per_reg * len(regs), 'solve', enabled=progress)
  results = []
  try:
    for i, reg in enumerate(regs):
      factor_id = {'matrix': matrix, 'reg': float(reg).hex(),
                   'dtype': dtype.name}
      result_id = dict(factor_id, y=_sha(y), sets=sets_id)
      result_path = os.path.join(work_dir, f'result-{_key(result_id)}.npz')
      done = _load_result(result_path, result_id) if os.path.exists(
          result_path) else None
      if done is not None:
        say(f'reg {reg:.6g}: already solved in {work_dir}')
        bar.add(per_reg)
        results.append(done)
        continue
      factor_path = os.path.join(work_dir, f'factor-{_key(factor_id)}.h5')
      plan = _plan_for(factor_path, n, budget, dtype.itemsize)
      say(f'reg {reg:.6g} ({i + 1}/{len(regs)}): out-of-core Cholesky of '
          f'{n} x {n}, {plan.describe()}, in {factor_path}')
      bar.note(f'reg {i + 1}/{len(regs)}')
      pf = tiled.factor(train, reg, factor_path, plan, identity=matrix,
                        dtype=dtype, progress=bar, log=say, fsync=fsync)
      try:
        result = tiled.solve_with_factor(pf, plan, y, sets, reg, dtype, bar)
      finally:
        pf.close()
      _save_result(result_path, result, result_id)
      if not keep_factors:
        os.unlink(factor_path)
      results.append(result)
  finally:
    bar.close()
    if own_dir:
      shutil.rmtree(work_dir, ignore_errors=True)
  return results
