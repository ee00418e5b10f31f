"""nt_gp on whatever device TensorFlow sees: parity, speed, several devices.

Usage:
  python benchmarks/device.py [--size tiny|full] [--out PAGE.md]
      [--virtual-cpus 2] [--require-gpu]

On the GPU if TensorFlow sees one, else on the CPU:

1. Parity: a few architectures (MLPs, convolutions with pooling, attention)
   in float64 and float32 against the stored neural-tangents 0.6.5 goldens
   (tests/golden/*.npz, computed on the CPU in float64): largest absolute and
   relative error per case. float64 must stay within the parity suites'
   tolerances (tests/parity/tolerances.py); float32 within `FLOAT32_RTOL`,
   which float32 rounding meets and TensorFloat-32 (a 10-bit mantissa, see
   `nt_gp.config.allow_tf32`) does not: rounding only the inputs to TF32
   already gives errors above it in every case (tests/
   test_benchmark_scripts.py).
2. Speed: first call (trace + compile + run) and the median of the next
   calls of `kernel_fn(x, None, ('nngp', 'ntk'))` for the benchmark
   workloads (benchmarks/workloads.py) and neural-tangents' README reference
   workloads, a 21-layer CNN (3x3 SAME convolutions, ReLU) with
   GlobalAvgPool or Flatten on 32x32x3 images, reported in ms per kernel
   entry (time / N^2) as the README's table is.
3. Several devices: `nt-gp kernel --devices -1` (all GPUs; without a GPU,
   `--virtual-cpus` logical CPU devices made with
   `tf.config.set_logical_device_configuration`, the job then running in
   this process) against `--devices 1`: the two stores must hold the same
   kernel.

Sizes: `--size tiny` (CI: under a minute on a CPU; smaller inputs, 8x8
images for the README networks) or `--size full` (the workloads' own sizes,
the README networks at N=8 (GAP) and N=128 (Flatten)). Budget of `full`,
from this project's 2-core CPU (20 GB/s memory copy): parity 44 s and the
`nt-gp kernel` runs 32 s (both measured), the workloads about 25 s
(docs/benchmarks/kernels.md), the README networks about 10 minutes
(measured per entry at smaller N: CNN-GAP 0.46 s float32 and 1.8 s float64,
Flatten 0.4 and 0.7 ms, four calls each), about 12 minutes in all. A GPU
needs to be only 1.6 times faster than that CPU to finish in 8 minutes;
the kernels are memory-bound and a data-centre GPU has 50-250 times its
memory bandwidth. The report is printed; a full run on
a GPU writes it to docs/benchmarks/gpu.md, other runs only to `--out` if
given.
The script exits with status 1 if a parity check or the several-device
check fails (after printing the report). With `--require-gpu` it exits with
status 2 at once if TensorFlow sees no GPU, saying which CUDA and cuDNN
versions its build needs (a full CPU run would take the 12 minutes above).
"""
import argparse
import os
import pathlib
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from report import DOCS, Report  # pylint: disable=g-import-not-at-top,wrong-import-position
from workloads import WORKLOADS  # pylint: disable=g-import-not-at-top,wrong-import-position

# (suite, case) of the parity check, per size.
PARITY_CASES = {
    'tiny': [('fc', 'relu_mlp'), ('conv', 'conv2d_same_gap'),
             ('attention', 'transformer_1d_gap')],
    'full': [('fc', 'relu_mlp'), ('fc', 'erf'), ('fc', 'gelu'),
             ('fc', 'elementwise_numerical_tanh'),
             ('conv', 'conv2d_same_gap'), ('conv', 'myrtle5_small'),
             ('conv', 'wide_resnet_block'), ('conv', 'conv2d_valid_flatten'),
             ('attention', 'transformer_1d_gap')],
}
# float32 parity: the worst case measured on the CPU is 6e-6 relative
# (elementwise_numerical_tanh); inputs rounded to TF32 alone give 4e-5
# (myrtle5_small) to 7e-3 (elementwise_numerical_tanh) in float64.
FLOAT32_RTOL = 3e-5

# README networks: (name, readout, image side, N) per size.
README_NETS = {
    'tiny': [('cnn21_gap', 'GlobalAvgPool', 8, 2),
             ('cnn21_flatten', 'Flatten', 8, 4)],
    'full': [('cnn21_gap', 'GlobalAvgPool', 32, 8),
             ('cnn21_flatten', 'Flatten', 32, 128)],
}
README_LAYERS = ('[l for _ in range(21) for l in '
                 '(stax.Conv(1, (3, 3), (1, 1), "SAME"), stax.Relu())]')

