"""The `nt-gp` command.

  nt-gp demo [--quick] [--out DIR]   end-to-end NNGP/NTK regression demo
  nt-gp kernel --x1 X.npy --arch A --batch-size B --out K.h5 [...]
                                     kernel into a resumable HDF5 file
"""
import argparse
import sys

from nt_gp import cli_kernel, cli_solve

__all__ = ['main']


def _demo(args):
  from nt_gp import demo  # pylint: disable=g-import-not-at-top
  return demo.run(quick=args.quick, out_dir=args.out)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='nt-gp', description='Infinite-width neural network kernels (NNGP/'
                                'NTK) in TensorFlow.')
  sub = parser.add_subparsers(dest='command', required=True)
  demo = sub.add_parser('demo', help='NNGP/NTK regression on scikit-learn data')
  demo.add_argument('--quick', action='store_true',
                    help='small sizes (about a minute on 2 cores)')
  demo.add_argument('--out', default='demo-output',
                    help='folder for plots and results (default: demo-output)')
  demo.set_defaults(func=_demo)
  cli_kernel.add_parser(sub)
  cli_solve.add_parser(sub)
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  return int(args.func(args) or 0)


if __name__ == '__main__':
  sys.exit(main())
