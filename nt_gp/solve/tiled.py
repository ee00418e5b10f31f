"""Out-of-core Cholesky solves: column panels on disk, bounded memory.

For a training kernel that does not fit in the memory budget,
``L L^T = K + reg I`` is computed **left-looking by column panels**: panel
``j`` (rows ``s_j:N`` of columns ``s_j:e_j``) is read from the kernel, updated
with every earlier panel of ``L`` streamed from disk in row pieces
(``A_j -= L[s_j:, k] L[s_j:e_j, k]^T``, one GEMM per piece), factored (POTRF
on its diagonal block, TRSM below it) and written to a `PanelFile`. Each
panel step reads only the kernel and finished panels, so it is idempotent,
and the file records finished panels durably: a job killed at any moment
resumes at the first unrecorded panel.

Panels are as wide as the budget allows (a panel of height ``N - s_j`` takes
about half of it), so later, shorter panels are wider; the disk traffic is
about ``N^3 / (6 w)`` numbers for a mean width ``w``, small next to the
``N^3 / 3`` flops when ``w`` is in the thousands.

After the factorisation, one forward pass over the panels solves
``L Z = [Y, K(train, test chunk)]`` for as many test points at a time as the
budget allows, giving the log marginal likelihood, posterior means
``Z_test^T Z_Y`` and variances ``k(t, t) - |Z_t|^2``; a backward pass gives
``alpha = L^{-T} Z_Y``.

Example:
  >>> import os, tempfile
  >>> import numpy as np
  >>> from nt_gp.solve.sources import ArraySource
  >>> x = np.random.RandomState(0).randn(50, 3)
  >>> k = x @ x.T + np.eye(50)
  >>> path = os.path.join(tempfile.mkdtemp(), 'f.h5')
  >>> plan = PanelPlan.fixed(50, 16)
  >>> pf = factor(ArraySource(k, 'k'), 0.5, path, plan)
  >>> bool(np.allclose(assemble(pf), np.linalg.cholesky(k + 0.5 * np.eye(50))))
  True
  >>> pf.close()
"""
import dataclasses
import math
from typing import List, Optional

import numpy as np

from nt_gp.solve import _linalg
from nt_gp.solve.memory import MemoryBudget, format_bytes
from nt_gp.solve.panel_file import PanelFile
from nt_gp.solve.records import EvalSet, RegResult, lml_from_solve
from nt_gp.solve.sources import KernelSource

__all__ = ['PanelPlan', 'factor', 'solve_with_factor', 'assemble',
           'plan_from_bounds', 'MIN_PANEL']

MIN_PANEL = 32           # narrowest panel: a memory limit below it is refused
_PANEL_SHARE = 0.55      # the panel being factored (or the right-hand sides)
_DIAG_SHARE = 0.15       # one diagonal-height block of an earlier panel
# The rest of the working memory (about 0.3) streams pieces of earlier panels.
_MIN_STREAM_ROWS = 64


