"""GP regression on a million points with NNGP features, streamed from disk.

A synthetic regression problem in 8 dimensions, ``y = f(x) + ε`` with
``f(x) = sin(x · a) + 0.5 cos(x · b)`` (random unit-scale `a`, `b`) and noise standard deviation 0.1, is
written to a `.npy` file (memory-mapped) and never loaded whole. With the
NNGP features of the demo's depth-3 ReLU MLP (`feature_dim = (512, 512,
4096)`: 4096 output features, 512 random features in the hidden layers;
float32):

1. the normal equations are summed block by block over the file
   (`nt_gp.features.normal_equations`), in `O(m²)` memory;
2. the noise variance is fitted by maximising the exact log marginal
   likelihood of the feature GP (`FeatureRegression.fit_noise`);
3. the test RMSE (against the noiseless `f`) is measured on held-out points.

Where the time goes: per block of rows, the features (for each hidden
width of `--sweep`, interleaved) and the accumulation of ``Φᵀ Φ`` (one
float32 BLAS `syrk`, `m²` multiply-adds per row, the larger part); the
hidden widths are compared by the error of ``Φ Φᵀ`` against the exact NNGP
kernel and by the subset feature GP's test RMSE and distance to the exact
GP's mean. The load average of the machine is printed: on a shared machine
the times grow with it.

For comparison, on a random subset of 20,000 training points: the same
feature GP, and the exact GP with nt_gp's NNGP kernel (dense `20000 x 20000`
Cholesky, float64, with the same noise variance) in a separate process whose
peak memory is reported separately. The headline numbers are the wall time
and peak resident memory (VmHWM) of the feature pipeline.

Usage:
  python benchmarks/features_gp_million.py [--n 1000000] [--m 4096]
    [--hidden 512] [--sweep 256,512,1024] [--subset 20000] [--test 5000]
    [--tiny] [--out docs/benchmarks/features_gp_million.md]
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from features_accuracy import _median_time  # pylint: disable=wrong-import-position
from machine import peak_rss_bytes  # pylint: disable=wrong-import-position
from report import DOCS, Report  # pylint: disable=wrong-import-position

DIM = 8
NOISE_STD = 0.1


def target(x):
  """The noiseless regression function."""
  rs = np.random.RandomState(123)
  a, b = rs.randn(DIM) / np.sqrt(DIM), rs.randn(DIM) / np.sqrt(DIM)
  return np.sin(x @ a) + 0.5 * np.cos(x @ b)


def write_data(folder, n, n_test, block=100_000):
  """Training inputs/targets as memory-mapped .npy files; small test set."""
  x_path, y_path = os.path.join(folder, 'x.npy'), os.path.join(folder, 'y.npy')
  x = np.lib.format.open_memmap(x_path, 'w+', np.float32, (n, DIM))
  y = np.lib.format.open_memmap(y_path, 'w+', np.float32, (n,))
  rs = np.random.RandomState(0)
  for start in range(0, n, block):
    stop = min(start + block, n)
    xb = rs.randn(stop - start, DIM)
    x[start:stop] = xb
    y[start:stop] = target(xb) + NOISE_STD * rs.randn(stop - start)
  x.flush()
  y.flush()
  del x, y
  x_test = np.random.RandomState(1).randn(n_test, DIM)
  return x_path, y_path, x_test, target(x_test)


def network():
  from nt_gp.demo.kernels import mlp  # pylint: disable=g-import-not-at-top
  return mlp(3, 1.5, 0.05)


def feature_gp(x, y, x_test, dims, batch_size, progress=None):
  """Fits the feature GP on (x, y) (array-likes) and predicts x_test."""
  from nt_gp import features  # pylint: disable=g-import-not-at-top
  phi = features.features_fn(network(), dims, seed=0, input_shape=(DIM,))
  t0 = time.perf_counter()
  ne = features.normal_equations(phi, x, y, batch_size=batch_size,
                                 progress=progress)
  t_stream = time.perf_counter() - t0
  reg = features.FeatureRegression(ne, 0.1)
  t0 = time.perf_counter()
  noise = reg.fit_noise()
  t_fit = time.perf_counter() - t0
  mean, _ = features.predict(reg, phi, x_test.astype(np.float32),
                             batch_size=batch_size, progress=False)
  return mean[:, 0], noise, t_stream, t_fit


def block_profile(x, y, m, hiddens, batch_size):
  """Seconds per block of `batch_size` rows: the features for each hidden
  width (interleaved, median of 3) and the accumulation of ``Φᵀ Φ``."""
  from nt_gp import features  # pylint: disable=g-import-not-at-top
  xb = np.asarray(x[:batch_size], np.float32)
  yb = np.asarray(y[:batch_size], np.float32)
  maps = {h: features.features_fn(network(), (h, h, m), seed=0,
                                  input_shape=(DIM,)) for h in hiddens}
  for phi in maps.values():
    phi(xb, get='nngp')                            # trace once
  times = {h: [] for h in hiddens}
  for _ in range(3):
    for h, phi in maps.items():
      t0 = time.perf_counter()
      phi(xb, get='nngp').numpy()
      times[h].append(time.perf_counter() - t0)
  feats = maps[hiddens[-1]](xb, get='nngp')
  ne = features.NormalEquations(feats.shape[1])
  accumulate = _median_time(lambda: ne.add(feats, yb))
  return {h: float(np.median(t)) for h, t in times.items()}, accumulate


def kernel_error(dims, n=1000):
  """Relative Frobenius error of ``Φ Φᵀ`` against the exact NNGP kernel."""
  from nt_gp import features  # pylint: disable=g-import-not-at-top
  x = np.random.RandomState(5).randn(n, DIM)
  phi = features.features_fn(network(), dims, seed=0, input_shape=(DIM,))
  f = phi(x, get='nngp').numpy()
  exact = network()[2](x, None, 'nngp').numpy()
  return float(np.linalg.norm(f @ f.T - exact) / np.linalg.norm(exact))


def exact_gp_main(args):
  """Exact NNGP GP on a subset (run in its own process)."""
  from nt_gp.solve import exact_sweep  # pylint: disable=g-import-not-at-top
  data = np.load(args.exact_inputs)
  x, y, x_test = data['x'], data['y'], data['x_test']
  kernel_fn = network()[2]

  def rows(x1):
    out = np.empty((len(x1), len(x)))
    for i in range(0, len(x1), args.exact_block):
      out[i:i + args.exact_block] = kernel_fn(x1[i:i + args.exact_block], x,
                                              'nngp').numpy()
    return out

  t0 = time.perf_counter()
  k = rows(x)
  # nt_gp's exact solver (in memory, Cholesky): LAPACK's potrf of a matrix
  # this large crashes in multithreaded OpenBLAS on some CPUs; the solver
  # factors it block by block.
  fit = exact_sweep(k, y.astype(np.float64), diag_reg=args.exact_noise,
                    diag_reg_absolute_scale=True, method='cholesky')
  del k
  mean = rows(x_test) @ fit.alpha[0, :, 0]
  print(json.dumps({'mean': mean.tolist(),
                    'seconds': time.perf_counter() - t0,
                    'peak_rss_gb': peak_rss_bytes() / 2 ** 30}))


def run(args):
  import nt_gp.features  # pylint: disable=g-import-not-at-top,unused-import  (import time is not timed)
  if args.tiny:
    args.n, args.m, args.hidden, args.subset, args.test = 3000, 64, 32, 500, 200
    args.batch_size, args.sweep = 1000, '16,32'
  hiddens = sorted({int(h) for h in args.sweep.split(',')} | {args.hidden})
  dims = (args.hidden, args.hidden, args.m)
  report = Report(
      'GP regression on a million points with NNGP features',
      f'Synthetic {DIM}-D regression (`y = sin(x·a) + 0.5 cos(x·b) + '
      f'ε`, noise std {NOISE_STD}) streamed from a memory-mapped `.npy` '
      f'file; NNGP features of the demo\'s depth-3 ReLU MLP (W_std 1.5, '
      f'b_std 0.05), float32 features, float64 normal equations; noise '
      f'variance by maximum marginal likelihood. Test RMSE is against the '
      f'noiseless function ({args.test} held-out points). The exact GP on '
      f'the subset runs in its own process with the noise variance the '
      f'feature GP chose.')
  with tempfile.TemporaryDirectory() as folder:
    t0 = time.perf_counter()
    x_path, y_path, x_test, f_test = write_data(folder, args.n, args.test)
    report.say(f'wrote {args.n} x {DIM} inputs to disk in '
               f'{time.perf_counter() - t0:.1f} s')
    x = np.load(x_path, mmap_mode='r')
    y = np.load(y_path, mmap_mode='r')
    load_start = os.getloadavg()[0]
    t0 = time.perf_counter()
    mean, noise, t_stream, t_fit = feature_gp(x, y, x_test, dims,
                                              args.batch_size)
    total = time.perf_counter() - t0
    rss = peak_rss_bytes() / 2 ** 30
    rmse = float(np.sqrt(np.mean((mean - f_test) ** 2)))
    report.say(f'feature GP, N={args.n}, feature_dim={dims}: normal equations '
               f'{t_stream:.1f} s, noise fit {t_fit:.1f} s, total '
               f'{total:.1f} s; peak RSS {rss:.2f} GB; noise variance '
               f'{noise:.4g}; test RMSE {rmse:.4f}')
    report.say(f'load average (1 min) {load_start:.1f} before, '
               f'{os.getloadavg()[0]:.1f} after, on '
               f'{len(os.sched_getaffinity(0))} cores')
    idx = np.sort(np.random.RandomState(2).choice(args.n, args.subset,
                                                  replace=False))
    xs, ys = np.asarray(x[idx], np.float64), np.asarray(y[idx], np.float64)
    # Fewer points than features: float64 features (the float32 Gram
    # matrix of a rank-deficient Φ cannot resolve small noise variances).
    sub_mean, sub_noise, _, _ = feature_gp(xs, ys, x_test, dims,
                                           args.batch_size, False)
    sub_rmse = float(np.sqrt(np.mean((sub_mean - f_test) ** 2)))
    report.say(f'feature GP on the {args.subset}-point subset: test RMSE '
               f'{sub_rmse:.4f} (noise variance {sub_noise:.4g})')
    inputs = os.path.join(folder, 'exact.npz')
    np.savez(inputs, x=xs, y=ys, x_test=x_test)
    proc = subprocess.run(
        [sys.executable, __file__, '--exact-inputs', inputs,
         '--exact-noise', repr(sub_noise)], capture_output=True, text=True,
        check=False)
    if proc.returncode:
      raise RuntimeError(f'exact GP failed:\n{proc.stderr[-3000:]}')
    exact = json.loads(proc.stdout.strip().splitlines()[-1])
    exact_mean = np.array(exact['mean'])
    exact_rmse = float(np.sqrt(np.mean((exact_mean - f_test) ** 2)))
    report.say(f'exact NNGP GP on the subset: test RMSE {exact_rmse:.4f}, '
               f'{exact["seconds"]:.1f} s, peak RSS '
               f'{exact["peak_rss_gb"]:.2f} GB (own process)')
    # The hidden widths: time per block against accuracy on the subset.
    feature_s, accumulate_s = block_profile(x, y, args.m, hiddens,
                                            args.batch_size)
    report.say(f'per block of {args.batch_size} rows: Φᵀ Φ accumulation '
               f'{accumulate_s:.2f} s; features ' + ', '.join(
                   f'{feature_s[h]:.2f} s (hidden {h})' for h in hiddens))
    sweep_rows = []
    for h in hiddens:
      dims_h = (h, h, args.m)
      h_mean = (sub_mean if h == args.hidden else
                feature_gp(xs, ys, x_test, dims_h, args.batch_size, False)[0])
      err = kernel_error(dims_h)
      h_rmse = float(np.sqrt(np.mean((h_mean - f_test) ** 2)))
      to_exact = float(np.sqrt(np.mean((h_mean - exact_mean) ** 2)))
      per_million = (feature_s[h] + accumulate_s) * 1e6 / args.batch_size
      report.say(f'hidden {h}: kernel error {err:.4f}, subset test RMSE '
                 f'{h_rmse:.4f}, RMSE to the exact GP mean {to_exact:.4f}, '
                 f'{per_million:.0f} s per million rows')
      sweep_rows.append([f'{dims_h}', f'{err:.4f}', f'{h_rmse:.4f}',
                         f'{to_exact:.4f}', f'{feature_s[h]:.2f}',
                         f'{accumulate_s:.2f}', f'{per_million:.0f}'])
  report.table(
      ['model', 'training points', 'test RMSE', 'time (s)', 'peak RSS (GB)'],
      [[f'NNGP features, m={dims}', args.n, f'{rmse:.4f}', f'{total:.1f}',
        f'{rss:.2f}'],
       [f'NNGP features, m={dims}', args.subset, f'{sub_rmse:.4f}', '',
        ''],
       ['exact NNGP GP', args.subset, f'{exact_rmse:.4f}',
        f'{exact["seconds"]:.1f}', f'{exact["peak_rss_gb"]:.2f}']],
      caption='Times exclude writing the data; the feature pipeline\'s peak '
      'RSS is that of this process (before the subset runs).')
  report.table(
      ['feature_dim', 'kernel error', f'subset test RMSE', 'RMSE to exact GP',
       'features (s/block)', 'Φᵀ Φ (s/block)', 's per 10⁶ rows'],
      sweep_rows,
      caption=f'Hidden widths on the {args.subset}-point subset (exact GP: '
      f'test RMSE {exact_rmse:.4f}): relative Frobenius error of Φ Φᵀ '
      f'against the exact NNGP kernel on 1000 inputs, the feature GP\'s test '
      f'RMSE and distance to the exact GP\'s predictive mean, and the '
      f'seconds per block of {args.batch_size} rows (float32, median of 3, '
      f'widths interleaved) of the features and of the Φᵀ Φ accumulation.')
  report.write(args.out)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--n', type=int, default=1_000_000)
  parser.add_argument('--m', type=int, default=4096,
                      help='output feature dimension (last ReLU layer)')
  parser.add_argument('--hidden', type=int, default=512,
                      help='random features of the first two ReLU layers')
  parser.add_argument('--subset', type=int, default=20_000)
  parser.add_argument('--test', type=int, default=5000)
  parser.add_argument('--batch-size', type=int, default=8192)
  parser.add_argument('--sweep', default='256,512,1024',
                      help='hidden widths compared on the subset')
  parser.add_argument('--tiny', action='store_true', help='CI size')
  parser.add_argument('--out', default=str(DOCS / 'features_gp_million.md'))
  parser.add_argument('--exact-inputs', help=argparse.SUPPRESS)
  parser.add_argument('--exact-noise', type=float, help=argparse.SUPPRESS)
  parser.add_argument('--exact-block', type=int, default=2000,
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.exact_inputs:
    exact_gp_main(args)
  else:
    run(args)


if __name__ == '__main__':
  main()
