"""A finite network and its linearization trained side by side.

`nt_gp.linearize(apply_fn, params_0)` is the first-order Taylor expansion of
the network in its weights around the initialisation. Both the network and
its linearization are trained with the same full-batch gradient descent on
MSE; the example reports how far their outputs and losses drift apart and
how little the weights move (relative to their initial norm). Saves both
losses and the output divergence over training as a PNG.

Usage: python examples/weight_space.py [--quick] [--out DIR]
"""
import argparse
import time

import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import tensorflow as tf  # pylint: disable=g-import-not-at-top

import _train  # pylint: disable=g-import-not-at-top
import digits  # pylint: disable=g-import-not-at-top
import nt_gp  # pylint: disable=g-import-not-at-top
from nt_gp import stax  # pylint: disable=g-import-not-at-top


def _flat(params):
  return np.concatenate([np.ravel(p) for p in tf.nest.flatten(params)
                         if p is not None])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--quick', action='store_true', help='tiny sizes')
  parser.add_argument('--out', default='examples-output',
                      help='folder for the PNG')
  args = parser.parse_args(argv)
  n_train, n_test, width, n_steps = ((32, 32, 128, 50) if args.quick else
                                     (256, 256, 1024, 1000))
  x_train, y_train, x_test, y_test = digits.load(n_train, n_test)

  init_fn, apply_fn, _ = stax.serial(stax.Dense(width, W_std=1.5, b_std=0.05),
                                     stax.Erf(),
                                     stax.Dense(10, W_std=0.5, b_std=0.05))
  _, params = init_fn(0, x_train.shape)
  apply_lin = nt_gp.linearize(apply_fn, params)
  k = nt_gp.empirical_ntk_fn(apply_fn, vmap_axes=0, implementation=3)(
      x_train, None, params)
  lr = 0.5 * float(nt_gp.predict.max_learning_rate(k, y_train.size))

  net = _train.GradientDescent(apply_fn, params, x_train, y_train, lr)
  lin = _train.GradientDescent(apply_lin, params, x_train, y_train, lr)
  steps = _train.log_steps(n_steps)
  w0 = _flat(params)
  rec = {key: [] for key in ('net_train', 'lin_train', 'net_test', 'lin_test',
                             'gap', 'dw_net')}
  start = time.time()
  for i in range(n_steps + 1):
    if i in steps:
      fn_tr, fl_tr = net.outputs(x_train), lin.outputs(x_train)
      fn_te, fl_te = net.outputs(x_test), lin.outputs(x_test)
      rec['net_train'].append(digits.loss(fn_tr, y_train))
      rec['lin_train'].append(digits.loss(fl_tr, y_train))
      rec['net_test'].append(digits.loss(fn_te, y_test))
      rec['lin_test'].append(digits.loss(fl_te, y_test))
      rec['gap'].append(np.sqrt(np.mean((fn_te - fl_te) ** 2)))
      rec['dw_net'].append(np.linalg.norm(_flat(net.params) - w0) /
                           np.linalg.norm(w0))
    if i < n_steps:
      net.step()
      lin.step()
  seconds = time.time() - start
  rec = {key: np.array(v) for key, v in rec.items()}
  acc_net = digits.accuracy(net.outputs(x_test), y_test)
  acc_lin = digits.accuracy(lin.outputs(x_test), y_test)

  print(f'digits: {n_train} train / {n_test} test, MLP of width {width}, '
        f'{n_steps} steps of learning rate {lr:.3g} ({seconds:.1f} s for '
        f'both)')
  print('  step   train loss (net / linearized)   test loss (net / '
        'linearized)   RMS output gap   |w - w0| / |w0|')
  for j in np.unique(np.linspace(0, len(steps) - 1, 6).astype(int)):
    print(f'  {steps[j]:5d}   {rec["net_train"][j]:.5f} / '
          f'{rec["lin_train"][j]:.5f}             {rec["net_test"][j]:.5f} / '
          f'{rec["lin_test"][j]:.5f}            {rec["gap"][j]:.5f}'
          f'          {rec["dw_net"][j]:.4f}')
  print(f'  final test accuracy: network {acc_net:.3f}, linearized '
        f'{acc_lin:.3f}; largest RMS output gap {rec["gap"].max():.4f}')

  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  x = np.maximum(steps, 0.5)
  axes[0].loglog(x, rec['net_train'], 'C0-', label='train, network')
  axes[0].loglog(x, rec['lin_train'], 'C0--', label='train, linearized')
  axes[0].loglog(x, rec['net_test'], 'C1-', label='test, network')
  axes[0].loglog(x, rec['lin_test'], 'C1--', label='test, linearized')
  axes[0].set(xlabel='gradient descent step', ylabel='loss (MSE)')
  axes[0].legend()
  axes[1].semilogx(x, rec['gap'], 'C2-', label='RMS test output gap')
  axes[1].semilogx(x, rec['dw_net'], 'C3:', label='|w - w0| / |w0| (network)')
  axes[1].set(xlabel='gradient descent step', ylabel='divergence')
  axes[1].legend()
  fig.suptitle(f'Width-{width} MLP vs its linearization in weight space')
  path = digits.save_figure(fig, args.out, 'weight_space')
  print(f'figure: {path}')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
