"""nt_gp vs neural-tangents on the same workloads, in the same invocation.

Usage:
  python benchmarks/compare.py [WORKLOAD ...] [--dtypes float32,float64]
      [--repeats 5] [--first-calls 5] [--new-shapes 3] [--n N]
      [--out docs/benchmarks/kernels.md] [--json F]

For each workload and dtype both libraries run at the same time, each in its
own process, each library in an environment with only its own requirements:
nt_gp in that of tools/lean_env.sh (what `pip install nt_gp` gives, without
the scikit-learn and matplotlib of the test extras, which Keras 3 would
import with TensorFlow) or `--nt-gp-python` / $NT_GP_PYTHON, else in this
python; neural-tangents in the reference env of tools/reference_env.sh or
$NT_REFERENCE_PYTHON. See `_run_one.py`: after a
first (compiling) call, reported separately, the timed calls of
`kernel_fn(x, None, ('nngp', 'ntk'))` alternate between the two processes
(ABBA order, `--repeats` each, at least 5 for the docs), so drifts of the
machine's load affect both alike; the medians are compared. Before each
call both processes are left idle for `PAUSE_S`, so that neither runs while
the other is still winding down. The peak RSS
of each process is reported too.

What users feel before the steady state is reported beside it: the first
call (trace + compile + run, in a fresh process: the median over
`--first-calls` fresh processes per library, started one at a time, the
libraries alternating, since one first call swings by +-15% with the
machine's state) and the new-shape call
(after the timed calls, the same kernel function on N+1, N+2, ... inputs,
`--new-shapes` sizes, each a size it has not seen: what every new test-set
size of a GP costs), interleaved like the timed calls; the table gives the
first-call and new-shape ratios (median of the new-shape calls).

Both libraries must compute the same kernel: the float64 sums of their nngp
and ntk must agree to `CHECKSUM_RTOL` (1e-3 relative in float32, 1e-7 in
float64), else the row says MISMATCH and the script exits with status 1
after writing the page (a faster but different kernel is not a result). The
machine's memory-copy bandwidth and matmul rate are measured in the same
run, and the achieved fraction for each workload's dominant cost is printed.
The table goes to `--out` (default `docs/benchmarks/kernels.md`; `--out ''`
skips it), and from there into the README's performance table
(`report.refresh_quotes`).
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from machine import machine_limits, traffic_estimate  # pylint: disable=g-import-not-at-top
from report import DOCS, Report  # pylint: disable=g-import-not-at-top
from workloads import ALL_WORKLOADS as WORKLOADS  # pylint: disable=g-import-not-at-top

# A few times the square root of each dtype's epsilon: ReLU's arc-cosine
# kernel turns rounding of a correlation near 1 into an error of its square
# root (an 8-input mlp5 differs by 1.2e-4 in float32, 6e-9 in float64). A
# different network or a dropped term changes the sums by far more.
CHECKSUM_RTOL = {'float32': 1e-3, 'float64': 1e-7}
MIN_REPEATS = 5
# Seconds each process is left idle before a call: the other library's
# process can still be busy for a moment after it answers (freeing buffers,
# worker threads winding down), and on 2 cores a 30 ms call then runs at
# half speed or worse (measured: numerical_n500 float32, 0.03 -> 0.09 s).
PAUSE_S = 0.05


def reference_python():
  env = os.environ.get('NT_REFERENCE_PYTHON')
  if env:
    return env
  default = pathlib.Path.home() / '.cache' / 'nt-reference' / 'bin' / 'python'
  return str(default) if default.exists() else None


def nt_gp_python(explicit=None):
  """`(python, description)` of the environment nt_gp runs in: `explicit`
  (`--nt-gp-python`), else $NT_GP_PYTHON, else tools/lean_env.sh's
  environment ($NT_GP_LEAN_DIR or its default) if built, else this python."""
  chosen = explicit or os.environ.get('NT_GP_PYTHON')
  if chosen:
    return chosen, chosen
  lean = pathlib.Path(os.environ.get('NT_GP_LEAN_DIR') or (
      pathlib.Path.home() / '.cache' / 'nt_gp-lean')) / 'bin' / 'python'
  if lean.exists():
    return str(lean), ('an environment with only its requirements '
                       '(tools/lean_env.sh)')
  return sys.executable, 'the python running this script (with its extras)'


def _command(python, lib, name, dtype, n, mode):
  """`(command, environment)` of a `_run_one.py` process in `mode`."""
  cmd = [python, str(HERE / '_run_one.py'), lib, name, dtype] + (
      [str(n)] if n else []) + [mode]
  return cmd, dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu')


def first_call(python, lib, name, dtype, n=None):
  """Seconds of one first call in a fresh `_run_one.py --first-only`
  process, or None where it failed (the serving process reports why)."""
  cmd, env = _command(python, lib, name, dtype, n, '--first-only')
  time.sleep(PAUSE_S)
  proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                        text=True, env=env, check=False)
  if proc.returncode:
    return None
  return json.loads(proc.stdout.strip().splitlines()[-1])['compile_s']


class Runner:
  """One library's `_run_one.py --serve` process for one workload."""

  def __init__(self, python, lib, name, dtype, n=None):
    cmd, env = _command(python, lib, name, dtype, n, '--serve')
    self.log = tempfile.TemporaryFile('w+')   # a pipe could fill and block
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=self.log,
                                 text=True, env=env)
    self.times = []
    self.new_times = []
    self.error = None
    self.compile_s = self._read().get('compile_s')

  def _read(self):
    if self.error:
      return {}
    line = self.proc.stdout.readline()
    if not line:
      self.proc.wait()
      self.log.seek(0)
      self.error = self.log.read()[-2000:] or (
          f'exited with {self.proc.returncode}')
      return {}
    return json.loads(line)

  def _send(self, command):
    if not self.error:
      self.proc.stdin.write(command + '\n')
      self.proc.stdin.flush()

  def call(self):
    """One timed call."""
    time.sleep(PAUSE_S)
    self._send('run')
    t = self._read().get('t')
    if t is not None:
      self.times.append(t)

  def new_shape(self):
    """One call on an input size this process has not seen."""
    time.sleep(PAUSE_S)
    self._send('new')
    t = self._read().get('t_new')
    if t is not None:
      self.new_times.append(t)

  def finish(self) -> dict:
    """`_run_one.py`'s summary, or ``{'error': ...}``."""
    self._send('done')
    out = self._read()
    self.proc.wait()
    for stream in (self.proc.stdin, self.proc.stdout, self.log):
      stream.close()
    return out if out and not self.error else {'error': self.error}


