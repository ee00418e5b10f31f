"""GPflow `GPR` fit: `nt_gp.gpflow.NeuralKernel` vs GPflow's `ArcCosine`.

Both kernels describe an infinitely wide one-hidden-layer ReLU network:

* `NeuralKernel` (NNGP) of `Dense(W_std, b_std) -> Relu -> Dense(W_std,
  b_std)`: 2 kernel hyperparameters, computed by the stax engine;
* `gpflow.kernels.ArcCosine(order=1)`: the arc-cosine kernel of Cho & Saul
  with `variance`, `weight_variances`, `bias_variance` (3 hyperparameters),
  GPflow's closed form (with cos θ clipped, see `ClippedArcCosine`: GPflow's
  `K` gives NaN on this data).

They differ in parameterisation (the stax kernel also has a readout bias), so
L-BFGS takes different paths and may use different numbers of function
evaluations for the same 50 iterations. The script therefore reports both the
wall time of the whole 50-iteration fit and the cost per loss-and-gradient
evaluation (fit time / evaluations, and a separate timing of one compiled
evaluation), and the ratio of each. Data: scikit-learn's bundled digits
(1,797 images, 64 features, standardised), extended to N = 2,000 with
jittered copies; target: the digit value, standardised.

Usage:
  python benchmarks/gpflow_fit.py [--n 2000] [--iters 50] [--repeats 3]
                                  [--out docs/benchmarks/gpflow_fit.md]
"""
import argparse
import os
import platform
import statistics
import sys
import time

import gpflow
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

from nt_gp import stax
from nt_gp.gpflow import NeuralKernel

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import DOCS, Report  # pylint: disable=g-import-not-at-top,wrong-import-position


def make_data(n):
  digits = load_digits()
  X = digits.data.astype(np.float64)
  y = digits.target.astype(np.float64)
  rng = np.random.RandomState(0)
  extra = n - len(X)
  if extra > 0:
    idx = rng.randint(0, len(X), extra)
    X = np.concatenate([X, X[idx] + rng.randn(extra, X.shape[1])])
    y = np.concatenate([y, y[idx]])
  X, y = X[:n], y[:n]
  X = (X - X.mean(0)) / (X.std(0) + 1e-8)
  y = (y - y.mean()) / y.std()
  return X, y[:, None]


def relu_net(W_std, b_std):
  return stax.serial(stax.Dense(1, W_std, b_std), stax.Relu(),
                     stax.Dense(1, W_std, b_std))


W_STD, B_STD = 1.0, 0.1


class ClippedArcCosine(gpflow.kernels.ArcCosine):
  """GPflow's `ArcCosine` with cos θ clipped to [-1, 1] before its jitter.

  On this data GPflow's own `K` returns NaN on a diagonal entry: the
  numerator (a matrix product) and the denominator (per-row sums) round
  differently, cos θ lands a few ulps above 1, and its 1e-15 jitter does not
  bring it back below 1. The clip is one extra elementwise op; the rest is
  GPflow's formula.
  """

  def K(self, X, X2=None):
    xd = tf.sqrt(self._diag_weighted_product(X))
    x2d = xd if X2 is None else tf.sqrt(self._diag_weighted_product(X2))
    num = self._full_weighted_product(X, X2)
    cos = tf.clip_by_value(num / xd[:, None] / x2d[None, :], -1., 1.)
    jitter = 1e-15
    theta = tf.acos(jitter + (1 - 2 * jitter) * cos)
    return (self.variance / np.pi * self._J(theta) *
            xd[:, None]**self.order * x2d[None, :]**self.order)


def make_kernel(name, d):
  """Both kernels start from the same covariance (up to the readout bias).

  The stax NNGP is `W² sqrt(q1 q2) J1(θ) / (2π) + b²` with `q = W² x·x / d +
  b²`; `ArcCosine(order=1)` is `σ² sqrt(r1 r2) J1(θ) / π` with `r = w x·x +
  b_var`, so `w = W²/d`, `b_var = b²`, `σ² = W²/2` match.
  """
  if name == 'NeuralKernel':
    return NeuralKernel(relu_net, get='nngp', W_std=W_STD, b_std=B_STD)
  return ClippedArcCosine(order=1, variance=W_STD**2 / 2,
                          weight_variances=W_STD**2 / d,
                          bias_variance=B_STD**2)


