"""Where the time of a benchmark kernel goes, layer by layer, against the
machine's limits.

  python benchmarks/layer_breakdown.py                 # the compare.py workloads
  python benchmarks/layer_breakdown.py --tiny          # smoke run (seconds)

A network's kernel is computed in one compiled pass whose cost depends on
what the readout needs (a `Flatten` readout needs only the diagonal of the
spatial covariance, a global pooling the whole of it), so layers cannot be
timed one by one on `Kernel`s. Instead each workload of
`benchmarks/workloads.py` is cut after each layer of its body and its
readout (the layers from the first `Flatten`/`GlobalAvgPool` on) appended:
the time of prefix `i` minus that of prefix `i - 1` (median of 3 after a
warm-up, nngp and ntk) is layer `i`'s cost. For each layer the table gives
that cost and its share, the covariance entries it produces (nngp and ntk,
`N (N + 1) / 2` pairs times the spatial entries the readout needs), and the
rates that implies:

* entries per second, against the elementwise `acos` rate measured in the
  same run (the arc-cosine maps' costliest op, graph mode);
* GB/s if each entry were read and written once, against the measured
  memory-copy bandwidth;
* for the first layer, its Gram matmul's FLOP rate against the gemm rate.
"""
import argparse
import os
import pathlib
import statistics
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

from machine import machine_limits, timed_calls  # pylint: disable=wrong-import-position
from report import DOCS, Report  # pylint: disable=wrong-import-position
from workloads import WORKLOADS  # pylint: disable=wrong-import-position

TINY = {'mlp5': (64, 16), 'cnn3_flatten': (4, 8, 8, 3),
        'myrtle5': (4, 8, 8, 3)}
FIELDS = ('nngp', 'ntk', 'cov1')


def layers_of(net_expr):
  """The `(name, layer)` list of a workload's `stax.serial(...)`."""
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  names = {}    # id of a layer -> its stax name

  class Recorder:
    """`stax` whose `serial` returns its layers; other layers are named."""

    @staticmethod
    def serial(*layers):
      return list(layers)

    def __getattr__(self, name):
      make = getattr(stax, name)

      def build(*args, **kwargs):
        layer = make(*args, **kwargs)
        names[id(layer)] = name
        return layer
      return build

  layers = eval(net_expr, {'stax': Recorder()})  # pylint: disable=eval-used
  return [(names[id(layer)], layer) for layer in layers]


def _median_time(fn, reps=3):
  """Median of `reps` calls of `fn` after a warm-up call."""
  return statistics.median(timed_calls(fn, reps)[1])


