"""End-to-end demo: infinitely wide networks as Gaussian processes.

Run with `nt-gp demo` (about 2-3 minutes on 2 CPU cores) or
`nt-gp demo --quick` (under a minute). Data: scikit-learn's bundled digits
(8x8 images) and diabetes (tabular regression); nothing is downloaded.

1. Kernels: the NNGP and NTK of a Myrtle-style CNN (`nt_gp.stax` 3x3 SAME
   convolutions, ReLU, average pooling, global average pooling, Dense) and of
   a 3-hidden-layer ReLU MLP, computed block by block with a progress bar.
2. GP regression with these fixed kernels (`nt_gp.predict.gp_inference`;
   noise and scale chosen by the marginal likelihood), classification as
   regression on centred one-hot targets.
3. GPflow `GPR` models with learned hyperparameters: the MLP's NNGP through
   `nt_gp.gpflow.NeuralKernel` (`W_std`, `b_std` and the noise variance
   learned by `gpflow.optimizers.Scipy`) and an RBF kernel
   (`SquaredExponential`, also learned) as the classical baseline.
4. A table of test accuracy (digits) and RMSE (diabetes), and PNG figures in
   the output folder: `accuracy.png`, `rmse.png`, `kernels.png`,
   `regression.png`, `marginal_likelihood.png`; the numbers in
   `results.tsv`.
"""
import os
import time
from typing import Dict

import numpy as np

from nt_gp import extras
from nt_gp.demo import data, kernels, models, plots
from nt_gp.demo.data import load_diabetes_split, load_digits_images
from nt_gp.demo.kernels import blockwise_kernel, mlp, myrtle_cnn

__all__ = ['run', 'SIZES', 'load_digits_images', 'load_diabetes_split',
           'blockwise_kernel', 'myrtle_cnn', 'mlp']

# (digits train, digits test, GPflow iterations); diabetes uses 330 / 112.
SIZES = {'quick': (200, 200, 10), 'full': (600, 400, 30)}
MLP_DEPTH = 3
MLP_W_STD, MLP_B_STD = 1.5, 0.05


def _gpflow_mlp_kernel(input_dim):
  """GPflow kernel: the MLP's NNGP with learnable `W_std` and `b_std`."""
  from nt_gp import gpflow as nt_gpflow  # pylint: disable=g-import-not-at-top
  del input_dim

  def architecture(W_std, b_std):
    return mlp(depth=MLP_DEPTH, W_std=W_std, b_std=b_std)

  return nt_gpflow.NeuralKernel(architecture, get='nngp', W_std=MLP_W_STD,
                                b_std=MLP_B_STD)


def _rbf_kernel(input_dim):
  import gpflow  # pylint: disable=g-import-not-at-top
  return gpflow.kernels.SquaredExponential(lengthscales=np.sqrt(input_dim))


def _table(digits: Dict[str, float], diabetes: Dict[str, float],
           baseline_rmse: float, chance: float) -> str:
  rows = list(digits) + [r for r in diabetes if r not in digits]
  width = max(len(r) for r in rows) + 2
  lines = [f'{"model":{width}s}{"digits accuracy":>17s}{"diabetes RMSE":>16s}',
           '-' * (width + 33)]
  for r in rows:
    acc = f'{digits[r]:.3f}' if r in digits else '-'
    err = f'{diabetes[r]:.1f}' if r in diabetes else '-'
    lines.append(f'{r:{width}s}{acc:>17s}{err:>16s}')
  lines.append(f'{"chance / predict the mean":{width}s}{chance:>17.3f}'
               f'{baseline_rmse:>16.1f}')
  return '\n'.join(lines)


