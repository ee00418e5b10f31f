"""Hyperparameter gradients: nt_gp vs neural-tangents, time and peak memory.

Usage:
  python benchmarks/hypergrad.py [WORKLOAD ...] [--dtypes float32,float64]
      [--gets nngp,ntk] [--modes eager,function] [--repeats 3] [--calls 2]
      [--n N | --tiny] [--base TREE] [--out docs/benchmarks/hypergrad.md]
      [--json F]

The step a GP's hyperparameter optimisation repeats: the value and the
gradient of `sum(K)` with respect to `(W_std, b_std)`, where `K` is the NNGP
or NTK of a network whose every layer uses those two hyperparameters, on `N`
inputs (`x2 = None`).

* nt_gp: `nt_gp.tfp.NeuralKernel` with `tf.Variable` hyperparameters,
  `K = kernel.matrix(x, x)` under a `tf.GradientTape`, called eagerly
  (`eager`) or inside one `tf.function` (`function`).
* neural-tangents 0.6.5: `jax.jit(jax.value_and_grad(...))` of the same sum
  (the reference env of tools/reference_env.sh or $NT_REFERENCE_PYTHON).

Every measurement is a fresh process (this file with `--child`, run by
either library's python and importing only that library), so each peak
resident memory (VmHWM) belongs to one library and one mode: the process
makes a first call (trace + compile + run, reported as "first call") and
then `--calls` timed calls (their median is the process's time). Each
configuration runs `--repeats` such processes per library/mode, the
libraries' processes interleaved (ABC, CBA, ...) so drifts of the machine's
load affect all alike; the table gives medians over the processes, peak
memory the largest. Both libraries compute the same numbers: the value and
both derivatives must agree (`compare.CHECKSUM_RTOL`), else the row says
MISMATCH and the script exits with status 1 after writing the page, unless
in float32 the float64 run of the same configuration (where the libraries
agree) shows nt_gp is the closer one: then the row names which library is
off and by how much (neural-tangents' float32 Myrtle-5 gradients are off by
5-10%; finite differences in float64 agree with both libraries' float64).

With `--base TREE`, nt_gp from another source tree (e.g. the main branch's,
exported with `git archive`) runs beside this checkout's, interleaved too,
as rows with mode "eager (base)" / "function (base)": before and after a
change, measured in the same invocation.

Workloads (`WORKLOADS`): `mlp3` = depth-3 ReLU MLP (Dense(512) + Relu) x 3
+ Dense(1) on 4000 x 256; `myrtle5` = Myrtle-5 of `benchmarks/workloads.py`
(3x3 SAME convs, ReLU, two 2x2 average pools, GAP, Dense(10)) on 32 images
16x16x3, with b_std = 0.1 so that both derivatives are non-zero. Measured
only when named (`FIRST_STEP_WORKLOADS`, small inputs, where the first step
is what a user waits for): `mlp3_n1000` = `mlp3` on 1000 inputs;
`attention` = a transformer block (Dense(16), softmax self-attention with a
residual, LayerNorm, Dense(16) + ReLU, GAP, Dense(1); W_std/b_std in every
Dense and the attention's b_std) on 64 sequences of 16 tokens x 8 features.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from machine import peak_rss_bytes, timed_calls  # pylint: disable=g-import-not-at-top,wrong-import-position

W_STD, B_STD = 1.5, 0.1
WORKLOADS = {
    'mlp3': dict(
        net='stax.serial(*[stax.Dense(512, W_std=W, b_std=b), stax.Relu()] '
            '* 3, stax.Dense(1, W_std=W, b_std=b))',
        shape=(4000, 256), tiny_n=12,
        what='depth-3 ReLU MLP on 4000 x 256'),
    'myrtle5': dict(
        net='stax.serial('
            '*[stax.Conv(1, (3, 3), padding="SAME", W_std=W, b_std=b), '
            'stax.Relu()] * 2, stax.AvgPool((2, 2), (2, 2)), '
            'stax.Conv(1, (3, 3), padding="SAME", W_std=W, b_std=b), '
            'stax.Relu(), stax.AvgPool((2, 2), (2, 2)), '
            'stax.Conv(1, (3, 3), padding="SAME", W_std=W, b_std=b), '
            'stax.Relu(), stax.GlobalAvgPool(), '
            'stax.Dense(10, W_std=W, b_std=b))',
        shape=(32, 16, 16, 3), tiny_n=2,
        what='Myrtle-5 on 32 images 16x16x3'),
}
# Small inputs, where the first step (trace, compile, run of the value and
# its gradient) is most of what a user waits for: marginal-likelihood
# training of a GP on a few thousand points or fewer. Measured only when
# named.
FIRST_STEP_WORKLOADS = {
    'mlp3_n1000': dict(WORKLOADS['mlp3'], shape=(1000, 256),
                       what='depth-3 ReLU MLP on 1000 x 256'),
    'attention': dict(
        net='stax.serial(stax.Dense(16, W_std=W, b_std=b), stax.FanOut(2), '
            'stax.parallel(stax.Identity(), stax.GlobalSelfAttention('
            '16, 4, 4, 2, W_key_std=1.1, W_value_std=1.2, W_query_std=0.9, '
            'W_out_std=1.0, b_std=b)), stax.FanInSum(), stax.LayerNorm(), '
            'stax.Dense(16, W_std=W, b_std=b), stax.Relu(), '
            'stax.GlobalAvgPool(), stax.Dense(1, W_std=W, b_std=b))',
        shape=(64, 16, 8), tiny_n=3,
        what='a transformer block on 64 sequences of 16 tokens x 8 '
             'features'),
}
ALL_WORKLOADS = {**WORKLOADS, **FIRST_STEP_WORKLOADS}
LIBS = (('nt_gp', 'eager'), ('nt_gp', 'function'), ('neural_tangents', 'jit'))


# ----------------------------------------------------------------------------
# One measurement (a child process, under either library's python).

def _inputs(workload, dtype, n):
  shape = (n,) + tuple(ALL_WORKLOADS[workload]['shape'][1:])
  return np.random.RandomState(0).randn(*shape).astype(dtype)


def _nt_gp_step(workload, dtype, get, mode, x):
  """`step() -> (value, dW, db)` with nt_gp."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  from nt_gp.tfp import NeuralKernel  # pylint: disable=g-import-not-at-top
  net = ALL_WORKLOADS[workload]['net']

  def architecture(W, b):  # pylint: disable=invalid-name
    return eval(net, {'stax': stax, 'W': W, 'b': b})  # pylint: disable=eval-used
  w = tf.Variable(W_STD, dtype=dtype)
  b = tf.Variable(B_STD, dtype=dtype)
  kernel = NeuralKernel(architecture, get=get, feature_ndims=x.ndim - 1,
                        W=w, b=b)
  x = tf.constant(x)

  def step():
    with tf.GradientTape() as tape:
      value = tf.reduce_sum(kernel.matrix(x, x))
    dw, db = tape.gradient(value, [w, b])
    return value, dw, db
  if mode == 'function':
    step = tf.function(step, autograph=False)
  return lambda: [float(t.numpy()) for t in step()]


