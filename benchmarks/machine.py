"""Measured limits of this machine, and minimal work of each workload."""
import os
import sys
import time

import numpy as np


def peak_rss_bytes():
  """This process's peak resident memory in bytes.

  Reads `VmHWM` from /proc/self/status where it exists: unlike
  `getrusage(...).ru_maxrss`, which Linux carries across `exec` (a child of a
  large process reports its parent's peak), it starts afresh in each program.
  """
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  import resource  # pylint: disable=g-import-not-at-top
  scale = 1 if sys.platform == 'darwin' else 1024
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def timed_calls(fn, repeats):
  """Calls `fn` once (the first call, with its compile), then `repeats`
  times; returns `(first_s, times_s, last result)`.

  Example:
    >>> first, times, out = timed_calls(lambda: 3, 2)
    >>> len(times), out
    (2, 3)
  """
  start = time.perf_counter()
  out = fn()
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = fn()
    times.append(time.perf_counter() - start)
  return first, times, out


def _best(fn, reps=5):
  best = float('inf')
  for _ in range(reps):
    t = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - t)
  return best


def machine_limits():
  """Memory-copy bandwidth (read + write) and gemm rates, measured now."""
  a = np.ones(2 ** 26, np.float32)            # 256 MB
  b = np.empty_like(a)
  copy_s = _best(lambda: np.copyto(b, a))
  out = dict(cores=os.cpu_count(), copy_gbs=2 * a.nbytes / copy_s / 1e9)
  for name, dt in (('sgemm_gflops', np.float32), ('dgemm_gflops', np.float64)):
    m = np.random.RandomState(0).randn(2048, 2048).astype(dt)
    s = _best(lambda: m @ m, reps=3)
    out[name] = 2 * 2048 ** 3 / s / 1e9
  return out


def traffic_estimate(name, dtype):
  """('memory', bytes) or ('flops', flops, unit): a lower bound of the work."""
  item = 4 if dtype == 'float32' else 8
  if name == 'mlp5':
    n, d = 4000, 784
    return ('flops', 2 * n * n * d / 2, 'GFLOP (symmetric half)')
  if name == 'cnn3_flatten':
    # Diagonal-spatial covariances (N(N+1)/2 pairs x 32 x 32); each of the
    # 3 conv and 3 ReLU layers reads nngp+ntk and writes them once.
    pairs = 256 * 257 // 2
    size = pairs * 32 * 32
    return ('memory', 6 * 4 * size * item, 'GB')
  if name == 'myrtle5':
    pairs = 32 * 33 // 2
    total = 0
    # (layer count, resolution): 2 convs + 2 relus at 16, pool 16->8 (reads
    # 16, writes 8), conv+relu at 8, pool 8->4, conv+relu at 4.
    for layers, res in ((4, 16), (0.5, 16), (0.5, 8), (2, 8), (0.5, 8),
                        (0.5, 4), (2, 4)):
      total += layers * 4 * pairs * res ** 4 * item
    return ('memory', total, 'GB')
  return None