def measure(ours_python, ref_python, name, dtype, repeats, n=None,
            new_shapes=0, first_calls=1):
  """`(ours, theirs)` summaries; timed calls, then `new_shapes` new-shape
  calls, interleaved ABBA; then `first_calls - 1` more fresh processes per
  library for the first call (alternating which library starts), whose
  times and median join the summaries as `first_call_times_s` and
  `first_call_median_s`."""
  ours = Runner(ours_python, 'nt_gp', name, dtype, n)
  theirs = (Runner(ref_python, 'neural_tangents', name, dtype, n)
            if ref_python else None)
  pair = [ours] if theirs is None else [ours, theirs]
  for r in range(repeats):
    for runner in (pair if r % 2 == 0 else pair[::-1]):
      runner.call()
  for r in range(new_shapes):
    for runner in (pair if r % 2 == 0 else pair[::-1]):
      runner.new_shape()
  summaries = [ours.finish(), (theirs.finish() if theirs else
                               {'error': 'reference env not found'})]
  pythons = [(ours_python, 'nt_gp'), (ref_python, 'neural_tangents')]
  live = [i for i in (0, 1) if 'error' not in summaries[i]]
  for i in live:
    summaries[i]['first_call_times_s'] = [summaries[i]['compile_s']]
  for r in range(first_calls - 1):
    for i in (live if r % 2 else live[::-1]):
      t = first_call(*pythons[i], name, dtype, n)
      if t is not None:
        summaries[i]['first_call_times_s'].append(t)
  for i in live:
    summaries[i]['first_call_median_s'] = float(statistics.median(
        summaries[i]['first_call_times_s']))
  return tuple(summaries)