def _nt_step(workload, dtype, get, x):
  """`step() -> (value, dW, db)` with neural-tangents, `jit(value_and_grad)`."""
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_enable_x64', dtype == 'float64')
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from neural_tangents import stax  # pylint: disable=g-import-not-at-top
  net = ALL_WORKLOADS[workload]['net']
  x = jnp.asarray(x)

  def loss(W, b):  # pylint: disable=invalid-name
    kernel_fn = eval(net, {'stax': stax, 'W': W, 'b': b})[2]  # pylint: disable=eval-used
    return jnp.sum(kernel_fn(x, None, get))
  fn = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  w, b = jnp.asarray(W_STD, dtype), jnp.asarray(B_STD, dtype)

  def step():
    value, (dw, db) = fn(w, b)
    return [float(value), float(dw), float(db)]
  return step


def child(lib, workload, dtype, get, mode, n, calls):
  """One measurement; returns its summary (also printed as JSON by main)."""
  x = _inputs(workload, dtype, n)
  if lib == 'nt_gp':
    step = _nt_gp_step(workload, dtype, get, mode, x)
  else:
    step = _nt_step(workload, dtype, get, x)
  first, times, out = timed_calls(step, calls)
  return dict(lib=lib, mode=mode, first_s=first, times_s=times,
              median_s=float(np.median(times)),
              peak_rss_gb=peak_rss_bytes() / 1e9, value=out[0],
              d_W_std=out[1], d_b_std=out[2])


