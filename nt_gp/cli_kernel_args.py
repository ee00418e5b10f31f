"""Arguments, inputs and architectures of `nt-gp kernel` (and `nt-gp solve`).

Everything here runs before TensorFlow starts: reading ``.npy``/``.npz``
inputs, loading a preset or a Python architecture file, checking arguments
and inputs. Failures are `CliError`s, which the commands print as one
``error:`` line.

Example:
  >>> parse_names('nngp,ntk')
  ('nngp', 'ntk')
"""
import hashlib
import importlib.util
import json
import os
import site
import sys

import numpy as np

from nt_gp.input_checks import check_kernel_inputs

__all__ = ['CliError', 'load_array', 'load_arch', 'check_arguments',
           'check_inputs', 'computation_dtype', 'parse_names',
           'message_printer', 'parse_arch_args', 'PRESET_NAMES']

# The presets `--arch` accepts by name.
PRESET_NAMES = ('fcn', 'cnn-gap', 'myrtle5', 'myrtle7', 'myrtle10', 'wrn')


class CliError(Exception):
  """An error reported to the user as one line, without a traceback.

  Example:
    >>> str(CliError('--x1: no such file: x.npy'))
    '--x1: no such file: x.npy'
  """

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
  if spec in PRESET_NAMES:
    return
  if not spec.endswith('.py'):
    raise CliError(f'--arch: {spec!r} is neither a preset '
                   f'({", ".join(sorted(PRESET_NAMES))}) nor a .py file')
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
    nt_gp.cli_kernel_args.CliError: --x1 is complex (complex128); kernels are defined for real inputs: use the real part, or the real and imaginary parts as separate features
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


def parse_arch_args(text: str) -> dict:
  """``--arch-args``: a JSON object of keyword arguments of the architecture.

  Example:
    >>> parse_arch_args('{"depth": 2}')
    {'depth': 2}
    >>> parse_arch_args('[2]')
    Traceback (most recent call last):
    ...
    nt_gp.cli_kernel_args.CliError: --arch-args must be a JSON object
  """
  try:
    arch_args = json.loads(text)
  except ValueError as e:
    raise CliError(f'--arch-args is not valid JSON: {e}') from None
  if not isinstance(arch_args, dict):
    raise CliError('--arch-args must be a JSON object')
  return arch_args


def check_arguments(args):
  """The checks of `args` that need no files; returns `(names, arch_args)`.

  Example:
    >>> import argparse
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
  arch_args = parse_arch_args(args.arch_args)
  if args.workers is not None and args.cluster_spec:
    raise CliError('give either --workers or --cluster-spec, not both')
  if args.workers is not None and args.workers < 1:
    raise CliError(f'--workers must be positive, got {args.workers}')
  if args.x2 is None and args.x2_key is not None:
    raise CliError('--x2-key given without --x2')
  _check_arch_spec(args.arch, arch_args)
  if args.arch in PRESET_NAMES:
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
    >>> import argparse
    >>> computation_dtype(argparse.Namespace(dtype=None), np.ones(2, 'f2'))
    'float32'
  """
  if args.dtype:
    return args.dtype
  return x1.dtype.name if x1.dtype in (np.float32, np.float64) else 'float32'


def message_printer(args):
  """A function printing a message line to stderr: beside the progress bar,
  or plainly with ``--no-progress`` (`args.no_progress`).

  Example:
    >>> import argparse
    >>> import argparse
    >>> say = message_printer(argparse.Namespace(no_progress=True))
    >>> callable(say)
    True
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  if args.no_progress:
    return lambda msg: print(msg, file=sys.stderr, flush=True)
  return lambda msg: tqdm.tqdm.write(msg, file=sys.stderr)