# Workloads of benchmarks/workloads.py: number of inputs per size (None: the
# workload's own).
WORKLOAD_N = {'tiny': {'mlp5': 16, 'cnn3_flatten': 4, 'myrtle5': 4},
              'full': {'mlp5': None, 'cnn3_flatten': None, 'myrtle5': None}}
TIMED_CALLS = {'tiny': 1, 'full': 3}

# `nt-gp kernel` runs: (preset, arch args, input shape, batch size) per size.
CLI_RUNS = {
    'tiny': [('fcn', '{"depth": 2}', (16, 5), 4)],
    'full': [('fcn', '{"depth": 3}', (4096, 784), 1024),
             ('myrtle5', '{}', (64, 16, 16, 3), 16)],
}


def configure_devices(virtual_cpus):
  """Before TensorFlow initialises: lets GPU memory grow as needed (the
  `nt-gp kernel` child processes need theirs), or splits the CPU into
  `virtual_cpus` logical devices if there is no GPU; returns 'GPU' or
  'CPU'."""
  gpus = tf.config.list_physical_devices('GPU')
  if gpus:
    for gpu in gpus:
      tf.config.experimental.set_memory_growth(gpu, True)
    return 'GPU'
  cpu, = tf.config.list_physical_devices('CPU')
  if virtual_cpus > 1:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * virtual_cpus)
  return 'CPU'


def missing_gpu_hint():
  """Why a GPU may be invisible to this TensorFlow: the CUDA and cuDNN
  versions its build loads (a CUDA build finds no GPU when those libraries
  are missing, even with a working driver), or '' for a CPU-only build."""
  info = tf.sysconfig.get_build_info()
  if not info.get('is_cuda_build'):
    return ''
  cuda = str(info.get('cuda_version', '?'))
  return (f'this TensorFlow {tf.__version__} finds a GPU only where the '
          f'CUDA {cuda.split(".")[0]} libraries it was built with (CUDA '
          f'{cuda}, cuDNN {info.get("cudnn_version", "?")}) are installed '
          f'beside the NVIDIA driver: '
          f'pip install "tensorflow[and-cuda]=={tf.__version__}"')


def device_description(kind):
  if kind == 'GPU':
    names = []
    for d in tf.config.list_physical_devices('GPU'):
      details = tf.config.experimental.get_device_details(d)
      names.append(details.get('device_name', d.name))
    return f'{len(names)} GPU(s): {", ".join(names)}'
  return (f'CPU ({len(tf.config.list_logical_devices("CPU"))} logical '
          f'devices), no GPU')


# ----------------------------------------------------------------------------
# 1. Parity against the goldens.
# ----------------------------------------------------------------------------
def parity_case(suite, name):
  """`(case, golden)` of a parity suite's case."""
  from tests.parity import harness  # pylint: disable=g-import-not-at-top
  case, = [c for c in harness.load_suite(
      HERE.parent / 'tests' / 'parity' / f'suite_{suite}.py')
           if c['name'] == name]
  return case, harness.load_golden(suite)


def case_errors(case, golden, inputs, dtype):
  """`(max abs error, max relative error)` of nt_gp's kernels of a case on
  `inputs` (`x1, x2, patterns`) in `dtype` against the golden ones."""
  from tests.parity import harness  # pylint: disable=g-import-not-at-top
  name = case['name']
  ours = harness._compute_ours(case, dtype, inputs)  # pylint: disable=protected-access
  abs_err = max(float(np.max(np.abs(v - golden[f'{name}/{k}']), initial=0.))
                for k, v in ours.items())
  rel_err = max(harness.relative_error(v, golden[f'{name}/{k}'])
                for k, v in ours.items())
  return abs_err, rel_err