# ----------------------------------------------------------------------------
# The driver.

def _run_child(python, lib, mode, workload, dtype, get, n, calls,
               tree=None):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu')
  if tree:
    env['PYTHONPATH'] = str(tree)
  cmd = [python, str(HERE / 'hypergrad.py'), '--child', lib, workload, dtype,
         get, mode, str(n), str(calls)]
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                        check=False)
  lines = proc.stdout.strip().splitlines()
  if proc.returncode or not lines:
    return {'error': (proc.stderr or proc.stdout)[-2000:] or
                     f'exited with {proc.returncode}'}
  return json.loads(lines[-1])


def measure(pythons, workload, dtype, get, n, repeats, calls, modes,
            base=None):
  """`{(lib, mode): [summary per process]}`, processes interleaved; with
  `base` (another source tree of nt_gp) also `('base', mode)`."""
  keys = [k for k in LIBS if pythons.get(k[0]) and
          (k[0] != 'nt_gp' or k[1] in modes)]
  if base:
    keys += [('base', m) for m in modes]
  runs = {key: [] for key in keys}
  for r in range(repeats):
    for label, mode in (keys if r % 2 == 0 else keys[::-1]):
      lib = 'nt_gp' if label == 'base' else label
      runs[(label, mode)].append(_run_child(
          pythons[lib], lib, mode, workload, dtype, get, n, calls,
          str(pathlib.Path(base).resolve()) if label == 'base' else None))
  return runs


def combine(summaries):
  """Median time and first call over processes, largest peak; or error."""
  errors = [s['error'] for s in summaries if 'error' in s]
  if errors:
    return {'error': errors[0]}
  return dict(median_s=statistics.median(s['median_s'] for s in summaries),
              first_s=statistics.median(s['first_s'] for s in summaries),
              firsts_s=[s['first_s'] for s in summaries],
              peak_rss_gb=max(s['peak_rss_gb'] for s in summaries),
              value=summaries[-1]['value'], d_W_std=summaries[-1]['d_W_std'],
              d_b_std=summaries[-1]['d_b_std'])


def difference(ours, theirs) -> float:
  """Largest relative difference of the value and the two derivatives."""
  worst = 0.
  for key in ('value', 'd_W_std', 'd_b_std'):
    a, b = ours[key], theirs[key]
    worst = max(worst, abs(a - b) / max(abs(a), abs(b), 1e-300))
  return worst


