"""Feature maps: approximation error vs feature dimension, and time vs exact kernels.

For a depth-3 ReLU MLP (the demo's `mlp`, on flattened digits) and the
demo's Myrtle-5 CNN (on 8x8 digits images), and for a depth-3 Erf MLP with
both activation methods (random features and Hermite + TensorSRHT):

* relative Frobenius error ``|Φ Φᵀ - K| / |K|`` of the NNGP and NTK over `N`
  fixed inputs, mean over 3 seeds, for growing `feature_dim` `m`, with the
  fitted log-log slope (random features: -1/2);
* time of the features of the `N` inputs (median of 3 calls after a
  compiling one) against the exact `kernel_fn(x, None, ('nngp', 'ntk'))`
  (same), in the same process, float64.

The exact kernel costs `O(N²)` (and `O(N² P²)` for convolutions with `P`
positions), the features `O(N m²)`: the table states both at this `N`; the
ratio moves in the features' favour linearly in `N`.

Usage:
  python benchmarks/features_accuracy.py [--n 400] [--cnn-n 100] [--tiny]
    [--out docs/benchmarks/features_accuracy.md]
"""
import argparse
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
os.environ.setdefault('MPLBACKEND', 'Agg')

from report import DOCS, ROOT, Report  # pylint: disable=wrong-import-position

FULL = dict(mlp=(256, 512, 1024, 2048, 4096), cnn=(32, 64, 128, 256, 512),
            erf=(256, 512, 1024, 2048, 4096))
TINY = dict(mlp=(16, 64), cnn=(8, 16), erf=(16, 64))


def _median_time(fn, reps=3):
  fn()
  times = []
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def _errors(net, x, m, seeds, **kwargs):
  from nt_gp import features  # pylint: disable=g-import-not-at-top
  k = net[2](x, None, ('nngp', 'ntk'))
  exact = (k.nngp.numpy(), k.ntk.numpy())
  errs = []
  for s in seeds:
    feats = features.features_fn(net, m, seed=s, **kwargs)(x)
    row = []
    for f, e in zip(feats, exact):
      f = f.numpy().reshape(len(x), -1)
      row.append(np.linalg.norm(f @ f.T - e) / np.linalg.norm(e))
    errs.append(row)
  return np.mean(errs, 0)


def _feature_time(net, x, m, **kwargs):
  from nt_gp import features  # pylint: disable=g-import-not-at-top
  phi = features.features_fn(net, m, seed=0, **kwargs)
  return _median_time(lambda: [t.numpy() for t in phi(x)])


def _exact_time(net, x):
  return _median_time(lambda: [
      t.numpy() for t in net[2](x, None, ('nngp', 'ntk'))])


def _scaling(report, net, digits_like, sizes, m):
  """Times of features and exact kernel as N grows (inputs resampled from
  `digits_like` with noise)."""
  from nt_gp import features  # pylint: disable=g-import-not-at-top
  rows = []
  rs = np.random.RandomState(0)
  phi = features.features_fn(net, m, seed=0)
  for n in sizes:
    x = (digits_like[rs.randint(len(digits_like), size=n)] +
         0.1 * rs.randn(n, digits_like.shape[1])).astype(np.float32)
    t_feat = _median_time(lambda: [t.numpy() for t in phi(x)])
    t_exact = _exact_time(net, x)
    rows.append([n, f'{t_feat:.3f}', f'{t_exact:.3f}',
                 f'{t_feat / t_exact:.2f}'])
    report.say(f'scaling N={n}: features {t_feat:.3f} s, exact kernel '
               f'{t_exact:.3f} s ({t_feat / t_exact:.2f}x)')
  return rows


def _slope(dims, errs):
  return float(np.polyfit(np.log(dims), np.log(errs), 1)[0])


