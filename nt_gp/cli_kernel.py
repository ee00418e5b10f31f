"""`nt-gp kernel`: compute an NNGP/NTK kernel into a resumable HDF5 store.

  nt-gp kernel --x1 train.npy [--x2 test.npy] --arch myrtle5 --get nngp \\
      --batch-size 64 --out k.h5 [--resume] [--workers 4]

* Inputs: ``.npy`` or ``.npz`` files (``--x1-key``/``--x2-key`` select an
  array of an ``.npz``); without ``--x2`` the symmetric kernel of ``--x1``.
* Architecture: a preset (``fcn``, ``cnn-gap``, ``myrtle5``, ``myrtle7``,
  ``myrtle10``, ``wrn``; arguments with ``--arch-args '{"depth": 5}'``) or a
  Python file exporting ``kernel_fn``.
* Blocks: ``--batch-size B`` inputs per side; B need not divide the numbers
  of inputs (the last blocks are smaller).
* Where: this process's devices (default; ``--devices N``), ``--workers N``
  local worker processes, or an existing cluster (``--cluster-spec JSON`` or
  ``--cluster-spec TF_CONFIG``), see `nt_gp.distributed`.
* The output is a `nt_gp.store.KernelStore`; ``--resume`` continues a killed
  job and computes only its missing blocks. An existing output is never
  overwritten, and one made for other inputs or another architecture is
  refused.
* Every failure ends in one ``nt-gp kernel: error: ...`` line saying what to
  do. The arguments, inputs and output location are checked before
  TensorFlow starts; the computation then runs in a child process
  (`nt_gp.cli_supervisor`), so that even a crash of TensorFlow or HDF5 (out
  of memory, say) is reported that way. TensorFlow's own log lines are shown
  with ``--verbose`` only.

Example:
  >>> import os, tempfile
  >>> import numpy as np
  >>> from nt_gp.cli import main
  >>> d = tempfile.mkdtemp()
  >>> np.save(os.path.join(d, 'x.npy'), np.random.RandomState(0).randn(7, 3))
  >>> main(['kernel', '--x1', os.path.join(d, 'x.npy'), '--arch', 'fcn',
  ...       '--batch-size', '4', '--out', os.path.join(d, 'k.h5'),
  ...       '--no-progress'])  # doctest: +ELLIPSIS
  wrote ...k.h5: nngp (7, 7) float64; 4 of 4 blocks written by this run ...
  0
"""
import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import site
import sys

import numpy as np

from nt_gp.input_checks import check_kernel_inputs

__all__ = ['add_parser', 'load_array', 'load_arch', 'CliError']

_PRESET_NAMES = ('fcn', 'cnn-gap', 'myrtle5', 'myrtle7', 'myrtle10', 'wrn')


class CliError(Exception):
  """An error reported to the user as one line, without a traceback.

  Example:
    >>> str(CliError('--x1: no such file: x.npy'))
    '--x1: no such file: x.npy'
  """


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
                 help=f'preset ({", ".join(_PRESET_NAMES)}) or a Python file '
                      f'exporting `kernel_fn`')
  g.add_argument('--arch-args', default='{}',
                 help='JSON object of preset arguments, e.g. \'{"depth": 5}\'')
  g.add_argument('--get', default='nngp',
                 help='nngp, ntk, or nngp,ntk (default: nngp)')
  g.add_argument('--dtype', choices=('float32', 'float64'),
                 help='computation and storage dtype (default: that of --x1; '
                      'float32 for other input dtypes)')
  g.add_argument('--batch-size', type=int, required=True,
                 help='block size (inputs per side of a block; the last '
                      'blocks are smaller where it does not divide the '
                      'numbers of inputs)')
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
  g.add_argument('--verbose', action='store_true',
                 help='also show TensorFlow\'s and gRPC\'s own log lines, and '
                      'tracebacks')
  # Set by the supervising process for the child that computes.
  p.add_argument('--in-process', action='store_true', help=argparse.SUPPRESS)
  p.set_defaults(func=run)
  return p