def main(argv=None):
  argv = sys.argv[1:] if argv is None else argv
  if argv and argv[0] == '--child':
    lib, workload, dtype, get, mode, n, calls = argv[1:8]
    print(json.dumps(child(lib, workload, dtype, get, mode, int(n),
                           int(calls))), flush=True)
    return 0
  from compare import CHECKSUM_RTOL, reference_python  # pylint: disable=g-import-not-at-top
  from report import DOCS, Report  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('workloads', nargs='*', default=list(WORKLOADS),
                      help=f'of {", ".join(ALL_WORKLOADS)} (default: '
                           f'{" ".join(WORKLOADS)})')
  parser.add_argument('--dtypes', default='float32,float64')
  parser.add_argument('--gets', default='nngp,ntk')
  parser.add_argument('--modes', default='eager,function',
                      help='nt_gp modes: eager and/or function')
  parser.add_argument('--repeats', type=int, default=3,
                      help='processes per library and mode (default 3)')
  parser.add_argument('--calls', type=int, default=2,
                      help='timed calls per process after the first')
  parser.add_argument('--n', type=int, default=None,
                      help='number of inputs instead of the workload\'s')
  parser.add_argument('--tiny', action='store_true',
                      help='a few inputs per workload, 1 process each (smoke '
                           'run)')
  parser.add_argument('--base', default=None,
                      help='another source tree of nt_gp (a directory '
                           'holding nt_gp/), measured beside this one as '
                           '"base" rows: before/after a change')
  parser.add_argument('--json', help='also write the results to this file')
  parser.add_argument('--out', default=str(DOCS / 'hypergrad.md'),
                      help='Markdown page ("" to skip)')
  args = parser.parse_args(argv)
  unknown = [w for w in args.workloads if w not in ALL_WORKLOADS]
  if unknown:
    parser.error(f'unknown workload(s) {", ".join(unknown)}; choose from '
                 f'{", ".join(ALL_WORKLOADS)}')
  if args.tiny:
    args.repeats, args.calls = 1, 1
  small = args.tiny or args.n or args.repeats < 3
  if args.out and pathlib.Path(args.out).resolve().parent == DOCS and small:
    parser.error('the docs page needs full-size workloads and at least 3 '
                 'repeats; pass --out elsewhere (or "")')
  modes = args.modes.split(',')
  ref = reference_python()
  pythons = {'nt_gp': sys.executable, 'neural_tangents': ref}
  report = Report(
      'Hyperparameter gradients: nt_gp vs neural-tangents 0.6.5',
      'Value and gradient of `sum(K)` with respect to `(W_std, b_std)` '
      '(every layer\'s), K the NNGP or NTK of the inputs with themselves: '
      'nt_gp through `nt_gp.tfp.NeuralKernel(...).matrix(x, x)` under a '
      '`tf.GradientTape`, eagerly or inside a `tf.function`; '
      'neural-tangents as `jax.jit(jax.value_and_grad(...))`. Each '
      f'library/mode runs in {args.repeats} fresh processes, interleaved; '
      'a process makes a first call (trace, compile, run: "first call") '
      f'and then {args.calls} timed calls. Times are medians in seconds, '
      'peaks the largest resident memory (VmHWM) of a process, ratios '
      'nt_gp / neural-tangents; the value and both derivatives of the two '
      'libraries must agree ("gradients"; where they differ in float32, '
      'the float64 run of the same row, in which they agree, says which is '
      'closer). Targets: time ratio <= 0.5, '
      'memory ratio <= 1.0. Workloads: '
      + '; '.join(f'`{w}` = {ALL_WORKLOADS[w]["what"]}'
                  for w in args.workloads) + ' (see the script).')
  header = ['workload', 'dtype', 'get', 'mode', 'nt_gp (s)',
            'neural-tangents (s)', 'time ratio', 'nt_gp peak (GB)',
            'neural-tangents peak (GB)', 'memory ratio', 'gradients',
            'first call (s)', 'first-call ratio']
  rows, results, mismatches = [], [], []
  for workload in args.workloads:
    n = args.n or (ALL_WORKLOADS[workload]['tiny_n'] if args.tiny else
                   ALL_WORKLOADS[workload]['shape'][0])
    for dtype in args.dtypes.split(','):
      for get in args.gets.split(','):
        runs = measure(pythons, workload, dtype, get, n, args.repeats,
                       args.calls, modes, args.base)
        theirs = combine(runs.get(('neural_tangents', 'jit'),
                                  [{'error': 'reference env not found'}]))
        if 'error' in theirs:
          report.say(f'{workload} {dtype} {get}: neural-tangents failed: '
                     f'{theirs["error"].strip()[-300:]}')
        for (lib, mode), summaries in runs.items():
          if lib == 'neural_tangents':
            continue
          mode = mode if lib == 'nt_gp' else f'{mode} (base)'
          ours = combine(summaries)
          results.append(dict(workload=workload, dtype=dtype, get=get,
                              mode=mode, n=n, nt_gp=ours, neural_tangents=theirs))
          if 'error' in ours:
            report.say(f'{workload} {dtype} {get} {mode}: nt_gp failed: '
                       f'{ours["error"].strip()[-1500:]}')
            mismatches.append(f'{workload} {dtype} {get} {mode} (failed)')
            continue
          row = _row(report, workload, dtype, get, mode, ours, theirs,
                     CHECKSUM_RTOL[dtype])
          rows.append(row)
          results[-1]['row'] = row
  for result in results:
    row = result.pop('row', None)
    if row is None or not row[10].startswith('MISMATCH'):
      continue
    verdict = arbitrate(result, results)
    if verdict:
      row[10] += f'; {verdict}'
      report.say(f'{result["workload"]} {result["dtype"]} {result["get"]} '
                 f'{result["mode"]}: {verdict}')
    if not verdict or not verdict.startswith('nt_gp closer'):
      mismatches.append(f'{result["workload"]} {result["dtype"]} '
                        f'{result["get"]} {result["mode"]}')
  report.table(header, rows)
  if mismatches:
    report.say(f'MISMATCH or failure: {", ".join(mismatches)}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=1)
  report.write(args.out)
  return 1 if mismatches else 0


def arbitrate(result, results):
  """When the libraries disagree in float32: which is closer to float64.

  The float64 run of the same workload, `get` and mode, where both libraries
  agree, is the reference (their shared value is what both float32 runs
  approximate). Returns None without one, else a text such as
  ``'nt_gp closer to float64: 1.2e-03 vs 4.8e-02'``; the disagreement counts
  as nt_gp's failure unless nt_gp is the closer one and within 1e-2.
  """
  if result['dtype'] != 'float32':
    return None
  for ref in results:
    if (ref['dtype'] == 'float64' and ref['workload'] == result['workload']
        and ref['get'] == result['get'] and ref['mode'] == result['mode']
        and 'error' not in ref['nt_gp']
        and 'error' not in ref['neural_tangents']
        and difference(ref['nt_gp'], ref['neural_tangents']) <= 1e-7):
      ours = difference(result['nt_gp'], ref['nt_gp'])
      theirs = difference(result['neural_tangents'], ref['nt_gp'])
      who = ('nt_gp closer' if ours < theirs and ours <= 1e-2 else
             'neural-tangents closer')
      return f'{who} to float64: {ours:.1e} vs {theirs:.1e}'
  return None


def _row(report, workload, dtype, get, mode, ours, theirs, rtol):
  """Prints one configuration's line; returns its table row."""
  line = (f'{workload} {dtype} {get} {mode}: nt_gp {ours["median_s"]:.3f} s '
          f'(first {ours["first_s"]:.2f} s, peak {ours["peak_rss_gb"]:.2f} GB)')
  row = [workload, dtype, get, mode, f'{ours["median_s"]:.3f}', '', '',
         f'{ours["peak_rss_gb"]:.2f}', '', '', '', f'{ours["first_s"]:.2f}',
         '']
  if 'error' not in theirs:
    ratio = ours['median_s'] / theirs['median_s']
    mem = ours['peak_rss_gb'] / theirs['peak_rss_gb']
    diff = difference(ours, theirs)
    agree = 'agree' if diff <= rtol else 'MISMATCH'
    line += (f' | neural-tangents {theirs["median_s"]:.3f} s (first '
             f'{theirs["first_s"]:.2f} s, peak {theirs["peak_rss_gb"]:.2f} GB)'
             f' | time {ratio:.2f}, memory {mem:.2f}, gradients {agree} '
             f'({diff:.1e})')
    row[5:7] = [f'{theirs["median_s"]:.3f}', f'{ratio:.2f}']
    row[8:11] = [f'{theirs["peak_rss_gb"]:.2f}', f'{mem:.2f}',
                 f'{agree} ({diff:.1e})']
    row[11] = f'{ours["first_s"]:.2f} / {theirs["first_s"]:.2f}'
    row[12] = f'{ours["first_s"] / theirs["first_s"]:.2f}'
  report.say(line)
  each = lambda r: ', '.join(f'{t:.2f}' for t in r.get('firsts_s', []))
  report.say(f'    first calls, each process: nt_gp {each(ours)}' + (
      '' if 'error' in theirs else f'; neural-tangents {each(theirs)}'))
  return row


if __name__ == '__main__':
  sys.exit(main())
