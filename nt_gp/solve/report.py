"""The per-`diag_reg` table and plot of a sweep (what ``nt-gp solve`` writes).

Example:
  >>> rows = sweep_rows([1e-3, 1e-2], [0.01, 0.1], {'test': [0.9, 0.95]},
  ...                   'accuracy', lml=[-10., -12.])
  >>> print(markdown_table(rows).splitlines()[2])
  | 0.001 | 0.01 | 0.9000 | -10 |
"""
import csv
from typing import Dict, List, Optional, Sequence

from nt_gp import extras

__all__ = ['sweep_rows', 'markdown_table', 'text_table', 'write_csv',
           'plot_sweep', 'can_plot', 'best_index']


def sweep_rows(diag_reg: Sequence[float], reg: Sequence[float],
               scores: Dict[str, Sequence[float]], metric: str,
               lml: Optional[Sequence[float]] = None,
               iterations: Optional[Sequence[int]] = None,
               elbo: Optional[Sequence[float]] = None) -> List[dict]:
  """One dict per value: ``diag_reg``, ``reg``, ``<set> <metric>``, ``log
  marginal likelihood``, ``Titsias bound`` (the Nyström GP's, GPflow
  SGPR's elbo), ``CG iterations`` (those given).

  Example:
    >>> sweep_rows([0.1], [0.2], {'val': [1.5]}, 'rmse')[0]['val rmse']
    1.5
  """
  rows = []
  for i, (d, r) in enumerate(zip(diag_reg, reg)):
    row = {'diag_reg': float(d), 'reg': float(r)}
    for name, values in scores.items():
      row[f'{name} {metric}'] = float(values[i])
    if lml is not None:
      row['log marginal likelihood'] = float(lml[i])
    if elbo is not None:
      row['Titsias bound'] = float(elbo[i])
    if iterations is not None:
      row['CG iterations'] = int(iterations[i])
    rows.append(row)
  return rows


def _fmt(key, v):
  if isinstance(v, int):
    return str(v)
  if 'accuracy' in key or 'rmse' in key:
    return f'{v:.4f}'
  if 'likelihood' in key or 'bound' in key:
    return f'{v:.6g}'
  return f'{v:.4g}'


def markdown_table(rows: List[dict]) -> str:
  """A Markdown table of `sweep_rows`."""
  keys = list(rows[0])
  lines = ['| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
  lines += ['| ' + ' | '.join(_fmt(k, r[k]) for k in keys) + ' |'
            for r in rows]
  return '\n'.join(lines)


def text_table(rows: List[dict], best: Optional[int] = None) -> str:
  """An aligned plain-text table; the `best` row is marked with ``*``.

  Example:
    >>> print(text_table(sweep_rows([0.1], [0.2], {'val': [1.5]}, 'rmse'), 0))
      diag_reg  reg     val rmse
    * 0.1       0.2     1.5000
  """
  keys = list(rows[0])
  cells = [keys] + [[_fmt(k, r[k]) for k in keys] for r in rows]
  widths = [max(len(c[i]) for c in cells) + 2 for i in range(len(keys))]
  out = []
  for j, c in enumerate(cells):
    mark = '* ' if best is not None and j - 1 == best else '  '
    out.append((mark + ''.join(v.ljust(w) for v, w in zip(c, widths))
                ).rstrip())
  return '\n'.join(out)


def write_csv(path: str, rows: List[dict]):
  """Writes `rows` as CSV (refuses to replace an existing file)."""
  with open(path, 'x', newline='') as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)


def best_index(rows: List[dict], metric: str) -> Optional[int]:
  """The row with the best validation score (else test score, else log
  marginal likelihood).

  Example:
    >>> best_index(sweep_rows([1, 2], [1, 2], {'val': [0.5, 0.7]},
    ...                       'accuracy'), 'accuracy')
    1
  """
  for key in (f'validation {metric}', f'val {metric}', f'test {metric}',
              'log marginal likelihood'):
    if key in rows[0]:
      values = [r[key] for r in rows]
      lower = key.endswith('rmse')
      pick = min if lower else max
      return values.index(pick(values))
  return None


def can_plot() -> bool:
  """Whether matplotlib (an optional dependency: ``pip install
  "nt_gp[plots]"``) is installed, so `plot_sweep` can draw.

  Example:
    >>> isinstance(can_plot(), bool)
    True
  """
  return not extras.missing('plots')


def plot_sweep(path: str, rows: List[dict], metric: str, title: str = ''):
  """Writes a PNG: the metric of each set (and the log marginal likelihood
  on a second axis) against ``diag_reg`` (needs matplotlib: `can_plot`)."""
  extras.require('plots', 'plot_sweep')
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  x = [r['diag_reg'] for r in rows]
  fig, ax = plt.subplots(figsize=(6.4, 4.2))
  positive = [v for v in x if v > 0]
  if positive and len(positive) < len(x):
    ax.set_xscale('symlog', linthresh=min(positive))
  elif positive:
    ax.set_xscale('log')
  label = 'accuracy' if metric == 'accuracy' else 'RMSE'
  for key in rows[0]:
    if key.endswith(f' {metric}'):
      ax.plot(x, [r[key] for r in rows], 'o-', label=key.replace(
          f' {metric}', ''))
  ax.set_xlabel('diag_reg')
  ax.set_ylabel(label)
  handles, labels = ax.get_legend_handles_labels()
  if 'log marginal likelihood' in rows[0]:
    ax2 = ax.twinx()
    ax2.plot(x, [r['log marginal likelihood'] for r in rows], 's--',
             color='gray', label='log marginal likelihood')
    ax2.set_ylabel('log marginal likelihood')
    h2, l2 = ax2.get_legend_handles_labels()
    handles, labels = handles + h2, labels + l2
  if handles:
    ax.legend(handles, labels, loc='best')
  ax.set_title(title or f'{label} vs diag_reg')
  fig.tight_layout()
  with open(path, 'xb') as f:
    fig.savefig(f, format='png', dpi=110)
  plt.close(fig)
