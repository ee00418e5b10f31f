"""nt_gp from two source trees on the same workloads, interleaved.

Usage:
  python benchmarks/compare_trees.py --base /path/to/other/checkout
      [WORKLOAD ...] [--head .] [--dtypes float32,float64] [--repeats 5]
      [--sizes mlp5=2000,cnn3_flatten=128] [--json F]

Checks that a change of the library (the `--head` tree, default this
checkout) is not slower than a base (another checkout, e.g. the main
branch). Each measurement is one fresh process running `_run_one.py` (first
call, then the median of 3 calls of `kernel_fn(x, None, ('nngp', 'ntk'))`)
with `PYTHONPATH` set to one tree. The two trees alternate (base, head,
head, base, ...) so that load on a shared machine hits both alike, and each
repeat gives one paired ratio head / base; the table reports the median of
those ratios and their range, and the ratio of the median CPU times (all
threads), which other processes on the machine disturb less than wall
time. The NTK checksums of the two trees are compared too: a refactoring
must not change the numbers.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workloads import WORKLOADS  # pylint: disable=g-import-not-at-top,wrong-import-position


def run(tree, name, dtype, n=None):
  """One `_run_one.py` process with nt_gp imported from `tree`."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3',
             PYTHONPATH=str(pathlib.Path(tree).resolve()))
  cmd = [sys.executable, str(HERE / '_run_one.py'), 'nt_gp', name, dtype]
  if n:
    cmd.append(str(n))
  proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                        timeout=3600, cwd=tree)
  if proc.returncode != 0:
    raise RuntimeError(f'{tree} {name} {dtype} failed:\n{proc.stderr[-3000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def imported_from(tree) -> str:
  """The nt_gp source a process with PYTHONPATH=tree imports."""
  env = dict(os.environ, PYTHONPATH=str(pathlib.Path(tree).resolve()))
  out = subprocess.run(
      [sys.executable, '-c', 'import importlib.util as u; '
       's = u.find_spec("nt_gp"); print(s.origin if s else "nowhere")'],
      capture_output=True, text=True, env=env, check=True, cwd=tree)
  return out.stdout.strip()


def parse_sizes(text):
  sizes = {}
  for item in filter(None, (text or '').split(',')):
    name, _, n = item.partition('=')
    if name not in WORKLOADS or not n.isdigit():
      raise SystemExit(f'error: --sizes takes WORKLOAD=N pairs with '
                       f'WORKLOAD in {sorted(WORKLOADS)}, got {item!r}')
    sizes[name] = int(n)
  return sizes


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('workloads', nargs='*', default=list(WORKLOADS))
  parser.add_argument('--base', required=True, help='the tree to compare to')
  parser.add_argument('--head', default=str(HERE.parent),
                      help='the changed tree (default: this checkout)')
  parser.add_argument('--dtypes', default='float32,float64')
  parser.add_argument('--repeats', type=int, default=5)
  parser.add_argument('--sizes', default='',
                      help='batch sizes per workload, e.g. mlp5=2000')
  parser.add_argument('--json', help='also write all measurements here')
  args = parser.parse_args(argv)
  unknown = [w for w in args.workloads if w not in WORKLOADS]
  if unknown:
    parser.error(f'unknown workloads {unknown}; choose from {sorted(WORKLOADS)}')
  if args.repeats < 1:
    parser.error('--repeats must be >= 1')
  sizes = parse_sizes(args.sizes)
  trees = {'base': args.base, 'head': args.head}
  for label, tree in trees.items():
    origin = imported_from(tree)
    if not origin.startswith(str(pathlib.Path(tree).resolve())):
      parser.error(f'--{label} {tree}: a process with PYTHONPATH={tree} '
                   f'imports nt_gp from {origin}, not from that tree')
    print(f'{label}: {origin}', flush=True)

  cases = [(w, d) for w in args.workloads for d in args.dtypes.split(',')]
  results = {(w, d): {'base': [], 'head': []} for w, d in cases}
  for r in range(args.repeats):
    order = ('base', 'head') if r % 2 == 0 else ('head', 'base')
    for w, d in cases:
      for label in order:
        out = run(trees[label], w, d, sizes.get(w))
        results[(w, d)][label].append(out)
        print(f'repeat {r + 1}/{args.repeats} {w} {d} {label}: '
              f'{out["median_s"]:.3f} s (first call {out["compile_s"]:.2f} '
              f's)', flush=True)

  rows = []
  print('\n| workload | dtype | N | base s | head s | head / base (median, '
        'range) | CPU time head / base | first call head / base | same NTK |')
  print('|---|---|---|---|---|---|---|---|---|')
  for (w, d), res in results.items():
    base = np.array([o['median_s'] for o in res['base']])
    head = np.array([o['median_s'] for o in res['head']])
    ratios = head / base
    cpu = float(np.median([o['median_cpu_s'] for o in res['head']]) /
                np.median([o['median_cpu_s'] for o in res['base']]))
    first = (np.median([o['compile_s'] for o in res['head']]) /
             np.median([o['compile_s'] for o in res['base']]))
    sums = [o['ntk_checksum'] for o in res['base'] + res['head']]
    same = bool(np.allclose(sums, sums[0], rtol=1e-5 if d == 'float32'
                            else 1e-10))
    n = res['head'][0]['shape'][0]
    rows.append(dict(workload=w, dtype=d, n=n, base_s=float(np.median(base)),
                     head_s=float(np.median(head)),
                     ratio=float(np.median(ratios)),
                     ratio_min=float(ratios.min()),
                     ratio_max=float(ratios.max()), cpu_ratio=cpu,
                     first_call_ratio=first, same_ntk=same))
    print(f'| {w} | {d} | {n} | {np.median(base):.3f} | {np.median(head):.3f} '
          f'| {np.median(ratios):.3f} ({ratios.min():.3f}-{ratios.max():.3f}) '
          f'| {cpu:.3f} | {first:.2f} | {"yes" if same else "NO"} |')
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(
        dict(rows=rows, raw={f'{w}/{d}': v for (w, d), v in results.items()}),
        indent=1))
  return rows


if __name__ == '__main__':
  main()