def run(quick: bool = False, out_dir: str = 'demo-output',
        progress: bool = True) -> int:
  """Runs the demo, prints the results table and writes the figures.

  Args:
    quick: small sizes (under a minute on 2 cores).
    out_dir: folder for the PNG figures and `results.tsv`.
    progress: show progress bars (on stderr).

  Returns:
    0 (the command's exit status).

  Raises:
    ImportError: scikit-learn or matplotlib is not installed (they are the
      extra `nt_gp[demo]`), before any work.

  Example (what `nt-gp demo --quick` runs; tests/test_demo.py checks it):
    >>> from nt_gp.demo import run
    >>> run(quick=True, out_dir='demo-output')  # doctest: +SKIP
    0
  """
  # Before minutes of kernels: the data sets and figures need the extras.
  extras.require('demo', 'nt_gp.demo.run')
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.get_logger().setLevel('ERROR')
  t_start = time.time()
  n_train, n_test, maxiter = SIZES['quick' if quick else 'full']
  digits = load_digits_images(n_train, n_test)
  diabetes = load_diabetes_split()
  print(f'digits: {n_train} train / {n_test} test 8x8 images; diabetes: '
        f'{len(diabetes.x_train)} train / {len(diabetes.x_test)} test rows '
        f'(scikit-learn bundled data)', flush=True)

  # 1. Kernels, block by block.
  _, _, cnn_fn = myrtle_cnn()
  _, _, mlp_fn = mlp(MLP_DEPTH, MLP_W_STD, MLP_B_STD)
  k = {}
  t0 = time.time()
  block = 100
  k['cnn', 'train'] = blockwise_kernel(cnn_fn, digits.x_train, None,
                                       block=block, progress=progress,
                                       desc='Myrtle CNN train x train')
  k['cnn', 'test'] = blockwise_kernel(cnn_fn, digits.x_test, digits.x_train,
                                      block=block, progress=progress,
                                      desc='Myrtle CNN test x train ')
  t_cnn = time.time() - t0
  flat_train = digits.x_train.reshape(n_train, -1)
  flat_test = digits.x_test.reshape(n_test, -1)
  t0 = time.time()
  k['mlp', 'train'] = blockwise_kernel(mlp_fn, flat_train, None, block=200,
                                       dtype=np.float64, progress=progress,
                                       desc='MLP train x train       ')
  k['mlp', 'test'] = blockwise_kernel(mlp_fn, flat_test, flat_train,
                                      block=200, dtype=np.float64,
                                      progress=progress,
                                      desc='MLP test x train        ')
  k['mlp', 'reg_train'] = mlp_fn(diabetes.x_train, None, ('nngp', 'ntk'))
  k['mlp', 'reg_test'] = mlp_fn(diabetes.x_test, diabetes.x_train,
                                ('nngp', 'ntk'))
  t_mlp = time.time() - t0
  print(f'kernels: Myrtle CNN {t_cnn:.1f} s (float32, {block}x{block} '
        f'blocks), MLP {t_mlp:.1f} s', flush=True)

  # 2. Fixed kernels: GP posterior mean.
  acc, err, curves = {}, {}, {}
  predictions = {}
  for arch, title in (('cnn', 'Myrtle CNN'), ('mlp', 'MLP')):
    for get in ('nngp', 'ntk'):
      name = f'{title} {get.upper()}'
      fit = models.evidence_regression(k[arch, 'train'][get],
                                       k[arch, 'test'][get], digits.y_train)
      acc[name] = models.accuracy(fit.mean, digits.labels_test)
  for get in ('nngp', 'ntk'):
    name = f'MLP {get.upper()}'
    fit = models.evidence_regression(
        np.asarray(getattr(k['mlp', 'reg_train'], get)),
        np.asarray(getattr(k['mlp', 'reg_test'], get)), diabetes.y_train)
    err[name] = models.rmse(fit.mean, diabetes.y_test)
    predictions[name] = fit.mean

  # 3. Learned hyperparameters (GPflow).
  t0 = time.time()
  learned = 'MLP NNGP, learned W_std/b_std'
  for data_name, split, x_tr, x_te in (
      ('digits', digits, flat_train, flat_test),
      ('diabetes', diabetes, diabetes.x_train, diabetes.x_test)):
    for name, make in ((learned, _gpflow_mlp_kernel),
                       ('RBF, learned', _rbf_kernel)):
      kernel = make(x_tr.shape[1])
      fit = models.fit_gpflow(kernel, x_tr, split.y_train, x_te,
                              maxiter=maxiter)
      curves[f'{name} ({data_name})'] = fit.curve
      if data_name == 'digits':
        acc[name] = models.accuracy(fit.mean, split.labels_test)
      else:
        err[name] = models.rmse(fit.mean, split.y_test)
        predictions[name] = fit.mean
      if name == learned:
        values = {n: float(v.numpy()) for n, v in
                  kernel.hyperparameters.items()}
        print(f'  {data_name}: learned ' + ', '.join(
            f'{n}={v:.3f}' for n, v in sorted(values.items())) +
              f', noise variance {fit.diag_reg:.3g} '
              f'({len(fit.curve) - 1} iterations)', flush=True)
  t_gpflow = time.time() - t0
  print(f'GPflow fits: {t_gpflow:.1f} s', flush=True)

  baseline = models.rmse(np.full_like(diabetes.y_test,
                                      diabetes.y_train.mean()),
                         diabetes.y_test)
  print()
  print(_table(acc, err, baseline, 0.1))
  print()

  # 4. Files.
  os.makedirs(out_dir, exist_ok=True)
  paths = [
      plots.bar_chart(acc, 'test accuracy', f'digits ({n_train} training '
                      f'images)', out_dir, 'accuracy', baseline=0.1,
                      baseline_label='chance'),
      plots.bar_chart(err, 'test RMSE', 'diabetes (lower is better)',
                      out_dir, 'rmse', baseline=baseline,
                      baseline_label='predict the mean'),
      plots.kernel_heatmaps(
          {'Myrtle CNN NNGP': k['cnn', 'train']['nngp'],
           'Myrtle CNN NTK': k['cnn', 'train']['ntk'],
           'MLP NNGP': k['mlp', 'train']['nngp'],
           'RBF (length scale 8)': _rbf_gram(flat_train, 8.0)},
          digits.labels_train, out_dir),
      plots.predicted_vs_true(predictions, diabetes.y_test, out_dir),
      plots.likelihood_curves(curves, out_dir),
  ]
  with open(os.path.join(out_dir, 'results.tsv'), 'w') as f:
    f.write('dataset\tmodel\tmetric\tvalue\n')
    for name, v in acc.items():
      f.write(f'digits\t{name}\taccuracy\t{v:.4f}\n')
    for name, v in err.items():
      f.write(f'diabetes\t{name}\trmse\t{v:.4f}\n')
    f.write(f'diabetes\tpredict the mean\trmse\t{baseline:.4f}\n')
  for p in paths:
    print(f'figure: {p}')
  print(f'results: {os.path.join(out_dir, "results.tsv")}')
  print(f'total time: {time.time() - t_start:.1f} s')
  return 0


def _rbf_gram(x, lengthscale):
  sq = np.sum(x ** 2, 1)
  d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.)
  return np.exp(-0.5 * d2 / lengthscale ** 2)