def parity(report, size):
  """Rows of the parity table; returns `(rows, failures)`."""
  from tests.parity import harness, tolerances  # pylint: disable=g-import-not-at-top
  rows, failures = [], []
  for suite, name in PARITY_CASES[size]:
    case, golden = parity_case(suite, name)
    inputs = harness.case_inputs(case, golden)
    for dtype in (np.float64, np.float32):
      abs_err, rel_err = case_errors(case, golden, inputs, dtype)
      rtol = (tolerances.KERNEL_CASES.get((suite, name), tolerances.DEFAULT)
              if dtype == np.float64 else FLOAT32_RTOL)
      ok = rel_err <= rtol
      if not ok:
        failures.append(f'{suite}/{name} {np.dtype(dtype).name}')
      rows.append([f'{suite}/{name}', np.dtype(dtype).name, f'{abs_err:.1e}',
                   f'{rel_err:.1e}', f'{rtol:g}', 'ok' if ok else 'FAILED'])
      report.say(f'parity {suite}/{name} {np.dtype(dtype).name}: max abs '
                 f'{abs_err:.1e}, max rel {rel_err:.1e} (tolerance {rtol:g}) '
                 f'{"ok" if ok else "FAILED"}')
  return rows, failures


# ----------------------------------------------------------------------------
# 2. Speed.
# ----------------------------------------------------------------------------
def time_kernel(net_expr, shape, dtype, calls):
  """`(first_s, median_s)` of `kernel_fn(x, None, ('nngp', 'ntk'))`."""
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  kernel_fn = eval(net_expr, {'stax': stax})[2]  # pylint: disable=eval-used
  x = np.random.RandomState(0).randn(*shape).astype(dtype)

  def run():
    t = time.perf_counter()
    k = kernel_fn(x, None, ('nngp', 'ntk'))
    k.ntk.numpy()
    return time.perf_counter() - t
  first = run()
  return first, float(np.median([run() for _ in range(calls)]))


def speed(report, size):
  rows = []
  cases = []
  for name, spec in WORKLOADS.items():
    n = WORKLOAD_N[size][name] or spec['shape'][0]
    cases.append((name, spec['net'], (n,) + tuple(spec['shape'][1:])))
  for name, readout, side, n in README_NETS[size]:
    net = f'stax.serial(*({README_LAYERS} + [stax.{readout}()]))'
    cases.append((name, net, (n, side, side, 3)))
  for name, net, shape in cases:
    for dtype in ('float32', 'float64'):
      first, median = time_kernel(net, shape, dtype, TIMED_CALLS[size])
      per_entry = median / shape[0] ** 2 * 1e3
      rows.append([name, 'x'.join(map(str, shape)), dtype, f'{first:.2f}',
                   f'{median:.3f}', f'{per_entry:.4g}'])
      report.say(f'{name} {shape} {dtype}: first call {first:.2f} s, then '
                 f'{median:.3f} s = {per_entry:.4g} ms per entry')
  return rows