def checksum_difference(ours, theirs) -> float:
  """Largest relative difference of the nngp and ntk checksums."""
  worst = 0.
  for key in ('nngp_checksum', 'ntk_checksum'):
    a, b = ours[key], theirs[key]
    worst = max(worst, abs(a - b) / max(abs(a), abs(b), 1e-300))
  return worst


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('workloads', nargs='*', default=list(WORKLOADS))
  parser.add_argument('--dtypes', default='float32,float64')
  parser.add_argument('--repeats', type=int, default=MIN_REPEATS,
                      help=f'timed calls per library (default and minimum '
                           f'for the docs: {MIN_REPEATS})')
  parser.add_argument('--first-calls', type=int, default=MIN_REPEATS,
                      help=f'fresh processes per library whose first call '
                           f'is timed (default and minimum for the docs: '
                           f'{MIN_REPEATS})')
  parser.add_argument('--new-shapes', type=int, default=3,
                      help='new-shape calls per library, each on an input '
                           'size not seen before (default 3)')
  parser.add_argument('--n', type=int, default=None,
                      help='number of inputs instead of the workload\'s '
                           '(smoke runs)')
  parser.add_argument('--json', help='also write results to this file')
  parser.add_argument('--nt-gp-python', default=None,
                      help='python to run nt_gp with (default: $NT_GP_PYTHON, '
                           'else the environment of tools/lean_env.sh if '
                           'built, else this python)')
  parser.add_argument('--out', default=str(DOCS / 'kernels.md'),
                      help='Markdown page for the docs ("" to skip)')
  args = parser.parse_args(argv)
  if args.out and pathlib.Path(args.out).resolve().parent == DOCS and (
      min(args.repeats, args.first_calls) < MIN_REPEATS or args.n):
    parser.error(f'the docs page needs full-size workloads and at least '
                 f'{MIN_REPEATS} repeats and first calls; pass --out '
                 f'elsewhere (or "")')
  ref = reference_python()
  ours_python, ours_env = nt_gp_python(args.nt_gp_python)
  report = Report(
      'Kernel computation: nt_gp vs neural-tangents 0.6.5',
      f'Time of `kernel_fn(x, None, (\'nngp\', \'ntk\'))` after a first '
      f'(compiling) call: median of {args.repeats} calls per library, the two '
      f'libraries\' calls interleaved (ABBA, each after {PAUSE_S} s of '
      f'idleness), each library in its own process '
      f'(neural-tangents with `jax.jit`, CPU, in an environment with only its '
      f'requirements; nt_gp in {ours_env}); peak resident memory of that '
      f'process. "first call" is the median over {args.first_calls} fresh '
      f'processes per library (started one at a time, the libraries '
      f'alternating) of their first call (trace, compile and run; each '
      f'process runs one full garbage collection after its imports, before '
      f'it, so that neither first call includes a collection left pending '
      f'by the imports); "new '
      f'shape" the median of {args.new_shapes} calls '
      f'of the same kernel function on N+1, N+2, ... inputs after the timed '
      f'calls (a new input size compiles again: always in neural-tangents, in '
      f'nt_gp when it starts a new size bucket, see below); times in '
      f'seconds, nt_gp / neural-tangents. The nngp and ntk of both libraries must agree (sums within '
      f'1e-3 relative in float32, 1e-7 in float64; column "checksums"). '
      f'Workloads: `mlp5` = depth-5 ReLU MLP on 4000 x 784; `cnn3_flatten` '
      f'= 3 x (3x3 SAME conv + ReLU) + Flatten + Dense on 256 images '
      f'32x32x3; `myrtle5` = Myrtle-5 (two 2x2 average pools, GAP) on 32 '
      f'images 16x16x3; `mlp3_n1000` = depth-3 ReLU MLP on 1000 x 256; '
      f'`attention` = a transformer block (softmax self-attention with '
      f'residual, LayerNorm, ReLU MLP, GAP) on 64 sequences of 16 x 8; '
      f'`numerical_n500` = tanh by quadrature (ElementwiseNumerical, degree '
      f'25) on 500 x 16 (definitions in `benchmarks/workloads.py`). nt_gp '
      f'runs in its default configuration (XLA compiled on the first call; '
      f'with the opt-in `config.graph_first_call_max_entries` a small '
      f'input\'s first call runs without XLA and the second compiles). '
      f'Small inputs run in size buckets (`config.bucket_max_entries`): '
      f'N+1, N+2, ... pad to the size of their bucket, so where they share '
      f'one, the first of them compiles and the others reuse it; each '
      f'new-shape call and the second call are printed below the table. '
      f'The last '
      f'column is the share of the machine\'s measured limit (memory-copy '
      f'bandwidth or gemm rate) for the workload\'s dominant cost; why it '
      f'stays below 50% on this CPU and what the next limit is (the '
      f'arc-cosine maps run at or above the rate of `acos` alone): '
      f'docs/performance.md, "How close the steady state is to the '
      f'machine\'s limits".')
  limits = machine_limits()
  report.say(f'machine: {limits["cores"]} cores, memory copy '
             f'{limits["copy_gbs"]:.1f} GB/s, sgemm '
             f'{limits["sgemm_gflops"]:.0f} GFLOP/s, dgemm '
             f'{limits["dgemm_gflops"]:.0f} GFLOP/s')
  rows, table, mismatches = [], [], []
  for name in args.workloads:
    for dtype in args.dtypes.split(','):
      ours, theirs = measure(ours_python, ref, name, dtype, args.repeats,
                             args.n, args.new_shapes, args.first_calls)
      rows.append((name, dtype, ours, theirs))
      row = _print_row(report, name, dtype, ours, theirs, limits,
                       full_size=not args.n)
      table.append(row)
      if row and row[10].startswith('MISMATCH'):
        mismatches.append(f'{name} {dtype}')
  report.table(['workload', 'dtype', 'nt_gp (s)', 'neural-tangents (s)',
                'time ratio', 'target', 'nt_gp peak (GB)',
                'neural-tangents peak (GB)', 'memory ratio',
                'share of machine limit', 'checksums', 'first call (s)',
                'first-call ratio', 'new shape (s)', 'new-shape ratio'],
               [r for r in table if r])
  if mismatches:
    report.say(f'MISMATCH: the libraries computed different kernels for '
               f'{", ".join(mismatches)}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(dict(limits=limits, rows=rows), f, indent=1)
  report.write(args.out)
  return 1 if mismatches else 0


# Time-ratio targets of the issues (float64 convolutional workloads have a
# memory target only).
TARGETS = {('mlp5', 'float32'): 0.8, ('mlp5', 'float64'): 0.8,
           ('myrtle5', 'float32'): 0.2, ('cnn3_flatten', 'float32'): 0.5}


def _print_row(report, name, dtype, ours, theirs, limits, full_size=True):
  """Prints one workload's line; returns its table row (None on failure).

  The share of the machine's limit is estimated for the workload's own size
  only (`full_size`), not for smoke runs with another `--n`."""
  print = report.say  # pylint: disable=redefined-builtin
  if 'error' in ours:
    print(f'{name} {dtype}: nt_gp failed:\n{ours["error"]}')
    return None
  line = (f'{name:14s} {dtype}: nt_gp {ours["median_s"]:.3f} s '
          f'(compile {ours["compile_s"]:.1f} s, peak {ours["peak_rss_gb"]:.2f}'
          f' GB)')
  if 'error' in theirs:
    line += f' | neural-tangents: {theirs["error"].strip()[-200:]}'
  else:
    line += (f' | neural-tangents {theirs["median_s"]:.3f} s (compile '
             f'{theirs["compile_s"]:.1f} s, peak {theirs["peak_rss_gb"]:.2f} GB)'
             f' | time ratio {ours["median_s"] / theirs["median_s"]:.3f}, '
             f'memory ratio {ours["peak_rss_gb"] / theirs["peak_rss_gb"]:.2f}')
  print(line)
  target = TARGETS.get((name, dtype))
  row = [name, dtype, f'{ours["median_s"]:.3f}', '', '',
         f'<= {target}' if target else '', f'{ours["peak_rss_gb"]:.2f}', '',
         '', '', ''] + _first_and_new_shape(report, ours, theirs)
  if 'error' not in theirs:
    ratio = ours['median_s'] / theirs['median_s']
    row[3] = f'{theirs["median_s"]:.3f}'
    row[4] = f'{ratio:.3f}'
    if target:
      row[5] += ' (met)' if ratio <= target else ' (missed)'
    row[7] = f'{theirs["peak_rss_gb"]:.2f}'
    row[8] = f'{ours["peak_rss_gb"] / theirs["peak_rss_gb"]:.2f}'
    diff = checksum_difference(ours, theirs)
    agree = diff <= CHECKSUM_RTOL[dtype]
    row[10] = f'{"agree" if agree else "MISMATCH"} ({diff:.1e})'
    print(f'    checksums (nngp, ntk sums): '
          f'{"agree" if agree else "MISMATCH"}, relative difference '
          f'{diff:.1e} (tolerance {CHECKSUM_RTOL[dtype]:g})')
  est = traffic_estimate(name, dtype) if full_size else None
  if est:
    kind, amount, unit = est
    if kind == 'memory':
      achieved = amount / ours['median_s'] / 1e9
      print(f'    dominant cost: covariance passes, >= {amount / 1e9:.1f} GB '
            f'moved -> {achieved:.1f} GB/s = '
            f'{achieved / limits["copy_gbs"]:.0%} of memory-copy bandwidth')
      row[9] = f'{achieved / limits["copy_gbs"]:.0%} of copy bandwidth'
    else:
      rate = limits['sgemm_gflops' if dtype == 'float32' else 'dgemm_gflops']
      achieved = amount / ours['median_s'] / 1e9
      print(f'    dominant cost: input Gram matmul {amount / 1e9:.1f} {unit} '
            f'-> {achieved:.0f} GFLOP/s if it were all the time = '
            f'{achieved / rate:.0%} of the measured gemm rate')
      row[9] = f'{achieved / rate:.0%} of gemm rate'
  return row


def _first_and_new_shape(report, ours, theirs):
  """Cells 'first call (s)', 'first-call ratio', 'new shape (s)',
  'new-shape ratio' (times nt_gp / neural-tangents; medians where there
  are several), printed too."""
  cells = []
  for key, what, times in (
      ('first_call_median_s', 'first call', 'first_call_times_s'),
      ('second_s', 'second call', None),
      ('new_shape_median_s', 'new shape', 'new_shape_times_s')):
    # A summary without first-call repeats has its one first call only.
    fallback = 'compile_s' if key == 'first_call_median_s' else key
    a = ours.get(key, ours.get(fallback))
    b = None if 'error' in theirs else theirs.get(key, theirs.get(fallback))
    if a is None:
      cells += [] if key == 'second_s' else ['', '']
      continue
    each = ''
    if len(ours.get(times, ())) > 1:
      each = ' (each: nt_gp {}{})'.format(
          ', '.join(f'{t:.2f}' for t in ours[times]),
          '' if not b else '; neural-tangents ' + ', '.join(
              f'{t:.2f}' for t in theirs.get(times, [])))
    report.say(f'    {what}: nt_gp {a:.2f} s' + (
        '' if not b else f', neural-tangents {b:.2f} s, ratio {a / b:.2f}')
               + each)
    if key == 'second_s':
      continue    # printed only
    cells.append(f'{a:.2f}' + ('' if b is None else f' / {b:.2f}'))
    cells.append('' if not b else f'{a / b:.2f}')
  return cells


if __name__ == '__main__':
  sys.exit(main())
