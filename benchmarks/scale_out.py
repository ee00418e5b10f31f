"""Scale-out benchmark: Myrtle-5 kernel throughput on 1 vs 2 workers, and the
cost of the on-disk store compared with in-memory batching.

  python benchmarks/scale_out.py                 # 512 images 16x16x3
  python benchmarks/scale_out.py --n 128 --quick # a smoke run

Every measurement runs in its own process, each computing process pinned to
one CPU core with one TensorFlow thread:

* ``memory`` and ``store``: one process computes the symmetric NNGP in blocks,
  in memory (`nt_gp.batching.batch`, blocks moved to host) and into a
  `KernelStore` (`compute_kernel`, fsync per block), after a warm-up that
  compiles both block shapes; the store overhead is ``t_store / t_memory - 1``.
* ``workers=1``/``workers=2``: `LocalCluster` workers (one core each) and this
  machine's coordinator write the store, as ``nt-gp kernel --workers N
  --pin-cores --threads-per-worker 1`` does. Throughput counts the entries of
  the whole ``N x N`` kernel; the steady-state rate starts when the first block
  is written (after tracing and the workers' first compilation), and the
  end-to-end rate includes that start-up.

Scaling efficiency = rate(2 workers) / (2 x rate(1 worker)). On a machine
shared with other jobs the wall-clock numbers measure contention as much as
nt_gp, so CPU times are reported too: the workers' CPU seconds (and the share
of a core each one got), and the in-process runs' CPU seconds. Results are
printed as a table and JSON (``--json FILE``).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from report import DOCS, Report  # pylint: disable=g-import-not-at-top,wrong-import-position


def _pin_this_process(core):
  os.environ['TF_NUM_INTRAOP_THREADS'] = '1'
  os.environ['TF_NUM_INTEROP_THREADS'] = '1'
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  if hasattr(os, 'sched_setaffinity'):
    os.sched_setaffinity(0, {core})
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)


def _kernel_fn(arch):
  from nt_gp import presets  # pylint: disable=g-import-not-at-top
  return presets.build(arch)[2], presets.identity(arch, {})


def child_overhead(args):
  """In-memory batching vs the store, in one pinned process."""
  _pin_this_process(0)
  from nt_gp.batching import batch  # pylint: disable=g-import-not-at-top
  from nt_gp.distributed import LocalRunner, compute_kernel  # pylint: disable=g-import-not-at-top
  x = np.load(args.x)
  b = args.batch_size
  kernel_fn, arch_id = _kernel_fn(args.arch)
  kernel_fn(x[:b], None, 'nngp')            # compile both block shapes
  kernel_fn(x[:b], x[b:2 * b], 'nngp')
  times = {'memory': [], 'store': [], 'memory_cpu': [], 'store_cpu': []}
  for r in range(args.repeats):
    t, c = time.time(), time.process_time()
    k = batch(kernel_fn, b, device_count=0, store_on_device=False)(
        x, None, 'nngp')
    times['memory'].append(time.time() - t)
    times['memory_cpu'].append(time.process_time() - c)
    del k
    out = os.path.join(args.tmp, f'overhead{r}.h5')
    t, c = time.time(), time.process_time()
    compute_kernel(kernel_fn, x, out=out, arch=arch_id, batch_size=b,
                   progress=False, runner=LocalRunner(1))
    times['store'].append(time.time() - t)
    times['store_cpu'].append(time.process_time() - c)
    os.remove(out)
  print(json.dumps(times))


def _cpu_seconds(pid):
  """User + system CPU seconds of a live process (Linux /proc)."""
  with open(f'/proc/{pid}/stat') as f:
    fields = f.read().rsplit(')', 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def child_workers(args):
  """`LocalCluster` with `args.workers` pinned workers writing a store."""
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  from nt_gp.distributed import ClusterRunner, LocalCluster, compute_kernel  # pylint: disable=g-import-not-at-top
  x = np.load(args.x)
  kernel_fn, arch_id = _kernel_fn(args.arch)
  with LocalCluster(args.workers, threads=1, pin_cores=True) as cluster:
    runner = ClusterRunner(cluster.spec)
    stamps = []
    out = os.path.join(args.tmp, f'workers{args.workers}.h5')
    pids = [p.pid for p in cluster.workers]
    cpu0 = [_cpu_seconds(pid) for pid in pids]
    t, c = time.time(), time.process_time()
    compute_kernel(kernel_fn, x, out=out, arch=arch_id,
                   batch_size=args.batch_size, progress=False, runner=runner,
                   log=lambda msg: stamps.append(time.time()))
    total = time.time() - t
    coordinator_cpu = time.process_time() - c
    worker_cpu = [_cpu_seconds(pid) - c0 for pid, c0 in zip(pids, cpu0)]
    runner.close()
  from nt_gp.store import KernelStore  # pylint: disable=g-import-not-at-top
  with KernelStore.open(out, verify=False) as s:
    grid = s.grid
  first_entries = grid.rows * grid.cols   # the first task is a diagonal block
  print(json.dumps({'total_s': total, 'first_block_s': stamps[0] - t,
                    'steady_s': stamps[-1] - stamps[0],
                    'steady_entries': x.shape[0] ** 2 - first_entries,
                    'worker_cpu_s': worker_cpu,
                    'coordinator_cpu_s': coordinator_cpu}))
  os.remove(out)


def _child(mode, args, **extra):
  cmd = [sys.executable, os.path.abspath(__file__), '--child', mode,
         '--x', args.x, '--tmp', args.tmp, '--arch', args.arch,
         '--batch-size', str(args.batch_size), '--repeats', str(args.repeats)]
  for k, v in extra.items():
    cmd += [f'--{k}', str(v)]
  proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                        check=False)
  if proc.returncode:
    sys.exit(f'{mode} run failed:\n{proc.stderr[-4000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--n', type=int, default=512, help='number of images')
  p.add_argument('--size', type=int, default=16, help='image side')
  p.add_argument('--arch', default='myrtle5')
  p.add_argument('--batch-size', type=int, default=16)
  p.add_argument('--repeats', type=int, default=1,
                 help='memory/store repetitions (best is reported)')
  p.add_argument('--quick', action='store_true', help='skip the overhead part')
  p.add_argument('--json', help='write the results to this file')
  p.add_argument('--out', default=str(DOCS / 'scale_out.md'),
                 help='Markdown page for the docs ("" to skip)')
  p.add_argument('--child', help=argparse.SUPPRESS)
  p.add_argument('--x', help=argparse.SUPPRESS)
  p.add_argument('--tmp', help=argparse.SUPPRESS)
  p.add_argument('--workers', type=int, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.child == 'overhead':
    return child_overhead(args)
  if args.child == 'workers':
    return child_workers(args)

  report = Report('Scale-out: workers and the kernel store',
                  __doc__.split('\n\n', 2)[2].strip())
  print = report.say  # pylint: disable=redefined-builtin
  args.tmp = tempfile.mkdtemp(prefix='nt_gp_scale_out_')
  args.x = os.path.join(args.tmp, 'x.npy')
  rng = np.random.RandomState(0)
  np.save(args.x, rng.randn(args.n, args.size, args.size, 3).astype(np.float32))
  entries = args.n ** 2
  load0 = os.getloadavg()
  results = {'n': args.n, 'image': [args.size, args.size, 3],
             'arch': args.arch, 'batch_size': args.batch_size,
             'cpu_cores': len(os.sched_getaffinity(0)), 'load_before': load0}
  print(f'{args.arch}: {args.n} images {args.size}x{args.size}x3, blocks of '
        f'{args.batch_size}, float32, {entries} kernel entries; load average '
        f'{load0[0]:.1f} on {results["cpu_cores"]} cores', flush=True)
  if not args.quick:
    t = _child('overhead', args)
    mem, sto = min(t['memory']), min(t['store'])
    mem_cpu, sto_cpu = min(t['memory_cpu']), min(t['store_cpu'])
    results.update(memory_s=mem, store_s=sto, store_overhead=sto / mem - 1,
                   memory_cpu_s=mem_cpu, store_cpu_s=sto_cpu,
                   store_overhead_cpu=sto_cpu / mem_cpu - 1)
    print(f'  in-memory batching (1 core): {mem:8.1f} s  '
          f'{entries / mem:9.0f} entries/s   CPU {mem_cpu:7.1f} s', flush=True)
    print(f'  store, 1 process   (1 core): {sto:8.1f} s  '
          f'{entries / sto:9.0f} entries/s   CPU {sto_cpu:7.1f} s; overhead '
          f'{100 * (sto / mem - 1):+.1f}% wall, '
          f'{100 * (sto_cpu / mem_cpu - 1):+.1f}% CPU', flush=True)
  for w in (1, 2):
    r = _child('workers', args, workers=w)
    steady = r['steady_entries'] / r['steady_s']
    results[f'workers{w}'] = dict(r, steady_rate=steady,
                                  end_to_end_rate=entries / r['total_s'])
    share = [c / r['total_s'] for c in r['worker_cpu_s']]
    print(f'  {w} worker(s) ({w} core(s)):  {r["total_s"]:8.1f} s  '
          f'{entries / r["total_s"]:9.0f} entries/s end to end, '
          f'{steady:9.0f} entries/s steady; worker CPU '
          f'{sum(r["worker_cpu_s"]):.1f} s (share of a core: '
          f'{", ".join(f"{100 * v:.0f}%" for v in share)}), coordinator CPU '
          f'{r["coordinator_cpu_s"]:.1f} s', flush=True)
  eff = results['workers2']['steady_rate'] / (2 * results['workers1'][
      'steady_rate'])
  eff_e2e = results['workers2']['end_to_end_rate'] / (2 * results['workers1'][
      'end_to_end_rate'])
  cpu1, cpu2 = (sum(results[f'workers{w}']['worker_cpu_s']) for w in (1, 2))
  results.update(scaling_efficiency=eff, scaling_efficiency_end_to_end=eff_e2e,
                 cpu_efficiency=cpu1 / cpu2, load_after=os.getloadavg())
  print(f'  scaling efficiency 1 -> 2 workers: {100 * eff:.0f}% steady, '
        f'{100 * eff_e2e:.0f}% end to end; worker CPU 1 worker / 2 workers: '
        f'{100 * cpu1 / cpu2:.0f}%; load average '
        f'{results["load_after"][0]:.1f}')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=2)
  if not args.quick:
    rows = [['in-memory batching, 1 process', f'{mem:.1f}',
             f'{entries / mem:.0f}', ''],
            ['kernel store, 1 process', f'{sto:.1f}', f'{entries / sto:.0f}',
             f'store overhead {100 * (sto / mem - 1):+.1f}% wall, '
             f'{100 * (sto_cpu / mem_cpu - 1):+.1f}% CPU']]
    for w in (1, 2):
      r = results[f'workers{w}']
      rows.append([f'{w} worker(s), store', f'{r["total_s"]:.1f}',
                   f'{r["end_to_end_rate"]:.0f} (steady '
                   f'{r["steady_rate"]:.0f})',
                   '' if w == 1 else f'scaling efficiency {100 * eff:.0f}% '
                   f'steady, {100 * eff_e2e:.0f}% end to end'])
    report.table(['run', 'wall (s)', 'kernel entries / s', ''], rows)
    report.write(args.out)
  shutil.rmtree(args.tmp, ignore_errors=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
