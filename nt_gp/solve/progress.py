"""A tqdm progress bar counted in floating-point operations (rate and ETA).

Example:
  >>> p = WorkProgress(2e9, 'factor', enabled=False)
  >>> p.add(1e9); p.done
  1000000000.0
  >>> p.close()
"""
import sys

import tqdm

__all__ = ['WorkProgress']


class WorkProgress:
  """Counts work in GFLOP (or another unit) and shows rate and ETA on stderr.

  Args:
    total: total work, in `scale` units (e.g. flops).
    desc: the bar's label.
    enabled: show the bar.
    unit: the displayed unit; `scale` units make one displayed unit.
    scale: e.g. ``1e9`` to show GFLOP.
    log: optional callable receiving one line per `note`.
  """

  def __init__(self, total: float, desc: str, enabled: bool = True,
               unit: str = 'GFLOP', scale: float = 1e9, log=None):
    self.scale = scale
    self.done = 0.
    self.log = log
    self.bar = tqdm.tqdm(total=total / scale, desc=desc, unit=unit,
                         disable=not enabled, file=sys.stderr,
                         dynamic_ncols=True, smoothing=0.05,
                         bar_format='{l_bar}{bar}| {n:.1f}/{total:.1f} '
                         '{unit} [{elapsed}<{remaining}, {rate_fmt}'
                         '{postfix}]')

  def add(self, work: float):
    """Records `work` (in `scale` units) as done."""
    self.done += work
    self.bar.update(work / self.scale)

  def note(self, text: str):
    """Shows `text` next to the bar (and logs it)."""
    self.bar.set_postfix_str(text, refresh=True)
    if self.log is not None:
      self.log(text)

  def close(self):
    self.bar.close()
