"""The demo's figures (matplotlib, Agg backend, PNG files).

Example:
  >>> import tempfile, os
  >>> path = bar_chart({'a': 0.5, 'b': 0.75}, 'accuracy', 'test',
  ...                  tempfile.mkdtemp(), 'bars')
  >>> os.path.basename(path)
  'bars.png'
"""
import os
from typing import Dict, List, Optional

import numpy as np

from nt_gp import extras

__all__ = ['bar_chart', 'kernel_heatmaps', 'predicted_vs_true',
           'likelihood_curves']


def _pyplot():
  extras.require('plots', 'The demo\'s figures')
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, out_dir, name):
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, f'{name}.png')
  fig.savefig(path, dpi=100, bbox_inches='tight')
  _pyplot().close(fig)
  return path


def bar_chart(values: Dict[str, float], ylabel: str, title: str,
              out_dir: str, name: str,
              baseline: Optional[float] = None,
              baseline_label: str = 'baseline') -> str:
  """Horizontal bars of `values`; returns the PNG's path.

  Example:
    >>> import tempfile
    >>> p = bar_chart({'x': 1.0}, 'RMSE', 't', tempfile.mkdtemp(), 'b',
    ...               baseline=2.0)
    >>> p.endswith('b.png')
    True
  """
  plt = _pyplot()
  names = list(values)
  fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.4))
  ax.barh(names, [values[n] for n in names], color='tab:blue')
  for i, n in enumerate(names):
    ax.text(values[n], i, f' {values[n]:.3g}', va='center')
  if baseline is not None:
    ax.axvline(baseline, color='tab:red', ls='--', label=baseline_label)
    ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.2), frameon=False)
  ax.invert_yaxis()
  ax.set_xlabel(ylabel)
  ax.set_title(title)
  ax.set_xlim(0, 1.15 * max(list(values.values()) + [baseline or 0]))
  return _save(fig, out_dir, name)


def kernel_heatmaps(kernels: Dict[str, np.ndarray], labels: np.ndarray,
                    out_dir: str, name: str = 'kernels') -> str:
  """Train-train kernels, rows/columns sorted by class, as correlations.

  Each kernel is shown as `K_ij / sqrt(K_ii K_jj)`, so that architectures of
  different scales share one colour range; the block structure along the
  diagonal shows how much more similar same-class digits are.

  Example:
    >>> import tempfile
    >>> k = np.eye(4) + 0.5
    >>> kernel_heatmaps({'k': k}, np.array([1, 0, 1, 0]),
    ...                 tempfile.mkdtemp()).endswith('kernels.png')
    True
  """
  plt = _pyplot()
  order = np.argsort(labels, kind='stable')
  fig, axes = plt.subplots(1, len(kernels),
                           figsize=(3.3 * len(kernels), 3.4), squeeze=False)
  for ax, (title, k) in zip(axes[0], kernels.items()):
    k = np.asarray(k)[np.ix_(order, order)]
    d = np.sqrt(np.diag(k))
    im = ax.imshow(k / np.outer(d, d), cmap='viridis', interpolation='nearest')
    bounds = np.flatnonzero(np.diff(labels[order])) + 0.5
    for b in bounds:
      ax.axhline(b, color='w', lw=0.3)
      ax.axvline(b, color='w', lw=0.3)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
  fig.suptitle('train kernels sorted by digit class (correlation)', y=1.04)
  return _save(fig, out_dir, name)


def predicted_vs_true(predictions: Dict[str, np.ndarray], y: np.ndarray,
                      out_dir: str, name: str = 'regression') -> str:
  """Scatter of predicted against true targets, one panel per model.

  Example:
    >>> import tempfile
    >>> y = np.arange(5.)[:, None]
    >>> predicted_vs_true({'m': y + 0.1}, y,
    ...                   tempfile.mkdtemp()).endswith('regression.png')
    True
  """
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(predictions),
                           figsize=(3.2 * len(predictions), 3.3),
                           squeeze=False, sharey=True)
  lo, hi = float(np.min(y)), float(np.max(y))
  for ax, (title, p) in zip(axes[0], predictions.items()):
    ax.scatter(y.ravel(), np.asarray(p).ravel(), s=8, alpha=0.7)
    ax.plot([lo, hi], [lo, hi], 'k--', lw=1)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel('true')
  axes[0][0].set_ylabel('predicted')
  fig.suptitle('diabetes: test-set predictions', y=1.04)
  return _save(fig, out_dir, name)


def likelihood_curves(curves: Dict[str, List[float]], out_dir: str,
                      name: str = 'marginal_likelihood') -> str:
  """Negative log marginal likelihood per optimiser iteration.

  Example:
    >>> import tempfile
    >>> likelihood_curves({'m': [3., 2., 1.5]},
    ...                   tempfile.mkdtemp()).endswith('likelihood.png')
    True
  """
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(6, 3.6))
  for title, c in curves.items():
    c = np.asarray(c, np.float64)
    ax.plot(np.arange(len(c)), c - c.min() + 1.0, marker='.', label=title)
  ax.set_yscale('log')
  ax.set_xlabel('L-BFGS-B iteration')
  ax.set_ylabel('-log marginal likelihood - min + 1')
  ax.set_title('learning hyperparameters and noise (GPflow)')
  ax.legend(fontsize=8)
  return _save(fig, out_dir, name)
