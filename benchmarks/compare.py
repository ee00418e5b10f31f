"""nt_gp vs neural-tangents on the same workloads, in the same invocation.

Usage:
  python benchmarks/compare.py [WORKLOAD ...] [--dtypes float32,float64]
                               [--out docs/benchmarks/kernels.md] [--json F]

Each library runs in its own subprocess (nt_gp in this python, neural-tangents
in the reference env of tools/reference_env.sh or $NT_REFERENCE_PYTHON):
first call (compile) reported separately, then the median of 3 calls of
`kernel_fn(x, None, ('nngp', 'ntk'))`, and the peak RSS of the process.
The headline figure is the time ratio nt_gp / neural-tangents. The machine's
memory-copy bandwidth and matmul rate are measured in the same run, and the
achieved fraction for each workload's dominant cost is printed. The table
goes to `--out` (default `docs/benchmarks/kernels.md`; `--out ''` skips it).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from machine import machine_limits, traffic_estimate  # pylint: disable=g-import-not-at-top
from report import DOCS, Report  # pylint: disable=g-import-not-at-top
from workloads import WORKLOADS  # pylint: disable=g-import-not-at-top


def reference_python():
  env = os.environ.get('NT_REFERENCE_PYTHON')
  if env:
    return env
  default = pathlib.Path.home() / '.cache' / 'nt-reference' / 'bin' / 'python'
  return str(default) if default.exists() else None


def run(python, lib, name, dtype):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu')
  proc = subprocess.run([python, str(HERE / '_run_one.py'), lib, name, dtype],
                        capture_output=True, text=True, env=env, timeout=3600)
  if proc.returncode != 0:
    return dict(error=proc.stderr[-2000:])
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('workloads', nargs='*', default=list(WORKLOADS))
  parser.add_argument('--dtypes', default='float32,float64')
  parser.add_argument('--json', help='also write results to this file')
  parser.add_argument('--out', default=str(DOCS / 'kernels.md'),
                      help='Markdown page for the docs ("" to skip)')
  args = parser.parse_args()
  ref = reference_python()
  report = Report(
      'Kernel computation: nt_gp vs neural-tangents 0.6.5',
      'Time of `kernel_fn(x, None, (\'nngp\', \'ntk\'))` after a first '
      '(compiling) call, median of 3 calls, each library in its own process '
      '(neural-tangents with `jax.jit`, CPU); peak resident memory of that '
      'process. Workloads: `mlp5` = depth-5 ReLU MLP on 4000 x 784; '
      '`cnn3_flatten` = 3 x (3x3 SAME conv + ReLU) + Flatten + Dense on 256 '
      'images 32x32x3; `myrtle5` = Myrtle-5 (two 2x2 average pools, GAP) on '
      '32 images 16x16x3 (definitions in `benchmarks/workloads.py`). The '
      'last column is the share of the machine\'s measured limit (memory-copy '
      'bandwidth or gemm rate) for the workload\'s dominant cost.')
  limits = machine_limits()
  report.say(f'machine: {limits["cores"]} cores, memory copy '
             f'{limits["copy_gbs"]:.1f} GB/s, sgemm '
             f'{limits["sgemm_gflops"]:.0f} GFLOP/s, dgemm '
             f'{limits["dgemm_gflops"]:.0f} GFLOP/s')
  rows, table = [], []
  for name in args.workloads:
    for dtype in args.dtypes.split(','):
      ours = run(sys.executable, 'nt_gp', name, dtype)
      theirs = run(ref, 'neural_tangents', name, dtype) if ref else dict(
          error='reference env not found')
      rows.append((name, dtype, ours, theirs))
      table.append(_print_row(report, name, dtype, ours, theirs, limits))
  report.table(['workload', 'dtype', 'nt_gp (s)', 'neural-tangents (s)',
                'time ratio', 'target', 'nt_gp peak (GB)',
                'neural-tangents peak (GB)', 'memory ratio',
                'share of machine limit'], [r for r in table if r])
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(dict(limits=limits, rows=rows), f, indent=1)
  report.write(args.out)


# Time-ratio targets of the issues (float64 convolutional workloads have a
# memory target only).
TARGETS = {('mlp5', 'float32'): 0.8, ('mlp5', 'float64'): 0.8,
           ('myrtle5', 'float32'): 0.2, ('cnn3_flatten', 'float32'): 0.5}


def _print_row(report, name, dtype, ours, theirs, limits):
  """Prints one workload's line; returns its table row (None on failure)."""
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
         '', '']
  if 'error' not in theirs:
    ratio = ours['median_s'] / theirs['median_s']
    row[3] = f'{theirs["median_s"]:.3f}'
    row[4] = f'{ratio:.3f}'
    if target:
      row[5] += ' (met)' if ratio <= target else ' (missed)'
    row[7] = f'{theirs["peak_rss_gb"]:.2f}'
    row[8] = f'{ours["peak_rss_gb"] / theirs["peak_rss_gb"]:.2f}'
  est = traffic_estimate(name, dtype)
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


if __name__ == '__main__':
  main()
