"""`nt-gp kernel`: compute an NNGP/NTK kernel into a resumable HDF5 store.

  nt-gp kernel --x1 train.npy [--x2 test.npy] --arch myrtle5 --get nngp \\
      --batch-size 64 --out k.h5 [--resume] [--workers 4]

* Inputs: ``.npy`` or ``.npz`` files (``--x1-key``/``--x2-key`` select an
  array of an ``.npz``); without ``--x2`` the symmetric kernel of ``--x1``.
* Architecture: a preset (``fcn``, ``cnn-gap``, ``myrtle5``, ``myrtle7``,
  ``myrtle10``, ``wrn``; arguments with ``--arch-args '{"depth": 5}'``) or a
  Python file exporting ``kernel_fn``.
* Where: this process's devices (default; ``--devices N``), ``--workers N``
  local worker processes, or an existing cluster (``--cluster-spec JSON`` or
  ``--cluster-spec TF_CONFIG``), see `nt_gp.distributed`.
* The output is a `nt_gp.store.KernelStore`; ``--resume`` continues a killed
  job and computes only its missing blocks. An existing output is never
  overwritten, and one made for other inputs or another architecture is
  refused.

Example:
  >>> import os, tempfile
  >>> import numpy as np
  >>> from nt_gp.cli import main
  >>> d = tempfile.mkdtemp()
  >>> np.save(os.path.join(d, 'x.npy'), np.random.RandomState(0).randn(8, 3))
  >>> main(['kernel', '--x1', os.path.join(d, 'x.npy'), '--arch', 'fcn',
  ...       '--batch-size', '4', '--out', os.path.join(d, 'k.h5'),
  ...       '--no-progress'])  # doctest: +ELLIPSIS
  wrote ...k.h5: nngp (8, 8) float64; 4 of 4 blocks written by this run ...
  0
"""
import argparse
import hashlib
import importlib.util
import json
import os
import signal
import sys
import threading
import time

import numpy as np

__all__ = ['add_parser', 'load_array', 'load_arch']


class CliError(Exception):
  """An error reported to the user without a traceback."""


