"""Time and peak memory of `ElementwiseNumerical` (any activation by quadrature).

Usage:
  python benchmarks/numerical_memory.py [--n 500,2000] [--deg 25]
      [--layers 1,2] [--repeats 3] [--baseline-tree PATH [--baseline-label
      NAME]] [--out PAGE.md]

Workload: ``Dense(512, 1.5, 0.1) -> ElementwiseNumerical(tanh, deg)`` repeated
`layers` times, then ``Dense(1)``, on N random normal inputs of dimension 16,
float32; ``kernel_fn(x, None, ('nngp', 'ntk'))``. Every measurement is a fresh
process (peak resident memory is that process's VmHWM): the first call
(tracing and compilation included), then the median of `--repeats` calls.
The libraries run one after the other for each size: nt_gp, nt_gp from
another source tree (`--baseline-tree`, e.g. a checkout of an earlier
version) and neural-tangents 0.6.5 (`jax.jit`, CPU; its virtualenv is found
as in `compare.py`). Each child process is limited to `--memory-limit-gb` of
address space growth (neural-tangents materialises the deg² quadrature grid
for every kernel entry and would otherwise take the machine); a run that
fails or times out is reported as such. The kernels of all runs are compared
by their sums.
"""
import argparse
import json
import os
import pathlib
import re
import shlex
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from report import DOCS, Report  # pylint: disable=g-import-not-at-top,wrong-import-position


def _network(stax, tanh, deg, layers):
  parts = []
  for _ in range(layers):
    parts += [stax.Dense(512, W_std=1.5, b_std=0.1),
              stax.ElementwiseNumerical(tanh, deg=deg)]
  return stax.serial(*parts, stax.Dense(1))[2]


