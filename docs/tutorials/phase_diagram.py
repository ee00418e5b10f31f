"""Phase diagram of deep Erf networks over (W_std, b_std): order, chaos and trainability.

Signals propagate through a deep network through its NNGP kernel map. For
two inputs with correlation `c0`, the correlation of the outputs of `L`
layers, `c_L`, either tends to 1 (ordered phase: all inputs look alike, the
network cannot tell them apart) or to a fixed point `c* < 1` (chaotic phase:
nearby inputs decorrelate). Near `c = 1` the correlation map behaves like
`1 - c_{l+1} = chi_1 (1 - c_l)`, so `log((1 - c_L) / (1 - c0)) / L` estimates
`log chi_1`, and deep networks are trainable close to the critical line
`chi_1 = 1` (the edge of chaos), where signals neither collapse nor explode.

Everything is computed with `kernel_fn` of a depth-`L` `stax` network over a
grid of `(W_std, b_std)`; the hyperparameters are `tf.Variable`s, so the
kernel is traced once and re-evaluated for each grid point. The squared
length `q*` of the fixed point is read from the kernel's `cov1`.

  python docs/tutorials/phase_diagram.py [--quick] [--out DIR]

Writes `DIR/phase_diagram.png` and prints the critical `W_std` for a few
`b_std`.
"""
import argparse
import os

import numpy as np
import tensorflow as tf

from nt_gp import stax


def inputs(c_values, dim=2):
  """Unit-norm (times sqrt(dim)) 2-D inputs: x0 and one per correlation."""
  rows = [[1., 0.]]
  for c in c_values:
    rows.append([c, np.sqrt(1. - c ** 2)])
  return np.sqrt(dim) * np.asarray(rows)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='small grid')
  parser.add_argument('--out', default='tutorial-output')
  args = parser.parse_args(argv)
  n_w, n_b, depth = (12, 8, 16) if args.quick else (48, 32, 48)
  w_grid = np.linspace(0.5, 3.0, n_w)
  b_grid = np.linspace(0.0, 1.0, n_b)

  w_std = tf.Variable(1.0, dtype=tf.float64)
  b_std = tf.Variable(0.1, dtype=tf.float64)
  _, _, kernel_fn = stax.serial(
      *[stax.Dense(1, w_std, b_std), stax.Erf()] * depth,
      stax.Dense(1, w_std, b_std))
  eps = 1e-3
  x = inputs([0.5, 1. - eps])

  c_half = np.zeros((n_b, n_w))      # c_L for c0 = 0.5
  log_chi = np.zeros((n_b, n_w))     # log((1 - c_L) / eps) / L
  q_star = np.zeros((n_b, n_w))
  for i, b in enumerate(b_grid):
    for j, w in enumerate(w_grid):
      w_std.assign(w)
      b_std.assign(b)
      k = kernel_fn(x, None, 'nngp').numpy()
      d = np.sqrt(np.diag(k))
      corr = k / np.outer(d, d)
      c_half[i, j] = corr[0, 1]
      log_chi[i, j] = np.log(max(1. - corr[0, 2], 1e-16) / eps) / depth
      q_star[i, j] = k[0, 0]

  print(f'depth {depth}: critical W_std (chi_1 = 1, sign change of log chi_1)')
  for i in np.linspace(0, n_b - 1, 4).astype(int):
    row = log_chi[i]
    crossing = np.flatnonzero(np.diff(np.sign(row)) > 0)
    if len(crossing):
      j = crossing[0]
      w_c = np.interp(0., row[j:j + 2], w_grid[j:j + 2])
      print(f'  b_std={b_grid[i]:.2f}: W_std ~ {w_c:.2f}')
    else:
      print(f'  b_std={b_grid[i]:.2f}: no crossing in the grid')

  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
  extent = (w_grid[0], w_grid[-1], b_grid[0], b_grid[-1])
  panels = (
      (c_half, f'output correlation c_L (c0 = 0.5, L = {depth})', 'viridis',
       None),
      (np.clip(log_chi, -0.5, 0.5), 'log chi_1 estimate (red: chaotic)',
       'RdBu_r', (-0.5, 0.5)),
      (np.log10(q_star), 'log10 q* (output variance)', 'magma', None),
  )
  for ax, (z, title, cmap, lims) in zip(axes, panels):
    im = ax.imshow(z, origin='lower', extent=extent, aspect='auto',
                   cmap=cmap, vmin=None if lims is None else lims[0],
                   vmax=None if lims is None else lims[1])
    ax.contour(w_grid, b_grid, log_chi, levels=[0.], colors='k',
               linewidths=1.2)
    ax.set_xlabel('W_std')
    ax.set_ylabel('b_std')
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax)
  fig.suptitle('Erf networks: ordered (left of the black line, chi_1 < 1) '
               'and chaotic phases')
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, 'phase_diagram.png')
  fig.savefig(path, dpi=90, bbox_inches='tight')
  print(f'figure: {path}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
