"""Where the first call of a `kernel_fn` spends its time.

Usage:
  python benchmarks/first_call.py [WORKLOAD ...] [--dtypes float32,float64]
      [--n N] [--out docs/benchmarks/first_call.md]

For each workload of `benchmarks/workloads.py` and dtype, one fresh process
measures, in this order:

* runtime start: TensorFlow's first eager op, first `tf.function` and first
  XLA-compiled function on a scalar (what any TensorFlow program pays once;
  `compare.py` starts the runtime before timing either library's first call);
* trace: Python tracing of the layer rules into one graph,
  ``tf.function(lambda x: kernel_fn(x, None, ('nngp', 'ntk')))
  .get_concrete_function(x)``, and the number of ops and of XLA clusters
  (compiled covariance maps) in that graph;
* XLA compile + run: the first call of that traced graph (TensorFlow's graph
  optimisation, XLA compilation of each cluster, the run), then a steady
  call;
* graph-mode optimise + run: the same with `nt_gp.config.jit_compile =
  False` (traced again; no XLA clusters), then a steady call;
* `kernel_fn` first call and new shape: the public call in the default
  configuration on N + 1 and N + 2 inputs;
* persistent XLA cache: the public first call on N inputs in two more fresh
  processes sharing a new `--tf_xla_persistent_cache_directory` (cold: it
  compiles and fills the cache; warm: it loads the compiled maps).

Times in seconds; one process per row, so each row includes its own
one-time costs.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import DOCS, Report  # pylint: disable=g-import-not-at-top,wrong-import-position
from workloads import ALL_WORKLOADS  # pylint: disable=g-import-not-at-top,wrong-import-position


def _clock(fn):
  t = time.perf_counter()
  out = fn()
  return time.perf_counter() - t, out


def child(name, dtype, n):
  """Runs in the measured process; prints one JSON line."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import nt_gp  # pylint: disable=g-import-not-at-top
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  out = {}
  out['start_eager_s'], _ = _clock(lambda: (tf.zeros(()) + 1).numpy())
  out['start_function_s'], _ = _clock(
      lambda: tf.function(lambda a: a * 2)(tf.ones(())).numpy())
  out['start_xla_s'], _ = _clock(lambda: tf.function(
      lambda a: a * 3, jit_compile=True)(tf.ones(())).numpy())
  spec = ALL_WORKLOADS[name]
  shape = ((n or spec['shape'][0]),) + tuple(spec['shape'][1:])
  kernel_fn = eval(spec['net'], {'stax': stax, 'tanh': tf.tanh})[2]  # pylint: disable=eval-used

  def inputs(m):
    return np.random.RandomState(m).randn(m, *shape[1:]).astype(dtype)
  x = tf.constant(inputs(shape[0]))

  def traced():
    f = tf.function(lambda x: kernel_fn(x, None, ('nngp', 'ntk')),
                    autograph=False)
    return f.get_concrete_function(x)

  def call(fn):
    return lambda: fn(x).ntk.numpy()
  out['trace_s'], concrete = _clock(traced)
  ops = concrete.graph.get_operations()
  out['ops'] = len(ops)
  out['xla_clusters'] = sum(op.type in ('PartitionedCall',
                                        'StatefulPartitionedCall')
                            for op in ops)
  out['xla_first_s'], _ = _clock(call(concrete))
  out['xla_steady_s'], _ = _clock(call(concrete))
  with nt_gp.compilation(jit_compile=False):
    out['graph_trace_s'], concrete = _clock(traced)
    out['graph_first_s'], _ = _clock(call(concrete))
    out['graph_steady_s'], _ = _clock(call(concrete))
  for key, m in (('public_first_s', shape[0] + 1),
                 ('public_new_shape_s', shape[0] + 2)):
    xm = inputs(m)
    out[key], _ = _clock(lambda: kernel_fn(xm, None, ('nngp', 'ntk'))  # pylint: disable=cell-var-from-loop
                         .ntk.numpy())
  print(json.dumps(out), flush=True)


def cache_child(name, dtype, n):
  """A fresh process's first call of the public `kernel_fn` (runtime started
  first, as in `compare.py`); prints one JSON line. `main` runs it twice
  with the same persistent XLA cache directory: cold, then warm."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  tf.zeros(()).numpy()
  spec = ALL_WORKLOADS[name]
  shape = ((n or spec['shape'][0]),) + tuple(spec['shape'][1:])
  x = np.random.RandomState(0).randn(*shape).astype(dtype)
  kernel_fn = eval(spec['net'], {'stax': stax, 'tanh': tf.tanh})[2]  # pylint: disable=eval-used
  first, _ = _clock(lambda: kernel_fn(x, None, ('nngp', 'ntk')).ntk.numpy())
  print(json.dumps({'first_s': first}), flush=True)


def with_xla_cache(env, directory):
  """`env` with TensorFlow's persistent XLA cache in `directory`."""
  flags = env.get('TF_XLA_FLAGS', '')
  return dict(env, TF_XLA_FLAGS=(
      f'{flags} --tf_xla_persistent_cache_directory={directory}').strip())


