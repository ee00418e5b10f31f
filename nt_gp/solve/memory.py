"""Memory budgets: parsing a limit such as ``'4G'`` and planning buffers in it.

A memory limit bounds the **whole process** as `top` shows it (its resident
set), not only the solver's arrays: the solver measures what the process
already holds (Python, NumPy, TensorFlow, the inputs: about 0.7 GB once
TensorFlow is imported) and plans its buffers in what is left, minus a margin
for HDF5's and BLAS's own buffers.

Example:
  >>> parse_memory('1.5G')
  1610612736
  >>> parse_memory(2 ** 20)
  1048576
  >>> format_bytes(3 * 2 ** 30)
  '3.00 GiB'
"""
import os
import re
from typing import Optional, Union

__all__ = ['parse_memory', 'format_bytes', 'current_rss', 'MemoryBudget',
           'MemoryLimitError']

_UNITS = {'': 1, 'K': 2 ** 10, 'M': 2 ** 20, 'G': 2 ** 30, 'T': 2 ** 40}
# HDF5 type-conversion and chunk buffers, BLAS threads' workspaces, small
# temporaries: kept free below the limit.
MARGIN_BYTES = 48 * 2 ** 20
# Without a limit: this share of the memory the system reports available.
DEFAULT_SHARE = 0.8


class MemoryLimitError(ValueError):
  """The memory limit is too small for the smallest piece of work.

  Example:
    >>> issubclass(MemoryLimitError, ValueError)
    True
  """


def parse_memory(limit: Union[str, int, float]) -> int:
  """Bytes from ``'512M'``, ``'4G'``, ``'4GiB'``, ``'1.5T'`` or a number.

  Units are binary (``G`` = 2**30 bytes, as `ulimit` and Docker read them);
  ``B``, ``iB`` suffixes and lower case are accepted.

  Raises:
    ValueError: not a positive amount.

  Example:
    >>> parse_memory('512m'), parse_memory('4GiB') == 4 * 2 ** 30
    (536870912, True)
  """
  if isinstance(limit, bool):
    raise TypeError(f'A memory limit must be a number of bytes or a string '
                    f'such as "4G", got {limit!r}.')
  if isinstance(limit, (int, float)):
    value = float(limit)
  elif isinstance(limit, str):
    m = re.fullmatch(r'\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*'
                     r'([kKmMgGtT]?)(?:i?[bB])?\s*', limit)
    if m is None:
      raise ValueError(f'Cannot read the memory limit {limit!r}: give bytes '
                       f'or a number with a unit, e.g. "512M", "4G", "1.5T".')
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
  else:
    raise TypeError(f'A memory limit must be a number of bytes or a string '
                    f'such as "4G", got {type(limit).__name__}.')
  if not value > 0 or value != value or value == float('inf'):
    raise ValueError(f'The memory limit must be positive and finite, got '
                     f'{limit!r}.')
  return int(value)


def format_bytes(n: float) -> str:
  """``'1.50 GiB'``-style text for a number of bytes.

  Example:
    >>> format_bytes(1536), format_bytes(5 * 2 ** 20)
    ('1.50 KiB', '5.00 MiB')
  """
  n = float(n)
  for unit in ('B', 'KiB', 'MiB', 'GiB'):
    if abs(n) < 1024 or unit == 'GiB':
      return f'{n:.0f} B' if unit == 'B' else f'{n:.2f} {unit}'
    n /= 1024
  return f'{n:.2f} GiB'  # pragma: no cover


def current_rss() -> int:
  """This process's resident memory now, in bytes (0 where unknown).

  Example:
    >>> current_rss() > 0
    True
  """
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    import resource  # pylint: disable=g-import-not-at-top
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  except (ImportError, OSError):  # pragma: no cover
    return 0


class MemoryBudget:
  """What a solver may allocate under a process-wide memory limit.

  Args:
    limit: bytes, a string such as ``'4G'``, or None (no limit: the budget is
      80% of what the machine has available now).
    baseline: bytes the process already uses (default: measured now).

  Attributes:
    limit: the limit in bytes (None if none was given).
    baseline: resident bytes when the budget was made.
    available: bytes the solver's own buffers may use.

  Example:
    >>> b = MemoryBudget('3G', baseline=2 ** 30)
    >>> b.available == 2 * 2 ** 30 - MARGIN_BYTES
    True
    >>> b.fits(2 ** 30), b.fits(3 * 2 ** 30)
    (True, False)
  """

  def __init__(self, limit: Optional[Union[str, int, float]] = None,
               baseline: Optional[int] = None):
    self.baseline = current_rss() if baseline is None else int(baseline)
    if limit is None:
      self.limit = None
      self.available = max(int(DEFAULT_SHARE * _available_system_memory())
                           - MARGIN_BYTES, 0)
    else:
      self.limit = parse_memory(limit)
      self.available = self.limit - self.baseline - MARGIN_BYTES

  def fits(self, nbytes: float) -> bool:
    """Whether `nbytes` of buffers fit."""
    return nbytes <= self.available

  def require(self, nbytes: float, what: str):
    """Raises `MemoryLimitError` unless `nbytes` fit, saying what to do.

    Example:
      >>> MemoryBudget('1G', baseline=0).require(2 ** 31, 'one tile')
      Traceback (most recent call last):
      ...
      nt_gp.solve.memory.MemoryLimitError: The memory limit 1.00 GiB is too small for one tile (2.00 GiB), on top of the 0 B this process already uses; raise the limit to at least 2.05 GiB.
    """
    if self.fits(nbytes):
      return
    need = self.baseline + MARGIN_BYTES + nbytes
    limit = 'no limit' if self.limit is None else format_bytes(self.limit)
    raise MemoryLimitError(
        f'The memory limit {limit} is too small for {what} '
        f'({format_bytes(nbytes)}), on top of the {format_bytes(self.baseline)}'
        f' this process already uses; raise the limit to at least '
        f'{format_bytes(need)}.')

  def __repr__(self):
    limit = 'None' if self.limit is None else format_bytes(self.limit)
    return (f'MemoryBudget(limit={limit}, baseline='
            f'{format_bytes(self.baseline)}, available='
            f'{format_bytes(self.available)})')


def _available_system_memory() -> int:
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_AVPHYS_PAGES')
  except (ValueError, OSError, AttributeError):  # pragma: no cover
    return 8 * 2 ** 30
