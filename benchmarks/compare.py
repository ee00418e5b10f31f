"""nt_gp vs neural-tangents on the same workloads, in the same invocation.

Usage:
  python benchmarks/compare.py [WORKLOAD ...] [--dtypes float32,float64]

Each library runs in its own subprocess (nt_gp in this python, neural-tangents
in the reference env of tools/reference_env.sh or $NT_REFERENCE_PYTHON):
first call (compile) reported separately, then the median of 3 calls of
`kernel_fn(x, None, ('nngp', 'ntk'))`, and the peak RSS of the process.
The headline figure is the time ratio nt_gp / neural-tangents. The machine's
memory-copy bandwidth and matmul rate are measured in the same run, and the
achieved fraction for each workload's dominant cost is printed.
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
  args = parser.parse_args()
  ref = reference_python()
  limits = machine_limits()
  print(f'machine: {limits["cores"]} cores, memory copy '
        f'{limits["copy_gbs"]:.1f} GB/s, sgemm {limits["sgemm_gflops"]:.0f} '
        f'GFLOP/s, dgemm {limits["dgemm_gflops"]:.0f} GFLOP/s')
  rows = []
  for name in args.workloads:
    for dtype in args.dtypes.split(','):
      ours = run(sys.executable, 'nt_gp', name, dtype)
      theirs = run(ref, 'neural_tangents', name, dtype) if ref else dict(
          error='reference env not found')
      rows.append((name, dtype, ours, theirs))
      _print_row(name, dtype, ours, theirs, limits)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(dict(limits=limits, rows=rows), f, indent=1)


def _print_row(name, dtype, ours, theirs, limits):
  if 'error' in ours:
    print(f'{name} {dtype}: nt_gp failed:\n{ours["error"]}')
    return
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
  est = traffic_estimate(name, dtype)
  if est:
    kind, amount, unit = est
    if kind == 'memory':
      achieved = amount / ours['median_s'] / 1e9
      print(f'    dominant cost: covariance passes, >= {amount / 1e9:.1f} GB '
            f'moved -> {achieved:.1f} GB/s = '
            f'{achieved / limits["copy_gbs"]:.0%} of memory-copy bandwidth')
    else:
      rate = limits['sgemm_gflops' if dtype == 'float32' else 'dgemm_gflops']
      achieved = amount / ours['median_s'] / 1e9
      print(f'    dominant cost: input Gram matmul {amount / 1e9:.1f} {unit} '
            f'-> {achieved:.0f} GFLOP/s if it were all the time = '
            f'{achieved / rate:.0%} of the measured gemm rate')


if __name__ == '__main__':
  main()