@dataclasses.dataclass
class PanelPlan:
  """Panel bounds and buffer sizes for a factorisation in a memory budget.

  Attributes:
    bounds: ``(P + 1,)`` panel bounds from 0 to N.
    working_bytes: the bytes the buffers may use.
    itemsize: 8 (float64) or 4 (float32).
  """
  bounds: np.ndarray
  working_bytes: int
  itemsize: int = 8

  @classmethod
  def for_budget(cls, n: int, budget: MemoryBudget, itemsize: int = 8,
                 max_width: Optional[int] = None) -> 'PanelPlan':
    """The widest panels that fit `budget` (see the module docstring).

    Raises:
      MemoryLimitError: not even a panel of `MIN_PANEL` columns fits.

    Example:
      >>> from nt_gp.solve.memory import MARGIN_BYTES
      >>> budget = MemoryBudget(MARGIN_BYTES + 2 ** 21, baseline=0)  # 2 MiB
      >>> plan = PanelPlan.for_budget(1000, budget)
      >>> plan.bounds[:3].tolist(), int(plan.bounds[-1])
      ([0, 144, 312], 1000)
    """
    working = int(budget.available)
    min_panel = min(MIN_PANEL, n)
    need = int(math.ceil(n * min_panel * itemsize / _PANEL_SHARE)) + (
        min_panel ** 2 + _MIN_STREAM_ROWS * min_panel) * itemsize
    if working < need:
      budget.require(need, f'one panel of {min_panel} columns of the '
                     f'{n} x {n} factor')
    w_max = int(math.sqrt(_DIAG_SHARE * working / itemsize))
    if max_width:
      w_max = min(w_max, int(max_width))
    bounds = [0]
    while bounds[-1] < n:
      s = bounds[-1]
      w = int(_PANEL_SHARE * working // ((n - s) * itemsize))
      w = max(min(w, w_max, n - s), min(min_panel, n - s))
      bounds.append(s + w)
    return cls(np.asarray(bounds, np.int64), working, itemsize)

  @classmethod
  def fixed(cls, n: int, width: int, itemsize: int = 8) -> 'PanelPlan':
    """Panels of `width` columns (the last one narrower), for tests.

    Example:
      >>> PanelPlan.fixed(10, 4).bounds.tolist()
      [0, 4, 8, 10]
    """
    bounds = list(range(0, n, width)) + [n]
    w = min(width, n)
    working = int((n * w + (1 << 16) + w * w) * itemsize)
    return cls(np.asarray(bounds, np.int64), working, itemsize)

  @property
  def n(self) -> int:
    return int(self.bounds[-1])

  @property
  def n_panels(self) -> int:
    return len(self.bounds) - 1

  def width(self, j: int) -> int:
    return int(self.bounds[j + 1] - self.bounds[j])

  @property
  def max_width(self) -> int:
    return int(np.max(np.diff(self.bounds)))

  @property
  def panel_elements(self) -> int:
    """Size of the largest panel (rows x columns)."""
    return int(np.max((self.n - self.bounds[:-1]) * np.diff(self.bounds)))

  @property
  def diag_elements(self) -> int:
    return self.max_width ** 2

  @property
  def stream_elements(self) -> int:
    """What is left of the working memory for pieces streamed from disk."""
    rest = (self.working_bytes // self.itemsize - self.panel_elements -
            self.diag_elements)
    return int(max(rest, _MIN_STREAM_ROWS * self.max_width))

  @property
  def required_bytes(self) -> int:
    """The least working memory these panels can be computed in."""
    return (self.panel_elements + self.diag_elements +
            _MIN_STREAM_ROWS * self.max_width) * self.itemsize

  def stream_rows(self, width: int) -> int:
    """Rows of an earlier panel read per piece."""
    return max(1, self.stream_elements // max(width, 1))

  def rhs_columns(self, n_rows: int) -> int:
    """Right-hand sides (test points) solved per forward pass."""
    return max(1, self.panel_elements // n_rows)

  def describe(self) -> str:
    widths = np.diff(self.bounds)
    return (f'{self.n_panels} panels of {int(widths.min())}-'
            f'{int(widths.max())} columns, '
            f'{format_bytes(self.working_bytes)} of buffers')


def panel_flops(plan: PanelPlan, j: int) -> float:
  """Flops of computing panel `j` (updates, POTRF and TRSM)."""
  s, e, n = int(plan.bounds[j]), int(plan.bounds[j + 1]), plan.n
  w, h = e - s, n - s
  return 2. * h * w * s + w ** 3 / 3. + (h - w) * w * w


class _Buffers:
  """The three preallocated buffers of a plan; pieces are views of them."""

  def __init__(self, plan: PanelPlan, dtype):
    self.panel = np.empty(plan.panel_elements, dtype)
    self.stream = np.empty(plan.stream_elements, dtype)
    self.diag = np.empty(plan.diag_elements, dtype)

  @staticmethod
  def view(buf, rows, cols):
    return buf[:rows * cols].reshape(rows, cols)


def factor(source: KernelSource, reg: float, path: str, plan: PanelPlan,
           identity: Optional[dict] = None, dtype=np.float64,
           progress=None, log=None, fsync: bool = True) -> PanelFile:
  """Factors ``source + reg I`` into the panel file `path` (resumable).

  Args:
    source: the ``(N, N)`` symmetric kernel (only its lower triangle is read).
    reg: the absolute value added to the diagonal.
    path: the panel file; an existing one made for the same `identity` and
      panel bounds is continued.
    plan: `PanelPlan`.
    identity: JSON-serialisable description of the matrix (default: the
      source's `identity()`); stored in the file with `reg` and the bounds.
    dtype: float64 (default) or float32.
    progress: a `WorkProgress` (flops).
    log: called with a line per panel (e.g. ``print``).
    fsync: fsync each panel before recording it.

  Returns:
    The open, complete `PanelFile`.

  Raises:
    NotPositiveDefiniteError: the matrix plus `reg` is not positive definite.
  """
  import os  # pylint: disable=g-import-not-at-top
  n = source.shape[0]
  ident = {'matrix': identity if identity is not None else source.identity(),
           'reg': float(reg).hex(), 'n': n, 'dtype': np.dtype(dtype).name,
           'bounds': plan.bounds.tolist()}
  if os.path.exists(path):
    pf = PanelFile.open(path, ident, verify=True, fsync=fsync)
    if log is not None:
      log(f'resuming the factorisation in {path}: {pf.n_done} of '
          f'{pf.n_panels} panels done')
  else:
    pf = PanelFile.create(path, plan.bounds, ident, dtype=dtype, fsync=fsync)
  try:
    _factor_panels(source, reg, pf, plan, dtype, progress, log)
  except BaseException:
    pf.close()
    raise
  return pf


def _factor_panels(source, reg, pf, plan, dtype, progress, log):
  n = plan.n
  bufs = None
  for j in range(plan.n_panels):
    if pf.is_done(j):
      if progress is not None:
        progress.add(panel_flops(plan, j))
      continue
    if bufs is None:
      bufs = _Buffers(plan, dtype)
    s, e = int(plan.bounds[j]), int(plan.bounds[j + 1])
    w, h = e - s, n - s
    a = bufs.view(bufs.panel, h, w)
    source.read(slice(s, n), slice(s, e), out=a)
    a[np.arange(w), np.arange(w)] += reg
    for k in range(j):
      sk, ek = int(plan.bounds[k]), int(plan.bounds[k + 1])
      wk = ek - sk
      d = bufs.view(bufs.diag, w, wk)
      pf.read_rows(k, s, e, out=d)                 # L[s:e, k-panel]
      step = plan.stream_rows(wk)
      for r0 in range(s, n, step):
        r1 = min(r0 + step, n)
        piece = bufs.view(bufs.stream, r1 - r0, wk)
        pf.read_rows(k, r0, r1, out=piece)
        _linalg.subtract_product_transposed(a[r0 - s:r1 - s], piece, d)
    try:
      _linalg.cholesky_lower(a[:w])
    except _linalg.NotPositiveDefiniteError:
      raise _linalg.NotPositiveDefiniteError(
          f'The training kernel plus {reg:.6g} on the diagonal is not '
          f'positive definite (the factorisation failed in columns {s}-{e}); '
          f'increase `diag_reg` (or compute the kernel in float64).') from None
    for i in range(w - 1):
      a[i, i + 1:] = 0.
    if h > w:
      _linalg.right_solve_lower_transposed(a[:w], a[w:])
    if not np.isfinite(a[w:].sum()):
      raise _linalg.NotPositiveDefiniteError(
          f'The factor of the training kernel plus {reg:.6g} on the diagonal '
          f'has non-finite entries in columns {s}-{e}; increase `diag_reg`.')
    pf.write_panel(j, a)
    if progress is not None:
      progress.add(panel_flops(plan, j))
    if log is not None:
      log(f'panel {j + 1}/{plan.n_panels} done (columns {s}-{e})')


def _forward(pf: PanelFile, plan: PanelPlan, b: np.ndarray, bufs: _Buffers):
  """``b <- L^{-1} b`` in place (`b`: (N, k) C-ordered)."""
  n = plan.n
  for k in range(plan.n_panels):
    sk, ek = int(plan.bounds[k]), int(plan.bounds[k + 1])
    wk = ek - sk
    d = bufs.view(bufs.diag, wk, wk)
    pf.read_rows(k, sk, ek, out=d)
    _linalg.solve_lower(d, b[sk:ek])
    step = plan.stream_rows(wk)
    for r0 in range(ek, n, step):
      r1 = min(r0 + step, n)
      piece = bufs.view(bufs.stream, r1 - r0, wk)
      pf.read_rows(k, r0, r1, out=piece)
      _linalg.subtract_product(b[r0:r1], piece, b[sk:ek])


def _backward(pf: PanelFile, plan: PanelPlan, b: np.ndarray, bufs: _Buffers):
  """``b <- L^{-T} b`` in place (`b`: (N, k) C-ordered, k small)."""
  n = plan.n
  for k in reversed(range(plan.n_panels)):
    sk, ek = int(plan.bounds[k]), int(plan.bounds[k + 1])
    wk = ek - sk
    step = plan.stream_rows(wk)
    for r0 in range(ek, n, step):
      r1 = min(r0 + step, n)
      piece = bufs.view(bufs.stream, r1 - r0, wk)
      pf.read_rows(k, r0, r1, out=piece)
      b[sk:ek] -= piece.T @ b[r0:r1]
    d = bufs.view(bufs.diag, wk, wk)
    pf.read_rows(k, sk, ek, out=d)
    _linalg.solve_lower_transposed(d, b[sk:ek])


def _log_det(pf: PanelFile, plan: PanelPlan, bufs: _Buffers) -> float:
  total = 0.
  for k in range(plan.n_panels):
    sk, ek = int(plan.bounds[k]), int(plan.bounds[k + 1])
    d = bufs.view(bufs.diag, ek - sk, ek - sk)
    pf.read_rows(k, sk, ek, out=d)
    total += float(np.sum(np.log(np.diagonal(d).astype(np.float64))))
  return 2. * total


def solve_with_factor(pf: PanelFile, plan: PanelPlan, y: np.ndarray,
                      eval_sets: List[EvalSet], reg: float, dtype=np.float64,
                      progress=None) -> RegResult:
  """Log marginal likelihood, ``alpha``, means and variances from a factor.

  Args:
    pf: the complete `PanelFile` of ``K + reg I``.
    plan: its `PanelPlan` (buffer sizes).
    y: ``(N, C)`` targets.
    eval_sets: the points to predict.
    reg: the regulariser (recorded in the result).
    dtype: arithmetic dtype.
    progress: a `WorkProgress` (flops).
  """
  n, c = plan.n, y.shape[1]
  bufs = _Buffers(plan, dtype)
  log_det = _log_det(pf, plan, bufs)
  # Forward passes: the targets ride along with the first chunk of tests.
  chunks = []
  for e in eval_sets:
    cols = max(1, plan.rhs_columns(n) - c)
    chunks += [(e, t0, min(t0 + cols, e.size)) for t0 in range(0, e.size,
                                                                 cols)]
  if not chunks:
    chunks = [(None, 0, 0)]
  z = None
  means = {e.name: np.empty((e.size, c)) for e in eval_sets}
  variances = {e.name: np.empty(e.size) for e in eval_sets
               if e.k_test_test_diag is not None}
  for i, (e, t0, t1) in enumerate(chunks):
    extra = c if i == 0 else 0
    width = extra + (t1 - t0)
    b = _Buffers.view(bufs.panel, n, width)
    if extra:
      b[:, :c] = y
    if e is not None and t1 > t0:
      _read_transposed(e.k_test_train, t0, t1, b[:, extra:], bufs.stream)
    _forward(pf, plan, b, bufs)
    if progress is not None:
      progress.add(float(n) * n * width)
    if i == 0:
      z = b[:, :c].astype(np.float64)
    if e is not None and t1 > t0:
      zt = b[:, extra:]
      means[e.name][t0:t1] = zt.T @ z
      if e.name in variances:
        variances[e.name][t0:t1] = e.k_test_test_diag[t0:t1] - np.einsum(
            'ij,ij->j', zt, zt, dtype=np.float64)
  alpha = np.array(z, dtype=dtype, order="C", copy=True)
  _backward(pf, plan, alpha, bufs)
  if progress is not None:
    progress.add(float(n) * n * c)
  return RegResult(float(reg), lml_from_solve(z, log_det),
                   alpha.astype(np.float64), means, variances)


def _read_transposed(source: KernelSource, t0: int, t1: int, out: np.ndarray,
                     scratch: np.ndarray):
  """``out[:, :] = source[t0:t1, :].T`` through `scratch`, in pieces."""
  n = source.shape[1]
  rows = t1 - t0
  step = max(1, scratch.size // max(rows, 1))
  for c0 in range(0, n, step):
    c1 = min(c0 + step, n)
    piece = _Buffers.view(scratch, rows, c1 - c0)
    source.read(slice(t0, t1), slice(c0, c1), out=piece)
    out[c0:c1] = piece.T


def assemble(pf: PanelFile) -> np.ndarray:
  """The whole lower-triangular factor as an array (small matrices, tests)."""
  n = pf.n
  out = np.zeros((n, n))
  for j in range(pf.n_panels):
    s, e = int(pf.bounds[j]), int(pf.bounds[j + 1])
    out[s:, s:e] = pf.read_rows(j, s, n)
  return np.tril(out)


def plan_from_bounds(bounds, budget: MemoryBudget, itemsize: int = 8,
                     where: str = 'a panel file') -> PanelPlan:
  """The plan of existing panel bounds in today's `budget` (resuming).

  Raises:
    MemoryLimitError: the panels do not fit the budget any more.
  """
  plan = PanelPlan(np.asarray(bounds, np.int64), int(budget.available),
                   itemsize)
  budget.require(plan.required_bytes, f'the panels planned in {where} '
                 f'(delete it to plan again for this limit)')
  return plan