def _acos_rate(dtype, size=2 ** 22):
  """Elements per second of `tf.acos` (graph mode), best of 5."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  x = tf.constant(np.linspace(-0.99, 0.99, size), dtype)
  acos = tf.function(tf.acos)
  best = min(_median_time(lambda: acos(x).numpy(), 1) for _ in range(5))
  return size / best


def _split(layers):
  """`(body, readout)`: the readout starts at the first Flatten or GAP."""
  for i, (name, _) in enumerate(layers):
    if name in ('Flatten', 'GlobalAvgPool'):
      return layers[:i], layers[i:]
  return layers, []


def _entries(shape, diagonal_spatial):
  """Covariance entries of one kernel (nngp or ntk) for outputs `shape`."""
  n = shape[0]
  spatial = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
  return n * (n + 1) // 2 * (spatial if diagonal_spatial else spatial ** 2)


def breakdown(name, shape, dtype, limits, reps=3):
  """Rows `(layer, ms, share, M entries, M entries/s, of acos rate, GB/s,
  of copy bandwidth, gemm)`, the summed and the whole network's time."""
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  layers = layers_of(WORKLOADS[name]['net'])
  body, readout = _split(layers)
  diagonal = bool(readout) and readout[0][0] == 'Flatten'
  x = np.random.RandomState(0).randn(*shape).astype(dtype)
  item = x.dtype.itemsize
  tail = [layer for _, layer in readout]

  def time_prefix(i):
    if i == 0 and not tail:
      return 0.
    kernel_fn = stax.serial(*[l for _, l in body[:i]], *tail)[2]
    return _median_time(lambda: kernel_fn(x, None, ('nngp', 'ntk')), reps)

  acos = _acos_rate(dtype)
  times = [time_prefix(i) for i in range(len(body) + 1)]
  out_shape, rows = tuple(shape), []
  for i, (layer_name, layer) in enumerate(body):
    out_shape = tuple(layer[0](0, out_shape)[0])
    cost = times[i + 1] - times[i]
    entries = 2 * _entries(out_shape, diagonal)     # nngp and ntk
    if cost < 0.02 * times[-1]:     # within the timing noise: no rates
      rows.append([f'{i} {layer_name}', '≈0', '≈0%', f'{entries / 1e6:.1f}',
                   '', '', '', '', ''])
      continue
    rate = entries / cost
    gbs = 2 * entries * item / cost / 1e9           # read + write once
    gemm = ''
    if i == 0 and layer_name in ('Dense', 'Conv'):
      n, d = shape[0], int(np.prod(shape[1:]))
      flops = n * n * d    # the symmetric half of 2 N^2 D
      peak = limits['sgemm_gflops' if dtype == 'float32' else 'dgemm_gflops']
      gemm = (f'Gram {flops / 1e9:.2f} GFLOP: {flops / cost / 1e9:.0f} '
              f'GFLOP/s = {flops / cost / 1e9 / peak:.0%}')
    rows.append([f'{i} {layer_name}', f'{cost * 1e3:.1f}',
                 f'{cost / times[-1]:.0%}', f'{entries / 1e6:.1f}',
                 f'{rate / 1e6:.0f}', f'{rate / acos:.0%}', f'{gbs:.1f}',
                 f'{gbs / limits["copy_gbs"]:.0%}', gemm])
  if readout:
    rows.append(['readout ' + '+'.join(n for n, _ in readout),
                 f'{times[0] * 1e3:.1f}', f'{times[0] / times[-1]:.0%}',
                 '', '', '', '', '', ''])
  return rows, times[-1], acos


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--workloads', default='mlp5,cnn3_flatten,myrtle5')
  parser.add_argument('--dtypes', default='float32,float64')
  parser.add_argument('--tiny', action='store_true',
                      help='small inputs (a smoke run); writes no page')
  parser.add_argument('--out', default=None,
                      help='page to write (default: docs/benchmarks/'
                      'layer_breakdown.md; none with --tiny)')
  args = parser.parse_args(argv)
  out = args.out or (None if args.tiny else
                     str(DOCS / 'layer_breakdown.md'))
  limits = machine_limits()
  report = Report(
      'Where kernel time goes, layer by layer',
      'Each workload of `benchmarks/compare.py` cut after each layer of its '
      'body, with its readout appended: a layer\'s cost is the time of the '
      'prefix through it less the prefix before it (median of 3 after a '
      'warm-up, nngp and ntk; small differences are timing noise). "M '
      'entries" counts the covariance entries the layer produces (nngp and '
      'ntk, N(N+1)/2 pairs times the spatial entries the readout needs); '
      'the rates relate them to `tf.acos` (graph mode) and the memory-copy '
      'bandwidth measured in the same run, as if each entry were read and '
      'written once.')
  report.say(f'machine: {limits["cores"]} cores, memory copy '
             f'{limits["copy_gbs"]:.1f} GB/s, sgemm '
             f'{limits["sgemm_gflops"]:.0f} GFLOP/s, dgemm '
             f'{limits["dgemm_gflops"]:.0f} GFLOP/s')
  for name in args.workloads.split(','):
    shape = TINY[name] if args.tiny else WORKLOADS[name]['shape']
    for dtype in args.dtypes.split(','):
      rows, whole, acos = breakdown(name, shape, dtype, limits)
      caption = (f'**{name}, {dtype}** (inputs {shape}): the whole network '
                 f'{whole * 1e3:.0f} ms; `tf.acos` {acos / 1e6:.0f} M '
                 'elements/s')
      report.say(caption.replace('**', ''))
      for r in rows:
        report.say('  ' + ' | '.join(str(c) for c in r))
      report.table(['layer', 'ms', 'share', 'M entries', 'M entries/s',
                    'of acos rate', 'GB/s', 'of copy bandwidth', 'gemm'],
                   rows, caption)
  report.write(out)


if __name__ == '__main__':
  main()