def child(lib, n, deg, layers, repeats):
  """Runs in the measured process; prints one JSON line."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from machine import peak_rss_bytes, timed_calls  # pylint: disable=g-import-not-at-top
  x = np.random.RandomState(0).randn(n, 16).astype(np.float32)
  if lib == 'neural_tangents':
    import jax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    from neural_tangents import stax  # pylint: disable=g-import-not-at-top
    kernel_fn = jax.jit(_network(stax, jnp.tanh, deg, layers),
                        static_argnames=('get',))
    x = jnp.asarray(x)

    def run():
      k = kernel_fn(x, None, get=('nngp', 'ntk'))
      return [np.asarray(k.nngp), np.asarray(k.ntk)]
  else:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from nt_gp import stax  # pylint: disable=g-import-not-at-top
    kernel_fn = _network(stax, tf.tanh, deg, layers)

    def run():
      k = kernel_fn(x, None, ('nngp', 'ntk'))
      return [k.nngp.numpy(), k.ntk.numpy()]
  first, times, k = timed_calls(run, repeats)
  print(json.dumps(dict(
      first_s=first, median_s=float(np.median(times)), times_s=times,
      peak_rss_gb=peak_rss_bytes() / 1e9,
      finite=bool(all(np.all(np.isfinite(v)) for v in k)),
      nngp_sum=float(np.sum(k[0], dtype=np.float64)),
      ntk_sum=float(np.sum(k[1], dtype=np.float64)))), flush=True)


def _limit_memory(gigabytes):
  def apply():
    import resource  # pylint: disable=g-import-not-at-top
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = int(gigabytes * 2**30)
    if hard != resource.RLIM_INFINITY:
      limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
  return apply


def measure(python, lib, n, deg, layers, repeats, memory_gb, timeout,
            tree=None):
  """One fresh process; its JSON summary or ``{'error': ...}``."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu')
  if tree:
    env['PYTHONPATH'] = os.pathsep.join(
        [str(tree)] + [p for p in [env.get('PYTHONPATH')] if p])
  cmd = [python, str(pathlib.Path(__file__).resolve()), '--child', lib,
         str(n), str(deg), str(layers), str(repeats)]
  try:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                          timeout=timeout,
                          preexec_fn=_limit_memory(memory_gb))
  except subprocess.TimeoutExpired:
    return {'error': f'timed out after {timeout} s'}
  lines = proc.stdout.strip().splitlines()
  if proc.returncode != 0 or not lines:
    tail = [l.strip() for l in proc.stderr.strip().splitlines() if l.strip()]
    errors = [l for l in tail if re.match(r'[\w.]*(Error|Exception)\b', l)]
    why = ((errors or tail)[-1][:160] if tail
           else f'exit code {proc.returncode}')
    return {'error': f'failed (exit {proc.returncode}): {why}'}
  return json.loads(lines[-1])


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--n', default='500,2000', help='input counts')
  parser.add_argument('--deg', type=int, default=25)
  parser.add_argument('--layers', default='1,2',
                      help='numbers of hidden layers')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--baseline-tree', default=None,
                      help='also run nt_gp from this source tree')
  parser.add_argument('--baseline-label', default=None,
                      help='name of the --baseline-tree rows')
  parser.add_argument('--no-reference', action='store_true',
                      help='skip neural-tangents')
  parser.add_argument('--memory-limit-gb', type=float, default=10.,
                      help='address-space growth allowed to each process')
  parser.add_argument('--timeout', type=int, default=900,
                      help='seconds allowed to each process')
  parser.add_argument('--out', default=str(DOCS / 'numerical.md'),
                      help='Markdown page for the docs ("" to skip)')
  args = parser.parse_args(argv)
  # Imported here, not at the top: compare.py puts this checkout first on
  # sys.path, which must not happen in a child measuring --baseline-tree.
  from compare import reference_python  # pylint: disable=g-import-not-at-top
  ref = None if args.no_reference else reference_python()
  libs = [('nt_gp', sys.executable, 'nt_gp', None)]
  if args.baseline_tree:
    libs.append((args.baseline_label or f'nt_gp ({args.baseline_tree})',
                 sys.executable, 'nt_gp', args.baseline_tree))
  if ref:
    libs.append(('neural-tangents 0.6.5', ref, 'neural_tangents', None))
  report = Report(
      'ElementwiseNumerical: time and peak memory',
      f'NNGP and NTK (`kernel_fn(x, None, (\'nngp\', \'ntk\'))`, float32) of '
      f'`Dense(512, 1.5, 0.1) -> ElementwiseNumerical(tanh, deg={args.deg})` '
      f'repeated for each hidden layer, then `Dense(1)`, on N random inputs '
      f'of dimension 16. Each row is a fresh process: its first call '
      f'(tracing and compilation included), the median of {args.repeats} '
      f'further calls, and its peak resident memory (VmHWM). Processes may '
      f'grow by at most {args.memory_limit_gb:g} GB and run '
      f'{args.timeout} s. "kernel sums" compares the sums of nngp and ntk '
      f'with the first row of the same size (relative difference).')
  rows = []
  for layers in [int(v) for v in args.layers.split(',')]:
    for n in [int(v) for v in args.n.split(',')]:
      first = None
      for label, python, lib, tree in libs:
        out = measure(python, lib, n, args.deg, layers, args.repeats,
                      args.memory_limit_gb, args.timeout, tree)
        if 'error' in out:
          report.say(f'{layers} layer(s) N={n} {label}: {out["error"]}')
          rows.append([layers, n, label, '-', '-', '-', out['error']])
          continue
        agree = '(reference row)'
        if first is None:
          first = out
        else:
          agree = '{:.1e}'.format(max(
              abs(out[k] - first[k]) / max(abs(first[k]), 1e-30)
              for k in ('nngp_sum', 'ntk_sum')))
        if not out['finite']:
          agree = 'NON-FINITE kernel'
        report.say(f'{layers} layer(s) N={n} {label}: first call '
                   f'{out["first_s"]:.2f} s, median {out["median_s"]:.2f} s '
                   f'(calls {", ".join(f"{t:.2f}" for t in out["times_s"])}), '
                   f'peak {out["peak_rss_gb"]:.2f} GB, kernel sums {agree}')
        rows.append([layers, n, label, f'{out["first_s"]:.2f}',
                     f'{out["median_s"]:.2f}', f'{out["peak_rss_gb"]:.2f}',
                     agree])
  report.table(['hidden layers', 'N', 'library', 'first call (s)',
                'median call (s)', 'peak memory (GB)', 'kernel sums'], rows)
  # Quoted, so that the page's command can be pasted (labels have spaces).
  report.write(args.out, command='python ' + shlex.join(
      [os.path.relpath(__file__, HERE.parent)] + list(
          sys.argv[1:] if argv is None else argv)))
  return 0


if __name__ == '__main__':
  if len(sys.argv) > 1 and sys.argv[1] == '--child':
    child(sys.argv[2], *[int(v) for v in sys.argv[3:7]])
  else:
    sys.exit(main())
