"""The block grid of a batched kernel computation.

A kernel between ``N1`` and ``N2`` inputs is cut into blocks of ``rows x cols``
inputs. Block ``(i, j)`` covers rows ``i*rows:(i+1)*rows`` and columns
``j*cols:(j+1)*cols`` of every ``(N1, N2, ...)`` output; the block size need
not divide ``N1`` or ``N2``: the last row and column of blocks are then
smaller (*ragged*), e.g. 50 000 inputs in blocks of 128 give 390 blocks of 128
and one of 80 per side. For a symmetric kernel
(``x2=None``) only the blocks with ``i <= j`` are computed: the diagonal blocks
call ``kernel_fn(x1_i, None)`` exactly like the unbatched call does, and each
off-diagonal block ``(i, j)`` also gives ``(j, i)`` by `mirror`.

This module is shared by in-memory batching (`nt_gp.batching`), the on-disk
store (`nt_gp.store`) and the distributed runners (`nt_gp.distributed`).
"""
import dataclasses
from typing import Iterator, List, Optional, Tuple

__all__ = ['BlockGrid', 'Task', 'mirror_perm']


@dataclasses.dataclass(frozen=True)
class Task:
  """One unit of work: block ``(i, j)`` of the grid.

  Attributes:
    i, j: block row and column.
    diagonal: True for a diagonal block of a symmetric kernel, computed as
      ``kernel_fn(x1_i, None)``.
    mirrored: True if the block ``(j, i)`` is obtained from this one by
      `mirror_perm` (symmetric kernels, ``i < j``).

  Example:
    >>> BlockGrid(4, 4, 2, 2, symmetric=True).task(1, 0)
    Task(i=0, j=1, diagonal=False, mirrored=True)
  """
  i: int
  j: int
  diagonal: bool = False
  mirrored: bool = False


@dataclasses.dataclass(frozen=True)
class BlockGrid:
  """Blocks of ``rows x cols`` covering an ``n1 x n2`` kernel.

  Args:
    n1, n2: numbers of rows and columns (``n2 == n1`` when ``symmetric``).
    rows, cols: block sizes, at most ``n1`` and ``n2`` (`BlockGrid.of`
      clamps a larger block size); they need not divide them: the last row
      (column) of blocks then has ``n1 % rows`` rows (``n2 % cols`` columns).
    symmetric: whether the kernel is ``kernel_fn(x1, None)`` (then only the
      upper triangle of square blocks is computed).

  Example:
    >>> grid = BlockGrid(n1=6, n2=6, rows=2, cols=2, symmetric=True)
    >>> grid.shape
    (3, 3)
    >>> [(t.i, t.j) for t in grid.tasks()]
    [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    >>> grid.rows_of(1)
    slice(2, 4, None)
    >>> ragged = BlockGrid(n1=5, n2=7, rows=2, cols=3)
    >>> ragged.shape, ragged.rows_of(2), ragged.block_shape(2, 2)
    ((3, 3), slice(4, 5, None), (1, 1))
  """
  n1: int
  n2: int
  rows: int
  cols: int
  symmetric: bool = False

  def __post_init__(self):
    for name in ('n1', 'n2', 'rows', 'cols'):
      v = getattr(self, name)
      if not isinstance(v, int) or v < 1:
        raise ValueError(f'`{name}` must be a positive int, got {v!r}.')
    if self.rows > self.n1 or self.cols > self.n2:
      raise ValueError(f'Blocks of {self.rows} x {self.cols} are larger than '
                       f'the {self.n1} x {self.n2} kernel; use BlockGrid.of, '
                       f'which clamps the block size.')
    if self.symmetric and (self.n1 != self.n2 or self.rows != self.cols):
      raise ValueError('A symmetric grid needs n1 == n2 and square blocks.')

  @classmethod
  def of(cls, n1: int, n2: int, block_size: int,
         symmetric: bool = False) -> 'BlockGrid':
    """The grid of blocks of `block_size` inputs (fewer where `n1`/`n2` is
    smaller).

    Example:
      >>> BlockGrid.of(3, 10, 4).block_shape(0, 2)
      (3, 2)
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or (
        block_size < 1):
      raise ValueError(f'The block size must be a positive int, got '
                       f'{block_size!r}.')
    return cls(n1, n2, min(block_size, n1), min(block_size, n2),
               symmetric=symmetric)

  @property
  def shape(self) -> Tuple[int, int]:
    """Number of blocks along rows and columns (the last ones may be
    smaller)."""
    return -(-self.n1 // self.rows), -(-self.n2 // self.cols)

  @property
  def ragged(self) -> bool:
    """Whether the last row or column of blocks is smaller."""
    return bool(self.n1 % self.rows or self.n2 % self.cols)

  @property
  def n_blocks(self) -> int:
    """Number of blocks in the grid (mirrored ones included)."""
    return self.shape[0] * self.shape[1]

  def rows_of(self, i: int) -> slice:
    """Row range of block row `i`."""
    return slice(i * self.rows, min((i + 1) * self.rows, self.n1))

  def cols_of(self, j: int) -> slice:
    """Column range of block column `j`."""
    return slice(j * self.cols, min((j + 1) * self.cols, self.n2))

  def block_shape(self, i: int, j: int) -> Tuple[int, int]:
    """``(rows, columns)`` of block ``(i, j)``."""
    r, c = self.rows_of(i), self.cols_of(j)
    return r.stop - r.start, c.stop - c.start

  def task(self, i: int, j: int) -> Task:
    """The task that computes block ``(i, j)`` (``(j, i)`` if mirrored)."""
    if self.symmetric and i > j:
      i, j = j, i
    return Task(i, j, diagonal=self.symmetric and i == j,
                mirrored=self.symmetric and i < j)

  def tasks(self) -> List[Task]:
    """All tasks in row-major order (upper triangle if symmetric)."""
    b1, b2 = self.shape
    return [self.task(i, j) for i in range(b1)
            for j in range(i if self.symmetric else 0, b2)]

  def blocks_of(self, task: Task) -> Iterator[Tuple[int, int]]:
    """The blocks that `task` fills: ``(i, j)`` and, if mirrored, ``(j, i)``."""
    yield task.i, task.j
    if task.mirrored:
      yield task.j, task.i

  def entries(self, task: Task) -> int:
    """Number of kernel entries (rows x columns) that `task` fills."""
    rows, cols = self.block_shape(task.i, task.j)
    return rows * cols * (2 if task.mirrored else 1)


def mirror_perm(rank: int, diagonal_spatial: Optional[bool]) -> Optional[list]:
  """Axis permutation turning block ``(i, j)`` of an output into ``(j, i)``.

  For outputs of shape ``(N1, N2, *spatial)`` in neural-tangents' layout the
  batch axes swap, and so do the two axes of each spatial pair
  ``(X1, X2, Y1, Y2, ...)`` when ``diagonal_spatial`` is False. Returns None
  when the layout is unknown (``diagonal_spatial=None`` and rank > 2), or the
  rank does not fit the layout.

  Example:
    >>> mirror_perm(2, None)
    [1, 0]
    >>> mirror_perm(6, False)
    [1, 0, 3, 2, 5, 4]
    >>> mirror_perm(4, True)
    [1, 0, 2, 3]
  """
  if rank < 2:
    return None
  if rank == 2:
    return [1, 0]
  if diagonal_spatial is None:
    return None
  if diagonal_spatial:
    return [1, 0] + list(range(2, rank))
  if (rank - 2) % 2:
    return None
  perm = [1, 0]
  for k in range((rank - 2) // 2):
    perm += [3 + 2 * k, 2 + 2 * k]
  return perm