def run(args):
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  from nt_gp.demo.data import load_digits_images  # pylint: disable=g-import-not-at-top
  from nt_gp.demo.kernels import mlp, myrtle_cnn  # pylint: disable=g-import-not-at-top

  dims = TINY if args.tiny else FULL
  n, cnn_n = (12, 4) if args.tiny else (args.n, args.cnn_n)
  digits = load_digits_images(max(n, cnn_n), 0)
  flat = digits.x_train[:n].reshape(n, -1)
  images = digits.x_train[:cnn_n]
  erf_mlp = stax.serial(*[l for _ in range(3) for l in (
      stax.Dense(512, W_std=1.2, b_std=0.05), stax.Erf())],
                        stax.Dense(1, W_std=1.2, b_std=0.05))
  cases = [
      ('ReLU MLP (depth 3)', mlp(3, 1.5, 0.05), flat, dims['mlp'], {}),
      ('Myrtle-5 CNN', myrtle_cnn(), images, dims['cnn'], {}),
      ('Erf MLP, random', erf_mlp, flat, dims['erf'],
       dict(activation_method='random')),
      ('Erf MLP, Hermite', erf_mlp, flat, dims['erf'],
       dict(activation_method='hermite', hermite_degree=24)),
  ]
  report = Report(
      'Feature maps: error vs feature dimension, time vs exact kernels',
      'Relative Frobenius error of `Φ Φᵀ` against nt_gp\'s exact kernel '
      '(mean over 3 seeds) and time of the features against the exact '
      '`kernel_fn` for the same inputs (median of 3 after a compiling '
      'call, float64). Digits from scikit-learn (standardised); the '
      'Erf MLP compares the two activation methods of `features_fn`.')
  rows, curves = [], []
  for name, net, x, ms, kwargs in cases:
    t_exact = _exact_time(net, x)
    report.say(f'{name}: N={len(x)}, exact kernel {t_exact:.3f} s')
    errs = []
    for m in ms:
      e = _errors(net, x, m, range(3), **kwargs)
      t = _feature_time(net, x, m, **kwargs)
      errs.append(e)
      rows.append([name, len(x), m, f'{e[0]:.4f}', f'{e[1]:.4f}',
                   f'{t:.3f}', f'{t_exact:.3f}', f'{t / t_exact:.2f}'])
      report.say(f'  m={m:5d}: error nngp {e[0]:.4f} ntk {e[1]:.4f}; '
                 f'features {t:.3f} s ({t / t_exact:.2f}x exact)')
    errs = np.array(errs)
    slopes = [_slope(ms, errs[:, j]) for j in range(2)]
    report.say(f'  log-log slope: nngp {slopes[0]:.2f}, ntk {slopes[1]:.2f}')
    curves.append((name, ms, errs, t_exact,
                   [float(r[5]) for r in rows[-len(ms):]], slopes))
  scaling = _scaling(report, mlp(3, 1.5, 0.05), digits_like=flat,
                     sizes=(64, 128) if args.tiny else args.scaling_n,
                     m=32 if args.tiny else 1024)
  report.table(['N', 'features (s)', 'exact kernel (s)', 'time ratio'],
               scaling, caption='ReLU MLP (depth 3), float32, NNGP and NTK, '
               'feature_dim 1024: time against N (features grow like N, '
               'the exact kernel like N²).')
  report.table(['network', 'N', 'feature_dim', 'NNGP error', 'NTK error',
                'features (s)', 'exact kernel (s)', 'time ratio'], rows)
  report.table(['network', 'NNGP slope', 'NTK slope'],
               [[c[0], f'{c[5][0]:.2f}', f'{c[5][1]:.2f}'] for c in curves],
               caption='Fitted slopes of log(error) against '
               'log(feature_dim) (random features: -0.5).')
  out = pathlib.Path(args.out) if args.out else None
  if out is not None:
    img = (ROOT / 'docs' / 'img' / 'features_accuracy.png'
           if out.resolve().parent == DOCS.resolve() else
           out.with_suffix('.png'))
    _plot(curves, img)
    rel = os.path.relpath(img, out.parent)
    report.intro += f'\n\n![error and time against feature dimension]({rel})'
  report.write(args.out)


def _plot(curves, path):
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for k, (name, ms, errs, t_exact, times, _) in enumerate(curves):
    color = f'C{k}'
    axes[0].loglog(ms, errs[:, 0], 'o-', color=color, label=f'{name} NNGP')
    axes[0].loglog(ms, errs[:, 1], 's--', color=color, label=f'{name} NTK')
    axes[1].loglog(ms, times, 'o-', color=color, label=f'{name} features')
    axes[1].axhline(t_exact, color=color, ls=':', label=f'{name} exact')
  ms = np.array(curves[0][1], float)
  axes[0].loglog(ms, curves[0][2][0, 0] * (ms / ms[0]) ** -0.5, 'k:',
                 label='slope -1/2')
  axes[0].set_xlabel('feature_dim m')
  axes[0].set_ylabel('relative Frobenius error')
  axes[1].set_xlabel('feature_dim m')
  axes[1].set_ylabel('time (s)')
  axes[0].legend(fontsize=6)
  axes[1].legend(fontsize=6)
  fig.tight_layout()
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  print(f'wrote {path}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--n', type=int, default=400,
                      help='MLP inputs (flattened digits)')
  parser.add_argument('--cnn-n', type=int, default=100,
                      help='Myrtle-5 inputs (8x8 digits images)')
  parser.add_argument('--scaling-n', type=lambda s: [int(v) for v in
                                                    s.split(',')],
                      default=[1000, 2000, 4000, 8000],
                      help='sizes of the time-vs-N table')
  parser.add_argument('--tiny', action='store_true',
                      help='a few inputs and small feature_dim (CI)')
  parser.add_argument('--out', default=str(DOCS / 'features_accuracy.md'))
  run(parser.parse_args())


if __name__ == '__main__':
  main()
