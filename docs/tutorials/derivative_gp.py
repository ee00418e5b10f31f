"""A GP on function values and gradients with an NNGP kernel.

If `f ~ GP(0, k)` with a twice-differentiable kernel, `f` and its derivative
`f'` are jointly Gaussian with

  cov(f(a), f(b))   = k(a, b)
  cov(f(a), f'(b))  = dk(a, b) / db
  cov(f'(a), f'(b)) = d²k(a, b) / da db

so observations of values *and* slopes condition the same GP. The kernel
here is the NNGP of `Dense -> Erf -> Dense -> Erf -> Dense`, and its input
derivatives come from `tf.GradientTape` through `kernel_fn`.

  python docs/tutorials/derivative_gp.py [--quick] [--out DIR]

Writes `DIR/derivative_gp.png` (posterior from values only, and from values
and slopes) and prints the error of each posterior mean.
"""
import argparse
import os

import numpy as np
import tensorflow as tf

from nt_gp import stax

W_STD, B_STD, NOISE = 1.5, 0.5, 1e-4


def network(w_std=W_STD, b_std=B_STD):
  """The network whose NNGP is the prior covariance (inputs of shape (N, 1))."""
  return stax.serial(stax.Dense(1, w_std, b_std), stax.Erf(),
                     stax.Dense(1, w_std, b_std), stax.Erf(),
                     stax.Dense(1, w_std, b_std))


def kernel_blocks(kernel_fn, a, b):
  """`k(a_i, b_j)`, `dk/db_j`, `dk/da_i` and `d²k/da_i db_j` for 1-D inputs.

  Args:
    kernel_fn: a stax `kernel_fn`.
    a, b: float64 arrays of shape (N, 1) and (M, 1).

  Returns:
    Four (N, M) arrays. Entry (i, j) of `k(a, b)` depends on `b` only through
    `b_j`, so the gradient of row sums with respect to `b` is `dk/db_j`; the
    same holds for column sums and `a_i`.
  """
  a, b = tf.constant(a), tf.constant(b)
  with tf.GradientTape(persistent=True) as outer:
    outer.watch(a)
    with tf.GradientTape(persistent=True) as inner:
      inner.watch([a, b])
      k = kernel_fn(a, b, 'nngp')
      rows = [tf.reduce_sum(k[i]) for i in range(k.shape[0])]
      cols = [tf.reduce_sum(k[:, j]) for j in range(k.shape[1])]
    dk_db = tf.stack([inner.gradient(r, b)[:, 0] for r in rows])
    dk_da = tf.stack([inner.gradient(c, a)[:, 0] for c in cols], axis=1)
    cols_db = [tf.reduce_sum(dk_db[:, j]) for j in range(k.shape[1])]
  d2k = tf.stack([outer.gradient(c, a)[:, 0] for c in cols_db], axis=1)
  del inner, outer
  return k.numpy(), dk_db.numpy(), dk_da.numpy(), d2k.numpy()


def posterior(kernel_fn, x, y, dy, t, noise=NOISE, use_slopes=True):
  """Posterior mean and variance of `f(t)` given `f(x) = y` (and `f'(x) =
  dy` if `use_slopes`), each observed with noise variance `noise`.

  Args:
    kernel_fn: a stax `kernel_fn` (the prior covariance is its NNGP).
    x, y, dy: (N,) training inputs, values and slopes.
    t: (M,) test inputs.

  Returns:
    `(mean, variance)`, each of shape (M,).
  """
  x, t = x[:, None], t[:, None]
  k_xx, dk_xx, _, d2k_xx = kernel_blocks(kernel_fn, x, x)
  k_tx, dk_tx, _, _ = kernel_blocks(kernel_fn, t, x)
  k_tt = np.diag(kernel_fn(t, None, 'nngp').numpy())
  if use_slopes:
    # [[cov(f, f), cov(f, f')], [cov(f', f), cov(f', f')]]
    cov = np.block([[k_xx, dk_xx], [dk_xx.T, d2k_xx]])
    cross = np.concatenate([k_tx, dk_tx], axis=1)
    targets = np.concatenate([y, dy])
  else:
    cov, cross, targets = k_xx, k_tx, y
  chol = np.linalg.cholesky(cov + noise * np.eye(len(cov)))
  alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, targets))
  v = np.linalg.solve(chol, cross.T)
  return cross @ alpha, k_tt - np.sum(v * v, axis=0)


def data(n_train=5):
  """Samples of `sin(2x)` and its slope `2 cos(2x)` on [-2, 2]."""
  x = np.linspace(-2., 2., n_train)
  return x, np.sin(2 * x), 2 * np.cos(2 * x)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='fewer points')
  parser.add_argument('--out', default='tutorial-output')
  args = parser.parse_args(argv)
  x, y, dy = data()
  t = np.linspace(-2.5, 2.5, 41 if args.quick else 201)
  kernel_fn = network()[2]
  results = {}
  for use_slopes in (False, True):
    mean, var = posterior(kernel_fn, x, y, dy, t, use_slopes=use_slopes)
    label = 'values and slopes' if use_slopes else 'values only'
    inside = np.abs(t) <= 2
    rmse = np.sqrt(np.mean((mean[inside] - np.sin(2 * t[inside])) ** 2))
    print(f'{label:18s} posterior mean: RMSE to sin(2x) on [-2, 2] '
          f'{rmse:.4f}; mean std {np.sqrt(np.maximum(var, 0)).mean():.4f}')
    results[label] = (mean, var)

  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
  for ax, (label, (mean, var)) in zip(axes, results.items()):
    std = np.sqrt(np.maximum(var, 0))
    ax.plot(t, np.sin(2 * t), 'k--', lw=1, label='sin(2x)')
    ax.plot(t, mean, 'C0', label='posterior mean')
    ax.fill_between(t, mean - 2 * std, mean + 2 * std, color='C0', alpha=0.2,
                    label='±2 std')
    ax.plot(x, y, 'ko', ms=4, label='observed values')
    if label == 'values and slopes':
      for xi, yi, si in zip(x, y, dy):
        ax.plot([xi - 0.2, xi + 0.2], [yi - 0.2 * si, yi + 0.2 * si], 'C3',
                lw=2)
      ax.plot([], [], 'C3', lw=2, label='observed slopes')
    ax.set_title(f'NNGP posterior from {label}')
    ax.set_xlabel('x')
    ax.legend(loc='lower left', fontsize=7)
  fig.tight_layout()
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, 'derivative_gp.png')
  fig.savefig(path, dpi=110)
  print(f'figure: {path}')


if __name__ == '__main__':
  main()
