"""Digits classification: Myrtle CNN features against the exact Myrtle kernel.

The demo's setting (`nt-gp demo`): scikit-learn's bundled 8x8 digits, 600
training and 400 test images (seed 0), centred one-hot targets, the demo's
Myrtle-style CNN. The exact NNGP/NTK kernels go through the demo's
`evidence_regression` (noise chosen on a grid by the evidence); the feature
models through `FeatureRegression` with the noise maximising the exact
marginal likelihood of the feature GP. Test accuracy is the argmax of the
posterior mean. Times: kernels/features of all images and the GP fit.

Usage:
  python benchmarks/features_digits.py [--dims 128,256,512,1024,2048] [--tiny]
    [--out docs/benchmarks/features_digits.md]
"""
import argparse
import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from report import DOCS, Report  # pylint: disable=wrong-import-position


def run(args):
  from nt_gp import features  # pylint: disable=g-import-not-at-top
  from nt_gp.demo import SIZES, models  # pylint: disable=g-import-not-at-top
  from nt_gp.demo.data import load_digits_images  # pylint: disable=g-import-not-at-top
  from nt_gp.demo.kernels import blockwise_kernel, myrtle_cnn  # pylint: disable=g-import-not-at-top

  n_train, n_test = (60, 40) if args.tiny else SIZES['full'][:2]
  dims = [8, 16] if args.tiny else [int(d) for d in args.dims.split(',')]
  digits = load_digits_images(n_train, n_test)
  net = myrtle_cnn()
  report = Report(
      'Digits: Myrtle CNN features vs the exact Myrtle kernel',
      f'scikit-learn digits, {n_train} training / {n_test} test 8x8 images '
      f'(the demo\'s split), the demo\'s Myrtle CNN. Exact kernels: the '
      f'demo\'s evidence-selected GP regression; features: '
      f'`FeatureRegression` with the noise of maximum marginal likelihood. '
      f'Float64 throughout.')
  rows = []
  t0 = time.perf_counter()
  k_train = blockwise_kernel(net[2], digits.x_train, None, block=100,
                             progress=False)
  k_test = blockwise_kernel(net[2], digits.x_test, digits.x_train, block=100,
                            progress=False)
  t_kernel = time.perf_counter() - t0
  acc = {}
  for get in ('nngp', 'ntk'):
    t0 = time.perf_counter()
    fit = models.evidence_regression(k_train[get], k_test[get],
                                     digits.y_train)
    acc[get] = models.accuracy(fit.mean, digits.labels_test)
  t_fit = time.perf_counter() - t0
  report.say(f'exact Myrtle kernel: accuracy NNGP {acc["nngp"]:.4f}, NTK '
             f'{acc["ntk"]:.4f}; kernels {t_kernel:.1f} s')
  rows.append(['exact kernel', '', f'{acc["nngp"]:.4f}', f'{acc["ntk"]:.4f}',
               f'{t_kernel:.1f}'])
  for m in dims:
    for seed in range(args.seeds):
      phi = features.features_fn(net, m, seed=seed)
      batch = max(1, 20000 // m)       # bounds the patches' memory
      t0 = time.perf_counter()
      f_train = phi(digits.x_train, batch_size=batch)
      f_test = phi(digits.x_test, batch_size=batch)
      t_feat = time.perf_counter() - t0
      acc = {}
      for j, get in enumerate(('nngp', 'ntk')):
        reg = features.FeatureRegression(
            features.NormalEquations.of(f_train[j], digits.y_train), 0.1)
        reg.fit_noise()
        mean, _ = reg.predict(f_test[j])
        acc[get] = models.accuracy(mean.numpy(), digits.labels_test)
      report.say(f'features m={m} seed={seed}: accuracy NNGP '
                 f'{acc["nngp"]:.4f}, NTK {acc["ntk"]:.4f}; features '
                 f'{t_feat:.1f} s (dims {phi.nngp_dim}, {phi.ntk_dim})')
      rows.append([f'features (seed {seed})', m, f'{acc["nngp"]:.4f}',
                   f'{acc["ntk"]:.4f}', f'{t_feat:.1f}'])
  report.table(['model', 'feature_dim', 'NNGP accuracy', 'NTK accuracy',
                'kernel / features time (s)'], rows)
  report.write(args.out)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--dims', default='128,256,512,1024,2048')
  parser.add_argument('--seeds', type=int, default=2)
  parser.add_argument('--tiny', action='store_true', help='CI size')
  parser.add_argument('--out', default=str(DOCS / 'features_digits.md'))
  run(parser.parse_args())


if __name__ == '__main__':
  main()