# ----------------------------------------------------------------------------
# Inputs and architecture.
# ----------------------------------------------------------------------------
def load_array(path: str, key=None, flag: str = '--x1',
               mmap: bool = False) -> np.ndarray:
  """Loads an array from a ``.npy`` or ``.npz`` file (no pickles).

  Args:
    path: the file.
    key: the array of an ``.npz`` (needed if it holds several).
    flag: the option's name, for messages.
    mmap: map a ``.npy`` file instead of reading it.

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
    data = np.load(path, allow_pickle=False, mmap_mode='r' if mmap else None)
  except (OSError, ValueError, EOFError) as e:
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
      try:
        return data[key]
      except (OSError, ValueError, EOFError) as e:
        raise CliError(f'{flag}: cannot read array {key!r} of {path} '
                       f'({e})') from None
  if key is not None:
    raise CliError(f'{flag}-key given but {path} is a .npy file')
  return data


def _is_library_file(path: str) -> bool:
  """Whether `path` belongs to Python, an installed package or nt_gp."""
  roots = {sys.prefix, sys.base_prefix, sys.exec_prefix,
           os.path.dirname(os.path.abspath(__file__))}
  try:
    roots.update(site.getsitepackages())
    roots.add(site.getusersitepackages())
  except AttributeError:   # some virtualenv layouts
    pass
  real = os.path.realpath(path)
  return any(real.startswith(os.path.realpath(r) + os.sep) for r in roots if r)


def _sha256_file(path) -> str:
  with open(path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def load_arch(spec: str, arch_args: dict):
  """`(kernel_fn, identity)` from a preset name or a Python file.

  For a file the identity records the SHA-256 of the file and of every
  module it imports that is not part of Python, an installed package or
  nt_gp (its helpers), so a changed helper is noticed on ``--resume``.

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
  _check_arch_spec(spec, arch_args)
  digest = _sha256_file(spec)
  before = set(sys.modules)
  mod_spec = importlib.util.spec_from_file_location(
      f'nt_gp_arch_{digest[:12]}', spec)
  module = importlib.util.module_from_spec(mod_spec)
  folder = os.path.dirname(os.path.abspath(spec))
  sys.path.insert(0, folder)      # its helpers import as they would when run
  try:
    mod_spec.loader.exec_module(module)
  except Exception as e:  # pylint: disable=broad-except
    raise CliError(f'--arch: running {spec} failed ({type(e).__name__}: '
                   f'{e})') from None
  finally:
    sys.path.remove(folder)
  kernel_fn = getattr(module, 'kernel_fn', None)
  if not callable(kernel_fn):
    raise CliError(f'--arch: {spec} does not define a callable `kernel_fn`')
  sources = {os.path.basename(spec): digest}
  for name in sorted(set(sys.modules) - before):
    path = getattr(sys.modules[name], '__file__', None)
    if path and os.path.isfile(path) and not _is_library_file(path):
      rel = os.path.relpath(os.path.abspath(path), folder)
      sources[path if rel.startswith('..') else rel] = _sha256_file(path)
  return kernel_fn, {'file_sha256': digest, 'sources': sources}


def _check_arch_spec(spec, arch_args):
  if spec in _PRESET_NAMES:
    return
  if not spec.endswith('.py'):
    raise CliError(f'--arch: {spec!r} is neither a preset '
                   f'({", ".join(sorted(_PRESET_NAMES))}) nor a .py file')
  if not os.path.isfile(spec):
    raise CliError(f'--arch: no such file: {spec}')
  if arch_args:
    raise CliError('--arch-args applies to presets only')


def check_inputs(arch, x1, x2, dtype):
  """Refuses inputs the kernel cannot be computed from (one-line errors).

  Args:
    arch: the `--arch` value (a preset's input shape is checked).
    x1, x2: `(N, ...)` arrays (`x2` may be None).
    dtype: the computation dtype.

  Example:
    >>> check_inputs('fcn', np.ones((3, 2)), None, np.dtype('float32'))
    >>> check_inputs('fcn', np.ones((3, 2), complex), None, np.float32)
    Traceback (most recent call last):
    ...
    nt_gp.cli_kernel.CliError: --x1 is complex (complex128); kernels are defined for real inputs: use the real part, or the real and imaginary parts as separate features
  """
  from nt_gp import presets  # pylint: disable=g-import-not-at-top
  for name, x in (('--x1', x1), ('--x2', x2)):
    if x is not None:
      try:
        check_kernel_inputs(name, x, dtype)
      except (TypeError, ValueError) as e:
        raise CliError(str(e)) from None
  if x2 is not None and x1.shape[1:] != x2.shape[1:]:
    raise CliError(f'--x1 and --x2 must have the same shape apart from the '
                   f'batch axis, got {x1.shape} and {x2.shape}')
  if arch in presets.PRESETS:
    try:
      presets.check_inputs(arch, x1.shape)
    except ValueError as e:
      raise CliError(f'--arch {arch}: {e}') from None


