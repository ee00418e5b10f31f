"""The `nt-gp` command.

  nt-gp demo [--quick] [--out DIR]   end-to-end NNGP/NTK regression demo
  nt-gp kernel --x1 X.npy --arch A --batch-size B --out K.h5 [...]
                                     kernel into a resumable HDF5 file

What TensorFlow's C++ side logs (oneDNN notices, CUDA probing, XLA service
lines) is not shown unless ``--verbose`` is given: ``TF_CPP_MIN_LOG_LEVEL``
defaults to 3 before TensorFlow is imported, and the lines it prints anyway
while it starts are kept off the terminal (see `nt_gp.cli_supervisor` for
`nt-gp kernel`).
"""
import argparse
import contextlib
import os
import sys

from nt_gp import cli_kernel, cli_solve, extras

__all__ = ['main', 'build_parser']


@contextlib.contextmanager
def native_stderr_hidden(hidden: bool = True):
  """Within the block, writes to file descriptor 2 by C/C++ libraries go to
  /dev/null while Python's `sys.stderr` still reaches the terminal (a no-op
  when `sys.stderr` is not the process's descriptor 2, e.g. under capture).

  Example:
    >>> with native_stderr_hidden():
    ...   pass
  """
  try:
    real = hidden and sys.stderr.fileno() == 2
  except (AttributeError, OSError, ValueError):
    real = False
  if not real:
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  python_stderr = sys.stderr
  sys.stderr = os.fdopen(os.dup(saved), 'w', buffering=1,
                         encoding=python_stderr.encoding, errors='replace')
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, 2)
  os.close(devnull)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    sys.stderr.close()
    sys.stderr = python_stderr


def _demo(args):
  missing = extras.missing('demo')
  if missing:
    print(f'nt-gp demo: error: the demo needs {" and ".join(missing)} (its '
          f'data sets and figures); install them with: pip install '
          f'"nt_gp[demo]"', file=sys.stderr)
    return 1
  if not args.verbose:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
  with native_stderr_hidden(not args.verbose):
    from nt_gp import demo  # pylint: disable=g-import-not-at-top
    if not args.verbose:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.get_logger().setLevel('CRITICAL')
    return demo.run(quick=args.quick, out_dir=args.out)


def build_parser() -> argparse.ArgumentParser:
  """The argument parser of `nt-gp` and its subcommands.

  Example:
    >>> build_parser().parse_args(['demo', '--quick']).quick
    True
  """
  parser = argparse.ArgumentParser(
      prog='nt-gp', description='Infinite-width neural network kernels (NNGP/'
                                'NTK) in TensorFlow.')
  sub = parser.add_subparsers(dest='command', required=True)
  demo = sub.add_parser('demo', help='NNGP/NTK regression on scikit-learn data')
  demo.add_argument('--quick', action='store_true',
                    help='small sizes (about a minute on 2 cores)')
  demo.add_argument('--out', default='demo-output',
                    help='folder for plots and results (default: demo-output)')
  demo.add_argument('--verbose', action='store_true',
                    help='also show TensorFlow\'s own log lines')
  demo.set_defaults(func=_demo)
  cli_kernel.add_parser(sub)
  cli_solve.add_parser(sub)
  return parser


def main(argv=None) -> int:
  """Runs `nt-gp` with `argv` (default: the command line); returns the exit
  code.

  Example:
    >>> main(['kernel', '--x1', 'missing.npy', '--arch', 'fcn',
    ...       '--batch-size', '4', '--out', 'k.h5'])
    1
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  args = build_parser().parse_args(argv)
  args.argv = argv
  return int(args.func(args) or 0)


if __name__ == '__main__':
  sys.exit(main())
