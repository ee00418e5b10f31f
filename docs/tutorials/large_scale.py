"""GP solves beyond memory: a diag_reg sweep from kernel stores with
`nt-gp solve`, and a Nyström NTK regression on many points.

  python docs/tutorials/large_scale.py [--quick] [--out DIR]

Part 1 runs, in this process, the commands the documentation shows
(`nt-gp kernel` for three kernel stores of scikit-learn's digits, then
`nt-gp solve` with a list of `--reg` values). Part 2 fits
`nt_gp.predict.gp_inference_nystrom` to a synthetic regression problem.
Writes `DIR/large_scale.png` and prints the tables.
"""
import argparse
import csv
import os
import time

import numpy as np

from nt_gp import predict, presets
from nt_gp.cli import main as nt_gp_main


def digits_files(folder, n_train, n_val, n_test):
  """Standardised digit images and labels, saved as .npy files."""
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  x, y = load_digits(return_X_y=True)
  order = np.random.RandomState(0).permutation(len(x))
  x = x[order] / 16.
  x = (x - x.mean(0)) / (x.std(0) + 1e-8)
  y = y[order]
  bounds = {'train': (0, n_train), 'val': (n_train, n_train + n_val),
            'test': (n_train + n_val, n_train + n_val + n_test)}
  for name, (a, b) in bounds.items():
    np.save(os.path.join(folder, f'x_{name}.npy'), x[a:b])
    np.save(os.path.join(folder, f'y_{name}.npy'), y[a:b])


def command(line, folder):
  """Runs one `nt-gp ...` line (as shown in the docs) in `folder`."""
  print(f'$ {line}', flush=True)
  cwd = os.getcwd()
  os.chdir(folder)
  try:
    code = nt_gp_main(line.split()[1:])
  finally:
    os.chdir(cwd)
  if code:
    raise SystemExit(f'`{line}` failed with exit code {code}')


def part1(folder, quick):
  n_train, n_val, n_test = (400, 100, 100) if quick else (1200, 300, 200)
  digits_files(folder, n_train, n_val, n_test)
  for line in (
      'nt-gp kernel --x1 x_train.npy --arch fcn --batch-size 100 '
      '--out train.h5 --no-progress',
      'nt-gp kernel --x1 x_val.npy --x2 x_train.npy --arch fcn '
      '--batch-size 100 --out val.h5 --no-progress',
      'nt-gp kernel --x1 x_test.npy --x2 x_train.npy --arch fcn '
      '--batch-size 100 --out test.h5 --no-progress',
      'nt-gp solve --train-kernel train.h5 --val-kernel val.h5 '
      '--test-kernel test.h5 --y-train y_train.npy --y-val y_val.npy '
      '--y-test y_test.npy --reg 1e-4,1e-3,1e-2,1e-1,1 --memory-limit 4G '
      '--out sweep --no-progress'):
    command(line, folder)
  with open(os.path.join(folder, 'sweep', 'sweep.csv')) as f:
    return list(csv.DictReader(f))


def regression_data(n, seed=0):
  rng = np.random.RandomState(seed)
  x = rng.randn(n, 8).astype(np.float32)
  f = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] * x[:, 2] + 0.5 * np.cos(x[:, 3])
  return x, f + 0.1 * rng.randn(n)


def part2(quick):
  n, m = (4000, 200) if quick else (200000, 2000)
  x, y = regression_data(n + 4000)
  x_train, y_train = x[:n], y[:n]
  x_val, y_val = x[n:n + 2000], y[n:n + 2000]
  x_test, y_test = x[n + 2000:], y[n + 2000:]
  _, _, kernel_fn = presets.build('fcn')
  regs = [1e-4, 1e-3, 1e-2]
  t = time.time()
  predict_fn = predict.gp_inference_nystrom(
      kernel_fn, x_train, y_train, diag_reg=regs, get='ntk', n_centres=m,
      validation=(x_val, y_val), memory_limit='4G', batch_size=2048)
  mean = predict_fn(x_test)
  seconds = time.time() - t
  print(f'Nyström NTK regression: {n} points, {m} centres, {seconds:.0f} s')
  solve = predict_fn.result.solve
  for i, reg in enumerate(regs):
    rmse = np.sqrt(np.mean((mean[i, :, 0] - y_test) ** 2))
    print(f'  diag_reg {reg:g}: {solve.iterations[i]} CG iterations (best '
          f'{solve.best_iteration[i]}), test RMSE {rmse:.4f}')
  return regs, np.array(solve.validation)


def figure(path, rows, regs, history):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
  x = [float(r['diag_reg']) for r in rows]
  for key in ('val accuracy', 'test accuracy'):
    a.plot(x, [float(r[key]) for r in rows], 'o-', label=key)
  a.set_xscale('log')
  a.set_xlabel('diag_reg')
  a.set_ylabel('accuracy')
  a2 = a.twinx()
  a2.plot(x, [float(r['log marginal likelihood']) for r in rows], 's--',
          color='gray', label='log marginal likelihood')
  a2.set_ylabel('log marginal likelihood')
  h1, l1 = a.get_legend_handles_labels()
  h2, l2 = a2.get_legend_handles_labels()
  a.legend(h1 + h2, l1 + l2, loc='lower left')
  a.set_title('digits, exact NNGP: nt-gp solve')
  for i, reg in enumerate(regs):
    b.plot(np.arange(1, len(history) + 1), history[:, i], 'o-',
           label=f'diag_reg {reg:g}')
  b.set_xlabel('CG iteration')
  b.set_ylabel('validation RMSE')
  b.set_title('Nyström NTK: early stopping')
  b.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  print(f'figure: {path}')


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='small sizes')
  parser.add_argument('--out', default='tutorial-output')
  parser.add_argument('--sweep-only', action='store_true',
                      help='only part 1 (the commands), no figure')
  args = parser.parse_args(argv)
  folder = os.path.join(args.out, 'large_scale')
  os.makedirs(folder, exist_ok=False)
  rows = part1(folder, args.quick)
  if args.sweep_only:
    return
  regs, history = part2(args.quick)
  figure(os.path.join(args.out, 'large_scale.png'), rows, regs, history)


if __name__ == '__main__':
  main()
