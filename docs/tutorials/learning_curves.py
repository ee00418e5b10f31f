"""Learning curves on digits: test error vs training set size, NNGP vs NTK vs depth.

For fully connected ReLU networks of several depths, the NNGP and NTK
posterior means (`nt_gp.predict.gp_inference`) are computed on nested
training sets of growing size drawn from scikit-learn's bundled digits; the
kernels are computed once for the largest set and sliced.

  python docs/tutorials/learning_curves.py [--quick] [--out DIR]

Writes `DIR/learning_curves.png` and prints the table of test errors.
"""
import argparse
import os

import numpy as np

from nt_gp import predict, stax


def mlp(depth):
  layers = [stax.Dense(512, 1.5, 0.05), stax.Relu()] * depth
  return stax.serial(*layers, stax.Dense(1, 1.5, 0.05))


def load(n_train, n_test, seed=0):
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  x, labels = load_digits(return_X_y=True)
  idx = np.random.RandomState(seed).permutation(len(x))
  x = x[idx].astype(np.float64)
  x = (x - x.mean(0)) / (x.std(0) + 1e-8)
  x /= np.sqrt(np.mean(x ** 2, axis=1, keepdims=True))
  y = np.eye(10)[labels[idx]] - 0.1
  tr, te = slice(0, n_train), slice(len(x) - n_test, len(x))
  return x[tr], y[tr], labels[idx][tr], x[te], labels[idx][te]


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='small sizes')
  parser.add_argument('--out', default='tutorial-output')
  args = parser.parse_args(argv)
  if args.quick:
    sizes, depths, n_test = [20, 40, 80, 160], [1, 4], 200
  else:
    sizes, depths, n_test = [10, 20, 40, 80, 160, 320, 640, 1280], [1, 2, 4,
                                                                    8], 500
  x_train, y_train, _, x_test, labels_test = load(max(sizes), n_test)

  errors = {}
  for depth in depths:
    _, _, kernel_fn = mlp(depth)
    k_train = kernel_fn(x_train, None, ('nngp', 'ntk'))
    k_test = kernel_fn(x_test, x_train, ('nngp', 'ntk'))
    for get in ('nngp', 'ntk'):
      ktt = getattr(k_train, get).numpy()
      kte = getattr(k_test, get).numpy()
      for n in sizes:
        predict_fn = predict.gp_inference(ktt[:n, :n], y_train[:n],
                                          diag_reg=1e-4)
        mean = predict_fn(get, kte[:, :n]).numpy()
        errors[get, depth, n] = float(np.mean(mean.argmax(1) != labels_test))

  header = 'kernel depth ' + ''.join(f'{n:>7d}' for n in sizes)
  print('test error (fraction misclassified) vs training set size')
  print(header)
  for get in ('nngp', 'ntk'):
    for depth in depths:
      print(f'{get.upper():6s} {depth:5d} ' + ''.join(
          f'{errors[get, depth, n]:7.3f}' for n in sizes))

  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.5, 4.2))
  colors = plt.cm.viridis(np.linspace(0, 0.85, len(depths)))
  for depth, color in zip(depths, colors):
    for get, style in (('nngp', '-'), ('ntk', '--')):
      ax.plot(sizes, [errors[get, depth, n] for n in sizes], style,
              color=color, marker='o', ms=3,
              label=f'{get.upper()}, depth {depth}')
  ax.set_xscale('log')
  ax.set_yscale('log')
  ax.set_xlabel('training set size')
  ax.set_ylabel('test error')
  ax.set_title(f'digits, ReLU MLP kernels ({n_test} test images)')
  ax.legend(fontsize=7, ncol=2)
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, 'learning_curves.png')
  fig.savefig(path, dpi=90, bbox_inches='tight')
  print(f'figure: {path}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