# ----------------------------------------------------------------------------
# 3. Several devices through the command line.
# ----------------------------------------------------------------------------
def several_devices(report, size):
  """`nt-gp kernel --devices -1` vs `--devices 1`; `(rows, failures)`."""
  from nt_gp import devices  # pylint: disable=g-import-not-at-top
  from nt_gp.cli import main  # pylint: disable=g-import-not-at-top
  from nt_gp.store import KernelStore  # pylint: disable=g-import-not-at-top
  count = len(devices.local_devices(-1))
  # `nt-gp kernel` computes in a child process, which sees every GPU but
  # only one CPU device: without a GPU, the job runs in this process, where
  # the CPU is split into virtual devices.
  in_process = ([] if tf.config.list_physical_devices('GPU') else
                ['--in-process'])
  rows, failures = [], []
  with tempfile.TemporaryDirectory(prefix='nt_gp_device_') as tmp:
    for preset, arch_args, shape, batch in CLI_RUNS[size]:
      x_path = os.path.join(tmp, f'{preset}_x.npy')
      np.save(x_path, np.random.RandomState(1).randn(*shape).astype(
          np.float32))
      kernels, seconds = {}, {}
      for n_dev in (1, -1):
        out = os.path.join(tmp, f'{preset}_{n_dev}.h5')
        t = time.perf_counter()
        rc = main(['kernel', '--x1', x_path, '--arch', preset, '--arch-args',
                   arch_args, '--get', 'nngp,ntk', '--batch-size', str(batch),
                   '--devices', str(n_dev), '--out', out, '--no-progress']
                  + in_process)
        seconds[n_dev] = time.perf_counter() - t
        if rc != 0:
          failures.append(f'{preset} --devices {n_dev}: exit status {rc}')
          break
        with KernelStore.open(out) as store:
          kernels[n_dev] = {g: np.asarray(store.read(g))
                            for g in ('nngp', 'ntk')}
      if len(kernels) < 2:
        continue
      diff = max(float(np.max(np.abs(kernels[-1][g] - kernels[1][g])) /
                       np.max(np.abs(kernels[1][g]))) for g in ('nngp', 'ntk'))
      ok = diff <= 1e-6          # float32: the same blocks, maybe in another
      if not ok:                 # order of reduction on another device
        failures.append(f'{preset}: --devices -1 differs by {diff:.1e}')
      rows.append([preset, 'x'.join(map(str, shape)), str(batch), str(count),
                   f'{seconds[1]:.2f}', f'{seconds[-1]:.2f}',
                   f'{seconds[1] / seconds[-1]:.2f}', f'{diff:.1e}',
                   'ok' if ok else 'FAILED'])
      report.say(f'nt-gp kernel {preset} {shape}: --devices 1 '
                 f'{seconds[1]:.2f} s, --devices -1 ({count} devices) '
                 f'{seconds[-1]:.2f} s, max relative difference {diff:.1e}')
  return rows, failures


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--size', choices=('tiny', 'full'), default='full')
  parser.add_argument('--out', default=None,
                      help='Markdown page (default: docs/benchmarks/gpu.md '
                           'when a GPU was used, else none)')
  parser.add_argument('--virtual-cpus', type=int, default=2,
                      help='logical CPU devices without a GPU (default 2)')
  parser.add_argument('--require-gpu', action='store_true',
                      help='stop at once, before any work, if TensorFlow '
                           'sees no GPU (instead of running on the CPU)')
  args = parser.parse_args(argv)
  if args.out and pathlib.Path(args.out).resolve().parent == DOCS and (
      args.size != 'full'):
    parser.error('the docs page needs --size full; pass --out elsewhere')
  kind = configure_devices(args.virtual_cpus)
  if kind != 'GPU' and args.require_gpu:
    hint = missing_gpu_hint()
    print('error: TensorFlow sees no GPU (--require-gpu)'
          + (f'; {hint}' if hint else '; this TensorFlow is a CPU-only build'),
          file=sys.stderr)
    return 2
  started = time.perf_counter()
  import nt_gp  # pylint: disable=g-import-not-at-top
  report = Report(
      f'nt_gp on {"a GPU" if kind == "GPU" else "the CPU"}',
      'Parity with the stored neural-tangents 0.6.5 goldens (float64 and '
      'float32, TF32 off: `nt_gp.config.allow_tf32` is False), kernel '
      'times of the benchmark workloads and of neural-tangents\' README '
      'reference networks (21 layers of 3x3 SAME Conv + ReLU, then '
      'GlobalAvgPool or Flatten; per-entry time = median time / N^2), and '
      '`nt-gp kernel --devices -1` against `--devices 1` '
      '(definitions in `benchmarks/device.py`).')
  report.say(f'device: {device_description(kind)}; size {args.size}; '
             f'TensorFlow {tf.__version__}, nt_gp TF32 allowed: '
             f'{nt_gp.config.allow_tf32}')
  hint = missing_gpu_hint() if kind != 'GPU' else ''
  if hint:
    report.say(f'no GPU: {hint}')
  parity_rows, failures = parity(report, args.size)
  report.table(['case', 'dtype', 'max abs error', 'max rel error',
                'tolerance', 'parity'], parity_rows,
               caption='Parity with neural-tangents goldens:')
  report.table(['workload', 'inputs', 'dtype', 'first call (s)',
                'median call (s)', 'ms per entry'], speed(report, args.size),
               caption='Kernel times (nngp and ntk):')
  cli_rows, cli_failures = several_devices(report, args.size)
  failures += cli_failures
  report.table(['preset', 'inputs', 'batch size', 'devices',
                '--devices 1 (s)', '--devices -1 (s)', 'speed-up',
                'max rel difference', 'same kernel'], cli_rows,
               caption='nt-gp kernel on several devices:')
  report.say(f'total {time.perf_counter() - started:.0f} s')
  if failures:
    report.say(f'FAILED: {", ".join(failures)}')
  out = args.out or (DOCS / 'gpu.md' if kind == 'GPU' and args.size == 'full'
                     else None)
  page = report.markdown()
  print(page[:page.index('What the script printed:')].rstrip(), flush=True)
  report.write(out)
  return 1 if failures else 0


if __name__ == '__main__':
  sys.exit(main())
