"""Inference with an infinitely wide fully-connected network on digits.

The NNGP (Bayesian posterior of the infinite network) and the NTK (infinite
ensemble of infinite networks trained by gradient flow on MSE) predictions
come from `nt_gp.predict.gradient_descent_mse_ensemble`, both at infinite
training time and along training; the test loss and accuracy over training
time are saved as a PNG.

Usage: python examples/infinite_fcn.py [--quick] [--out DIR]
"""
import argparse
import time

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

import digits  # pylint: disable=g-import-not-at-top
import nt_gp  # pylint: disable=g-import-not-at-top
from nt_gp import stax  # pylint: disable=g-import-not-at-top


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='tiny sizes')
  parser.add_argument('--out', default='examples-output',
                      help='folder for the PNG')
  args = parser.parse_args(argv)
  n_train, n_test = (64, 64) if args.quick else (1000, 500)
  x_train, y_train, x_test, y_test = digits.load(n_train, n_test,
                                                 dtype=np.float64)

  _, _, kernel_fn = stax.serial(stax.Dense(512, W_std=1.5, b_std=0.05),
                                stax.Erf(),
                                stax.Dense(512, W_std=1.5, b_std=0.05),
                                stax.Erf(),
                                stax.Dense(10, W_std=1.5, b_std=0.05))
  start = time.time()
  predict_fn = nt_gp.predict.gradient_descent_mse_ensemble(
      kernel_fn, x_train, y_train, diag_reg=1e-4)
  times = np.logspace(-1, 5, 25)
  means = predict_fn(t=times, x_test=x_test, get=('nngp', 'ntk'))
  final = predict_fn(t=None, x_test=x_test, get=('nngp', 'ntk'),
                     compute_cov=True)
  seconds = time.time() - start
  print(f'digits: {n_train} train / {n_test} test; infinite 2-hidden-layer '
        f'Erf network, kernels and predictions in {seconds:.1f} s')
  for get in ('nngp', 'ntk'):
    g = getattr(final, get)
    std = float(np.sqrt(np.mean(np.diag(np.asarray(g.covariance)))))
    print(f'  {get.upper():4s} t=inf: test loss {digits.loss(g.mean, y_test):.4f}'
          f'  accuracy {digits.accuracy(g.mean, y_test):.3f}'
          f'  mean predictive std {std:.3f}')

  fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
  for get, style in (('nngp', '-'), ('ntk', '--')):
    m = np.asarray(getattr(means, get))
    axes[0].semilogx(times, digits.loss(m, y_test), style, label=get.upper())
    axes[1].semilogx(times, digits.accuracy(m, y_test), style,
                     label=get.upper())
  axes[0].set(xlabel='training time t', ylabel='test loss (MSE)')
  axes[1].set(xlabel='training time t', ylabel='test accuracy')
  for ax in axes:
    ax.legend()
  fig.suptitle('Infinite-width network on digits: posterior means over time')
  path = digits.save_figure(fig, args.out, 'infinite_fcn')
  print(f'figure: {path}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