def parse_names(get: str) -> tuple:
  """The quantities of `--get`.

  Example:
    >>> parse_names('nngp, ntk')
    ('nngp', 'ntk')
  """
  names = tuple(g.strip() for g in get.split(',') if g.strip())
  if not names or any(n not in ('nngp', 'ntk') for n in names):
    raise CliError(f'--get must be nngp, ntk or nngp,ntk; got {get!r}')
  if len(set(names)) != len(names):
    raise CliError(f'--get names a quantity twice: {get!r}')
  return names


def check_arguments(args):
  """The checks of `args` that need no files; returns `(names, arch_args)`.

  Example:
    >>> import argparse
    >>> args = argparse.Namespace(batch_size=4, get='ntk', arch='fcn',
    ...                           arch_args='{"depth": 2}', workers=None,
    ...                           cluster_spec=None, x2=None, x2_key=None)
    >>> check_arguments(args)
    (('ntk',), {'depth': 2})
  """
  if args.batch_size < 1:
    raise CliError(f'--batch-size must be positive, got {args.batch_size}')
  names = parse_names(args.get)
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
  if args.x2 is None and args.x2_key is not None:
    raise CliError('--x2-key given without --x2')
  _check_arch_spec(args.arch, arch_args)
  if args.arch in _PRESET_NAMES:
    from nt_gp import presets  # pylint: disable=g-import-not-at-top
    try:
      presets.identity(args.arch, arch_args)
    except ValueError as e:
      raise CliError(f'--arch {args.arch}: {e}') from None
  return names, arch_args


def computation_dtype(args, x1) -> str:
  """`--dtype`, else that of `x1` if float32/float64, else float32.

  Example:
    >>> import argparse
    >>> computation_dtype(argparse.Namespace(dtype=None), np.ones(2, 'f2'))
    'float32'
  """
  if args.dtype:
    return args.dtype
  return x1.dtype.name if x1.dtype in (np.float32, np.float64) else 'float32'


def _printer(args):
  """A function printing a message line to stderr (beside the progress bar
  unless `--no-progress`)."""
  import tqdm  # pylint: disable=g-import-not-at-top
  if args.no_progress:
    return lambda msg: print(msg, file=sys.stderr, flush=True)
  return lambda msg: tqdm.tqdm.write(msg, file=sys.stderr)


def run(args) -> int:
  """Runs `nt-gp kernel` with parsed `args`; returns the exit code."""
  if args.in_process:
    from nt_gp import cli_kernel_job  # pylint: disable=g-import-not-at-top
    return cli_kernel_job.run(args)
  try:
    _preflight(args)
  except CliError as e:
    print(f'nt-gp kernel: error: {e}', file=sys.stderr)
    return 1
  from nt_gp import cli_supervisor  # pylint: disable=g-import-not-at-top
  return cli_supervisor.run_child(args)


def _preflight(args):
  """Everything that can be checked before TensorFlow starts: arguments,
  inputs, and the output location (see `check_output`)."""
  names, arch_args = check_arguments(args)
  out_dir = os.path.dirname(os.path.abspath(args.out))
  if not os.path.isdir(out_dir):
    raise CliError(f'--out: folder {out_dir} does not exist')
  exists = os.path.lexists(args.out)
  if exists and not args.resume:
    raise CliError(f'{args.out} already exists; pass --resume to continue it, '
                   f'or choose another --out (it is never overwritten)')
  x1 = load_array(args.x1, args.x1_key, '--x1', mmap=True)
  x2 = (None if args.x2 is None else
        load_array(args.x2, args.x2_key, '--x2', mmap=True))
  dtype = computation_dtype(args, x1)
  check_inputs(args.arch, x1, x2, np.dtype(dtype))
  from nt_gp import cli_output  # pylint: disable=g-import-not-at-top
  cli_output.check_output(args, names, arch_args, x1, x2, dtype)
