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
import os
import sys

import numpy as np

from nt_gp.cli_kernel_args import (PRESET_NAMES, CliError, check_arguments,
                                   check_inputs, computation_dtype, load_arch,
                                   load_array)

__all__ = ['add_parser', 'run', 'load_array', 'load_arch', 'CliError']


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
                 help=f'preset ({", ".join(PRESET_NAMES)}) or a Python file '
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