def add_parser(subparsers) -> argparse.ArgumentParser:
  """Registers the `kernel` subcommand on `nt-gp`'s subparsers.

  Example:
    >>> import argparse
    >>> sub = argparse.ArgumentParser().add_subparsers()
    >>> add_parser(sub).prog.endswith('kernel')
    True
  """
  p = subparsers.add_parser(
      'kernel', help='compute an NNGP/NTK kernel into a resumable HDF5 file',
      description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  g = p.add_argument_group('inputs')
  g.add_argument('--x1', required=True, help='.npy or .npz file of inputs')
  g.add_argument('--x1-key', help='array name inside an .npz --x1')
  g.add_argument('--x2', help='.npy or .npz second inputs (default: the '
                 'symmetric kernel of --x1)')
  g.add_argument('--x2-key', help='array name inside an .npz --x2')
  g = p.add_argument_group('kernel')
  g.add_argument('--arch', required=True,
                 help='preset (fcn, cnn-gap, myrtle5, myrtle7, myrtle10, wrn) '
                      'or a Python file exporting `kernel_fn`')
  g.add_argument('--arch-args', default='{}',
                 help='JSON object of preset arguments, e.g. \'{"depth": 5}\'')
  g.add_argument('--get', default='nngp',
                 help='nngp, ntk, or nngp,ntk (default: nngp)')
  g.add_argument('--dtype', choices=('float32', 'float64'),
                 help='computation and storage dtype (default: that of --x1)')
  g.add_argument('--batch-size', type=int, required=True,
                 help='block size; must divide the numbers of inputs')
  g = p.add_argument_group('output')
  g.add_argument('--out', required=True, help='output HDF5 file (.h5)')
  g.add_argument('--resume', action='store_true',
                 help='continue an existing --out made for the same job')
  g.add_argument('--no-verify', action='store_true',
                 help='on --resume, skip checking finished blocks\' checksums')
  g.add_argument('--no-fsync', action='store_true',
                 help='do not fsync each block (still safe if killed, not on '
                      'power loss)')
  g = p.add_argument_group('where')
  g.add_argument('--devices', type=int, default=-1,
                 help='local devices to use (-1: all GPUs, else the CPU)')
  g.add_argument('--threads', type=int, default=None,
                 help='TensorFlow threads of this process')
  g.add_argument('--workers', type=int, default=None,
                 help='start N local tf.distribute worker processes')
  g.add_argument('--threads-per-worker', type=int, default=None,
                 help='TensorFlow threads per local worker')
  g.add_argument('--pin-cores', action='store_true',
                 help='pin each local worker to one CPU core')
  g.add_argument('--cluster-spec',
                 help='existing cluster: JSON, a JSON file, or TF_CONFIG')
  g = p.add_argument_group('reporting')
  g.add_argument('--no-progress', action='store_true',
                 help='no progress bar')
  g.add_argument('--log-blocks', action='store_true',
                 help='print a line for every block written')
  p.set_defaults(func=run)
  return p


# ----------------------------------------------------------------------------
# Inputs and architecture.
# ----------------------------------------------------------------------------
def load_array(path: str, key=None, flag: str = '--x1') -> np.ndarray:
  """Loads an array from a ``.npy`` or ``.npz`` file (no pickles).

  Example:
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), 'a.npz')
    >>> np.savez(p, train=np.zeros((2, 3)))
    >>> load_array(p).shape
    (2, 3)
  """
  if not os.path.exists(path):
    raise CliError(f'{flag}: no such file: {path}')
  try:
    data = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise CliError(f'{flag}: cannot read {path} as .npy/.npz ({e})') from None
  if isinstance(data, np.lib.npyio.NpzFile):
    with data:
      keys = list(data.keys())
      if key is None:
        if len(keys) != 1:
          raise CliError(f'{flag}: {path} holds {len(keys)} arrays {keys}; '
                         f'choose one with {flag}-key')
        key = keys[0]
      if key not in keys:
        raise CliError(f'{flag}-key: {path} has no array {key!r}; it has '
                       f'{keys}')
      return data[key]
  if key is not None:
    raise CliError(f'{flag}-key given but {path} is a .npy file')
  return data


def load_arch(spec: str, arch_args: dict):
  """`(kernel_fn, identity)` from a preset name or a Python file.

  Example:
    >>> kernel_fn, ident = load_arch('fcn', {'depth': 1})
    >>> ident['preset'], ident['args']['depth']
    ('fcn', 1)
  """
  from nt_gp import presets  # pylint: disable=g-import-not-at-top
  if spec in presets.PRESETS:
    try:
      _, _, kernel_fn = presets.build(spec, **arch_args)
      return kernel_fn, presets.identity(spec, arch_args)
    except (TypeError, ValueError) as e:
      raise CliError(f'--arch {spec}: {e}') from None
  if not spec.endswith('.py'):
    raise CliError(f'--arch: {spec!r} is neither a preset '
                   f'({", ".join(sorted(presets.PRESETS))}) nor a .py file')
  if not os.path.exists(spec):
    raise CliError(f'--arch: no such file: {spec}')
  if arch_args:
    raise CliError('--arch-args applies to presets only')
  with open(spec, 'rb') as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  mod_spec = importlib.util.spec_from_file_location(
      f'nt_gp_arch_{digest[:12]}', spec)
  module = importlib.util.module_from_spec(mod_spec)
  mod_spec.loader.exec_module(module)
  kernel_fn = getattr(module, 'kernel_fn', None)
  if not callable(kernel_fn):
    raise CliError(f'--arch: {spec} does not define a callable `kernel_fn`')
  return kernel_fn, {'file_sha256': digest}


_RANK = {'fcn': 2, 'cnn-gap': 4, 'myrtle5': 4, 'myrtle7': 4, 'myrtle10': 4,
         'wrn': 4}


def _check_inputs(arch, x1, x2):
  if x2 is not None and x1.shape[1:] != x2.shape[1:]:
    raise CliError(f'--x1 and --x2 must have the same shape apart from the '
                   f'batch axis, got {x1.shape} and {x2.shape}')
  rank = _RANK.get(arch)
  if rank is not None and x1.ndim != rank:
    want = '(N, features)' if rank == 2 else '(N, height, width, channels)'
    raise CliError(f'--arch {arch} expects inputs of shape {want}, got '
                   f'{x1.shape}')
  if arch in ('myrtle5', 'myrtle7', 'myrtle10', 'wrn') and any(
      d % 4 for d in x1.shape[1:3]):
    raise CliError(f'--arch {arch} needs image sides divisible by 4, got '
                   f'{x1.shape[1:3]}')
  for name, x in (('--x1', x1), ('--x2', x2)):
    if x is not None and not np.issubdtype(x.dtype, np.number):
      raise CliError(f'{name} must be numeric, got dtype {x.dtype}')


# ----------------------------------------------------------------------------
# Running.
# ----------------------------------------------------------------------------
def _configure_threads(threads):
  if threads:
    os.environ['TF_NUM_INTRAOP_THREADS'] = str(threads)
    os.environ['TF_NUM_INTEROP_THREADS'] = str(threads)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


class _WorkerWatch:
  """Interrupts the main thread when every local worker has died."""

  def __init__(self, cluster):
    self.cluster = cluster
    self.all_dead = False
    self._stop = threading.Event()
    threading.Thread(target=self._watch, daemon=True).start()

  def _watch(self):
    while not self._stop.wait(1.0):
      if self.cluster.alive_workers() == 0:
        self.all_dead = True
        os.kill(os.getpid(), signal.SIGINT)
        return

  def stop(self):
    self._stop.set()


def run(args) -> int:
  """Runs `nt-gp kernel` with parsed `args`; returns the exit code."""
  try:
    return _run(args)
  except CliError as e:
    print(f'nt-gp kernel: error: {e}', file=sys.stderr)
    return 1


def _run(args) -> int:
  from nt_gp import store as store_lib  # pylint: disable=g-import-not-at-top
  # Cheap checks first, before TensorFlow starts.
  if args.batch_size < 1:
    raise CliError(f'--batch-size must be positive, got {args.batch_size}')
  names = tuple(g.strip() for g in args.get.split(',') if g.strip())
  if not names or any(n not in ('nngp', 'ntk') for n in names):
    raise CliError(f'--get must be nngp, ntk or nngp,ntk; got {args.get!r}')
  if len(set(names)) != len(names):
    raise CliError(f'--get names a quantity twice: {args.get!r}')
  try:
    arch_args = json.loads(args.arch_args)
  except ValueError as e:
    raise CliError(f'--arch-args is not valid JSON: {e}') from None
  if not isinstance(arch_args, dict):
    raise CliError('--arch-args must be a JSON object')
  if args.workers is not None and args.cluster_spec:
    raise CliError('give either --workers or --cluster-spec, not both')
  if args.workers is not None and args.workers < 1:
    raise CliError(f'--workers must be positive, got {args.workers}')
  if os.path.exists(args.out) and not args.resume:
    raise CliError(f'{args.out} already exists; pass --resume to continue it, '
                   f'or choose another --out (it is never overwritten)')
  out_dir = os.path.dirname(os.path.abspath(args.out))
  if not os.path.isdir(out_dir):
    raise CliError(f'--out: folder {out_dir} does not exist')
  x1 = load_array(args.x1, args.x1_key, '--x1')
  x2 = None if args.x2 is None else load_array(args.x2, args.x2_key, '--x2')
  if args.x2 is None and args.x2_key is not None:
    raise CliError('--x2-key given without --x2')
  _check_inputs(args.arch, x1, x2)
  dtype = args.dtype or (x1.dtype.name if x1.dtype in (np.float32, np.float64)
                         else 'float32')
  n1 = x1.shape[0]
  n2 = n1 if x2 is None else x2.shape[0]
  for n, flag in ((n1, '--x1'), (n2, '--x2')):
    if n % args.batch_size:
      raise CliError(f'--batch-size {args.batch_size} must divide the number '
                     f'of inputs in {flag} ({n})')

  _configure_threads(args.threads)
  from nt_gp.distributed import compute as compute_lib  # pylint: disable=g-import-not-at-top
  kernel_fn, arch_id = load_arch(args.arch, arch_args)
  say = _printer(args)

  cluster = watch = None
  if args.workers is not None:
    from nt_gp.distributed import ClusterRunner, LocalCluster  # pylint: disable=g-import-not-at-top
    cluster = LocalCluster(args.workers, threads=args.threads_per_worker,
                           pin_cores=args.pin_cores)
    for i, proc in enumerate(cluster.workers):
      say(f'started worker {i} (pid {proc.pid}) at {cluster.spec["worker"][i]}')
    say(f'server logs in {cluster.log_dir}')
    runner = ClusterRunner(cluster.spec)
    watch = _WorkerWatch(cluster)
  elif args.cluster_spec:
    from nt_gp.distributed import ClusterRunner  # pylint: disable=g-import-not-at-top
    spec = args.cluster_spec
    if spec == 'TF_CONFIG':
      spec = None
    elif os.path.exists(spec):
      with open(spec) as f:
        spec = f.read()
    try:
      runner = ClusterRunner(spec)
    except ValueError as e:
      raise CliError(f'--cluster-spec: {e}') from None
  else:
    try:
      runner = compute_lib.LocalRunner(args.devices)
    except ValueError as e:
      raise CliError(f'--devices: {e}') from None

  before = 0
  if os.path.exists(args.out):
    before = _blocks_done(args.out)
  start = time.time()
  try:
    compute_lib.compute_kernel(
        kernel_fn, x1, x2, out=args.out, arch=arch_id, get=names,
        batch_size=args.batch_size, dtype=dtype, resume=args.resume,
        runner=runner, progress=not args.no_progress,
        log=say if args.log_blocks else None, fsync=not args.no_fsync,
        verify=not args.no_verify)
  except (store_lib.StoreError, FileNotFoundError) as e:
    raise CliError(str(e)) from None
  except KeyboardInterrupt:
    if watch is not None and watch.all_dead:
      raise CliError(f'all {args.workers} workers died; the finished blocks '
                     f'are saved in {args.out}: rerun with --resume') from None
    raise
  finally:
    if watch is not None:
      watch.stop()
    runner.close()
  seconds = time.time() - start
  if cluster is not None:
    cluster.remove_logs()   # the servers exit when this process does
  with store_lib.KernelStore.open(args.out, verify=False) as s:
    n_blocks = s.grid.n_blocks
    shapes = ', '.join(f'{n} {s.dataset(n).shape} {s.dataset(n).dtype}'
                       for n in s.names)
  written = n_blocks - before
  entries = written * s.grid.rows * s.grid.cols
  print(f'wrote {args.out}: {shapes}; {written} of {n_blocks} blocks written '
        f'by this run in {seconds:.1f} s ({entries / max(seconds, 1e-9):.3g} '
        f'kernel entries/s)')
  return 0


def _blocks_done(path):
  from nt_gp import store as store_lib  # pylint: disable=g-import-not-at-top
  try:
    with store_lib.KernelStore.open(path, verify=False) as s:
      return s.n_done
  except (store_lib.StoreError, OSError):
    return 0


def _printer(args):
  import tqdm  # pylint: disable=g-import-not-at-top
  if args.no_progress:
    return lambda msg: print(msg, file=sys.stderr, flush=True)
  return lambda msg: tqdm.tqdm.write(msg, file=sys.stderr)