def _cache_pair(name, dtype, n, env):
  """`(cold, warm)` first-call seconds with a new persistent cache."""
  out = []
  with tempfile.TemporaryDirectory() as cache:
    for _ in range(2):
      proc = subprocess.run(
          [sys.executable, __file__, '--cache-child', name, dtype, str(n)],
          capture_output=True, text=True, env=with_xla_cache(env, cache),
          check=False)
      if proc.returncode:
        return None
      out.append(json.loads(proc.stdout.strip().splitlines()[-1])['first_s'])
  return tuple(out)


COLUMNS = [('start_eager_s', 'TF start: eager / tf.function / XLA'),
           ('trace_s', 'trace'), ('ops', 'graph ops / XLA clusters'),
           ('xla_first_s', 'XLA: compile + run'), ('xla_steady_s', 'XLA: run'),
           ('graph_trace_s', 'graph: trace'),
           ('graph_first_s', 'graph: optimise + run'),
           ('graph_steady_s', 'graph: run'),
           ('public_first_s', 'kernel_fn on N+1'),
           ('public_new_shape_s', 'kernel_fn on N+2'),
           ('cache_cold_s', 'first call, XLA cache: cold / warm')]

INTRO = (
    'One fresh process per row measures, in this order: TensorFlow\'s '
    'one-time start (first eager op, first `tf.function`, first XLA-compiled '
    'function, each on a scalar); the Python tracing of the layer rules into '
    'one graph (`get_concrete_function`), with the number of ops and of XLA '
    'clusters (compiled covariance maps) in it; the first call of that graph '
    '(TensorFlow\'s graph optimisation, the XLA compilation of each cluster, '
    'the run) and a second call; the same traced again with '
    '`nt_gp.config.jit_compile = False` (graph mode, no XLA); then the public '
    '`kernel_fn` in the default configuration on N+1 and N+2 inputs (new '
    'input sizes). The last column is the '
    'first call of `kernel_fn` on N inputs in two more fresh processes that '
    'share a new persistent XLA cache directory (`TF_XLA_FLAGS='
    '--tf_xla_persistent_cache_directory=DIR`, see docs/performance.md): '
    'the first process compiles and fills it, the second loads the compiled '
    'maps from it. Times in seconds.')


def _cells(r):
  cells = [f'{r["start_eager_s"]:.2f} / {r["start_function_s"]:.2f} / '
           f'{r["start_xla_s"]:.2f}', f'{r["trace_s"]:.2f}',
           f'{r["ops"]} / {r["xla_clusters"]}']
  cells += [f'{r[k]:.3f}' for k, _ in COLUMNS[3:-1]]
  return cells + ([f'{r["cache_cold_s"]:.3f} / {r["cache_warm_s"]:.3f}']
                  if 'cache_cold_s' in r else ['failed'])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('workloads', nargs='*', default=list(ALL_WORKLOADS))
  parser.add_argument('--dtypes', default='float32,float64')
  parser.add_argument('--n', type=int, default=None,
                      help='number of inputs instead of the workload\'s')
  parser.add_argument('--out', default=str(DOCS / 'first_call.md'),
                      help='Markdown page ("" to skip)')
  parser.add_argument('--child', nargs=3, help=argparse.SUPPRESS)
  parser.add_argument('--cache-child', nargs=3, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child or args.cache_child:
    name, dtype, n = args.child or args.cache_child
    (child if args.child else cache_child)(name, dtype, int(n))
    return 0
  unknown = [w for w in args.workloads if w not in ALL_WORKLOADS]
  if unknown:
    parser.error(f'unknown workloads {unknown}; choose from '
                 f'{sorted(ALL_WORKLOADS)}')
  if args.out and pathlib.Path(args.out).resolve().parent == DOCS and args.n:
    parser.error('the docs page needs full-size workloads; pass --out '
                 'elsewhere (or "")')
  report = Report('Where the first call of a kernel_fn spends its time', INTRO)
  rows = []
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  for name in args.workloads:
    for dtype in args.dtypes.split(','):
      proc = subprocess.run(
          [sys.executable, __file__, '--child', name, dtype, str(args.n or 0)],
          capture_output=True, text=True, env=env, check=False)
      if proc.returncode:
        report.say(f'{name} {dtype}: failed\n{proc.stderr[-1500:]}')
        continue
      r = json.loads(proc.stdout.strip().splitlines()[-1])
      pair = _cache_pair(name, dtype, args.n or 0, env)
      if pair:
        r['cache_cold_s'], r['cache_warm_s'] = pair
      rows.append([name, dtype] + _cells(r))
      report.say(f'{name} {dtype}: ' + json.dumps(
          {k: round(v, 3) for k, v in r.items()}))
  report.table(['workload', 'dtype'] + [c for _, c in COLUMNS], rows)
  report.write(args.out)
  return 0


if __name__ == '__main__':
  sys.exit(main())
