"""Elementwise throughput of the inverse trigonometric functions used by the
arc-cosine and erf kernels: TensorFlow graph mode vs XLA, and nt_gp's
polynomial versions (`nt_gp.ops.fast_math`) under XLA.

Usage: python benchmarks/op_speed.py [--size 16777216]
Prints million elements per second (best of 5) per op and dtype.
"""
import argparse
import time

import numpy as np
import tensorflow as tf

from nt_gp.ops import fast_math


def _rate(fn, x, reps=5):
  fn(x).numpy()
  best = float('inf')
  for _ in range(reps):
    t = time.perf_counter()
    fn(x).numpy()
    best = min(best, time.perf_counter() - t)
  return x.shape[0] / best / 1e6


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--size', type=int, default=2 ** 24)
  args = parser.parse_args()
  ops = {
      'acos': (tf.acos, fast_math.acos),
      'asin': (tf.asin, fast_math.asin),
      'atan2(sqrt(1-x²), x)': (
          lambda x: tf.atan2(tf.sqrt(1 - x * x), x),
          lambda x: fast_math.atan2(tf.sqrt(1 - x * x), x)),
  }
  print(f'{"op":24s} {"dtype":8s} {"graph":>8s} {"XLA":>8s} {"XLA poly":>9s}'
        f'  (M elements/s)')
  for dtype in (np.float32, np.float64):
    x = tf.constant(np.random.RandomState(0).uniform(-1, 1, args.size)
                    .astype(dtype))
    for name, (exact, poly) in ops.items():
      graph = _rate(tf.function(exact), x)
      xla = _rate(tf.function(exact, jit_compile=True), x)
      xla_poly = _rate(tf.function(poly, jit_compile=True), x)
      print(f'{name:24s} {np.dtype(dtype).name:8s} {graph:8.0f} {xla:8.0f} '
            f'{xla_poly:9.0f}')


if __name__ == '__main__':
  main()
