"""A finite network trained by gradient descent vs its NTK prediction.

An MLP is trained with full-batch gradient descent on MSE. Its outputs over
training are compared with `nt_gp.predict.gradient_descent_mse`, the closed
form of gradient flow in function space with the empirical NTK at
initialisation (`nt_gp.empirical_ntk_fn`, with `trace_axes=()`: the full
`(N, N, 10, 10)` kernel, no assumption that the logits are independent). A
small learning rate keeps discrete steps close to the gradient flow. For a
wide network the two agree along the whole trajectory. Saves the train/test losses of both over training
steps as a PNG.

Usage: python examples/function_space.py [--quick] [--out DIR]
"""
import argparse
import time

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

import _train  # pylint: disable=g-import-not-at-top
import digits  # pylint: disable=g-import-not-at-top
import nt_gp  # pylint: disable=g-import-not-at-top
from nt_gp import stax  # pylint: disable=g-import-not-at-top


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='tiny sizes')
  parser.add_argument('--out', default='examples-output',
                      help='folder for the PNG')
  args = parser.parse_args(argv)
  n_train, n_test, width, n_steps = ((32, 32, 128, 50) if args.quick else
                                     (256, 256, 1024, 2000))
  x_train, y_train, x_test, y_test = digits.load(n_train, n_test)

  init_fn, apply_fn, _ = stax.serial(stax.Dense(width, W_std=1.5, b_std=0.05),
                                     stax.Erf(),
                                     stax.Dense(10, W_std=0.5, b_std=0.05))
  _, params = init_fn(0, x_train.shape)

  start = time.time()
  ntk_fn = nt_gp.empirical_ntk_fn(
      apply_fn, trace_axes=(), vmap_axes=0,
      implementation=nt_gp.NtkImplementation.STRUCTURED_DERIVATIVES)
  k_train_train = ntk_fn(x_train, None, params)
  k_test_train = ntk_fn(x_test, x_train, params)
  ntk_seconds = time.time() - start
  lr = 0.1 * float(nt_gp.predict.max_learning_rate(k_train_train,
                                                   y_train.size))
  predictor = nt_gp.predict.gradient_descent_mse(k_train_train, y_train,
                                                 learning_rate=lr,
                                                 trace_axes=())

  steps = _train.log_steps(n_steps)
  fx_train_0 = apply_fn(params, x_train)
  fx_test_0 = apply_fn(params, x_test)
  ntk_train, ntk_test = (np.asarray(a) for a in predictor(
      t=steps.astype(np.float32), fx_train_0=fx_train_0, fx_test_0=fx_test_0,
      k_test_train=k_test_train))

  gd = _train.GradientDescent(apply_fn, params, x_train, y_train, lr)
  net_train, net_test = [], []
  start = time.time()
  for i in range(n_steps + 1):
    if i in steps:
      net_train.append(gd.outputs(x_train))
      net_test.append(gd.outputs(x_test))
    if i < n_steps:
      gd.step()
  train_seconds = time.time() - start
  net_train, net_test = np.stack(net_train), np.stack(net_test)

  print(f'digits: {n_train} train / {n_test} test, MLP of width {width}, '
        f'{n_steps} steps of learning rate {lr:.3g}')
  print(f'  empirical NTK (structured derivatives) in {ntk_seconds:.2f} s; '
        f'training in {train_seconds:.2f} s')
  print('  step      train loss (net / NTK)      test loss (net / NTK)   '
        'test acc (net / NTK)')
  for j in np.unique(np.linspace(0, len(steps) - 1, 6).astype(int)):
    print(f'  {steps[j]:5d}   {digits.loss(net_train[j], y_train):.5f} / '
          f'{digits.loss(ntk_train[j], y_train):.5f}      '
          f'{digits.loss(net_test[j], y_test):.5f} / '
          f'{digits.loss(ntk_test[j], y_test):.5f}      '
          f'{digits.accuracy(net_test[j], y_test):.3f} / '
          f'{digits.accuracy(ntk_test[j], y_test):.3f}')
  gap = np.sqrt(np.mean((net_test - ntk_test) ** 2, axis=(1, 2)))
  scale = np.sqrt(np.mean(net_test ** 2, axis=(1, 2)))
  print(f'  largest RMS gap between network and NTK test outputs: '
        f'{gap.max():.4f} (outputs RMS {scale.max():.4f})')

  fig, ax = plt.subplots(figsize=(6, 4))
  x = np.maximum(steps, 0.5)
  ax.loglog(x, digits.loss(net_train, y_train), 'C0-', label='train, network')
  ax.loglog(x, digits.loss(ntk_train, y_train), 'C0--', label='train, NTK')
  ax.loglog(x, digits.loss(net_test, y_test), 'C1-', label='test, network')
  ax.loglog(x, digits.loss(ntk_test, y_test), 'C1--', label='test, NTK')
  ax.set(xlabel='gradient descent step', ylabel='loss (MSE)',
         title=f'Width-{width} MLP vs its NTK prediction')
  ax.legend()
  path = digits.save_figure(fig, args.out, 'function_space')
  print(f'figure: {path}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