def fit_once(name, X, y, iters):
  model = gpflow.models.GPR((X, y), make_kernel(name, X.shape[1]),
                            noise_variance=0.5)
  opt = gpflow.optimizers.Scipy()
  # Compile (trace) outside the timed region: one untimed evaluation. The
  # optimizer caches the compiled function, and `minimize` reuses it.
  loss_and_grad = opt.eval_func(model.training_loss,
                                model.trainable_variables, {}, compile=True)
  x0 = opt.initial_parameters(model.trainable_variables).numpy()
  loss_and_grad(x0)
  t0 = time.perf_counter()
  res = opt.minimize(model.training_loss, model.trainable_variables,
                     options=dict(maxiter=iters))
  elapsed = time.perf_counter() - t0
  return elapsed, res.nit, res.nfev, -float(res.fun), loss_and_grad, x0


def time_evaluation(loss_and_grad, x0, reps=10):
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    loss_and_grad(x0)
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def kernel_timer(name, X):
  """Compiled `K(X)` forward + backward (the kernel's share of the work)."""
  k = make_kernel(name, X.shape[1])
  X = tf.constant(X)
  G = tf.constant(np.random.RandomState(1).randn(len(X), len(X)))

  @tf.function
  def fwd_bwd():
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(k.K(X) * G)
    return tape.gradient(loss, k.trainable_variables)
  fwd_bwd()
  return fwd_bwd


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--n', type=int, default=2000)
  parser.add_argument('--iters', type=int, default=50)
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--out', default=str(DOCS / 'gpflow_fit.md'),
                      help='Markdown page for the docs ("" to skip)')
  args = parser.parse_args()
  report = Report('GPflow GPR fit: NeuralKernel vs ArcCosine',
                  __doc__.split('Usage:')[0].strip())
  print = report.say  # pylint: disable=redefined-builtin
  X, y = make_data(args.n)
  print(f'GPR fit, N={args.n}, D={X.shape[1]}, {args.iters} Scipy (L-BFGS-B) '
        f'iterations, median of {args.repeats}; TF {tf.__version__}, GPflow '
        f'{gpflow.__version__}, {platform.processor() or platform.machine()}'
        f', {tf.config.threading.get_intra_op_parallelism_threads() or "all"}'
        f' threads')
  names = ('ArcCosine', 'NeuralKernel')
  # Interleave the kernels so that load changes on a shared machine affect
  # both alike.
  runs = {name: [] for name in names}
  for _ in range(args.repeats):
    for name in names:
      runs[name].append(fit_once(name, X, y, args.iters))
  evals = {name: [] for name in names}
  for _ in range(10):
    for name in names:
      fn, x0 = runs[name][0][4], runs[name][0][5]
      evals[name].append(time_evaluation(fn, x0, reps=1))
  kernel_fns = {name: kernel_timer(name, X) for name in names}
  kernel_times = {name: [] for name in names}
  for _ in range(5):
    for name in names:
      t0 = time.perf_counter()
      kernel_fns[name]()
      kernel_times[name].append(time.perf_counter() - t0)
  results = {}
  for name in names:
    fit = statistics.median(r[0] for r in runs[name])
    per_eval_fit = statistics.median(r[0] / r[2] for r in runs[name])
    per_eval = statistics.median(evals[name])
    results[name] = (fit, per_eval_fit, per_eval)
    r0 = runs[name][0]
    print(f'{name:>12}: fit {fit:7.2f} s | iterations {r0[1]:3d}, '
          f'evaluations {r0[2]:3d} | {1e3 * per_eval_fit:7.1f} ms per '
          f'evaluation in the fit | one compiled loss+gradient '
          f'{1e3 * per_eval:7.1f} ms | final log marginal likelihood '
          f'{r0[3]:.2f} | K(X) forward+backward '
          f'{1e3 * statistics.median(kernel_times[name]):7.1f} ms')
  report.table(
      ['kernel', 'fit (s)', 'ms per evaluation in the fit',
       'one compiled loss+gradient (ms)'],
      [[name, f'{results[name][0]:.2f}', f'{1e3 * results[name][1]:.1f}',
        f'{1e3 * results[name][2]:.1f}'] for name in names])
  a, n = results['ArcCosine'], results['NeuralKernel']
  print(f'ratio NeuralKernel / ArcCosine: whole fit {n[0] / a[0]:.2f}, per '
        f'evaluation in the fit {n[1] / a[1]:.2f}, one compiled evaluation '
        f'{n[2] / a[2]:.2f} (target <= 1.5)')
  print('Note: the kernels are parameterised differently (2 vs 3 '
        'hyperparameters, readout bias), so the number of L-BFGS evaluations '
        'differs; the per-evaluation ratios compare equal work. ArcCosine is '
        'GPflow\'s formula with cos(theta) clipped to [-1, 1] (GPflow\'s own '
        'K returns NaN on this data).')
  report.write(args.out, extra_versions=f', TensorFlow {tf.__version__}, '
               f'GPflow {gpflow.__version__}')


if __name__ == '__main__':
  main()
