"""`nt-gp solve`: GP / kernel-regression predictions and a `diag_reg` sweep.

  nt-gp solve --train-kernel train.h5 --test-kernel test.h5 \\
      --y-train y.npy --y-test y_test.npy --reg 1e-4,1e-3,1e-2 \\
      --memory-limit 16G --out results/
  nt-gp solve --method nystrom --x-train x.npy --x-test x_test.npy \\
      --arch fcn --get ntk --y-train y.npy --reg 1e-3 --centres 5000 \\
      --out results/

* ``--method exact`` (default): the exact GP posterior from kernel stores
  (``nt-gp kernel`` outputs: k(train, train), k(test, train), optionally
  k(val, train) and k(test, test) for variances), or from inputs and an
  architecture (the kernels are computed first, into ``OUT/kernels``).
  Kernels that do not fit ``--memory-limit`` are factored out of core in
  ``OUT/work``; an interrupted run continues with ``--resume``.
* ``--method nystrom``: Nyström centres and Falkon's preconditioned CG, for
  millions of points: from inputs and an architecture (kernel blocks
  computed on the fly, locally or on ``--workers``), or from stores of
  k(train, centres), k(centres, centres) and k(test, centres).
  ``--variances`` (test variances) or ``--marginal-likelihood`` add the
  Nyström (DTC) GP's log marginal likelihood and Titsias' bound (GPflow
  SGPR's elbo) to the table: one more ``N M^2`` product in the first pass.
* Labels: ``.npy`` integer classes or one-hot rows (accuracy is reported)
  or real targets (RMSE).
* Outputs in ``--out`` (a new folder; nothing is ever overwritten):
  ``predictions.npz`` (means, variances, alpha for every value),
  ``sweep.csv`` / ``sweep.md`` (per value: validation / test accuracy or
  RMSE, log marginal likelihood, Titsias bound), ``sweep.png`` (the plot).

Example:
  >>> import os, tempfile
  >>> import numpy as np
  >>> from nt_gp.cli import main
  >>> d = tempfile.mkdtemp()
  >>> rng = np.random.RandomState(0)
  >>> x = rng.randn(40, 3)
  >>> for name, a in (('x', x[:30]), ('xt', x[30:]),
  ...                 ('y', np.sin(x[:30, 0])), ('yt', np.sin(x[30:, 0]))):
  ...   np.save(os.path.join(d, name + '.npy'), a)
  >>> p = lambda name: os.path.join(d, name)
  >>> main(['solve', '--x-train', p('x.npy'), '--x-test', p('xt.npy'),
  ...       '--arch', 'fcn', '--y-train', p('y.npy'), '--y-test', p('yt.npy'),
  ...       '--reg', '1e-3,1e-1', '--batch-size', '10', '--out', p('out'),
  ...       '--no-progress'])  # doctest: +ELLIPSIS
    diag_reg  reg...rmse  log marginal likelihood
  ...
  wrote ...out: predictions.npz, sweep.csv, sweep.md, sweep.png
  0
"""
import argparse
import os
import re
import shutil
import sys

import numpy as np

from nt_gp import cli_cluster, cli_kernel_args

__all__ = ['add_parser', 'run']

_OUTPUTS = ('predictions.npz', 'sweep.csv', 'sweep.md', 'sweep.png')


# User errors: one line, no traceback (as for `nt-gp kernel`).
CliError = cli_kernel_args.CliError


def add_parser(subparsers) -> argparse.ArgumentParser:
  """Registers the `solve` subcommand on `nt-gp`'s subparsers.

  Example:
    >>> import argparse
    >>> sub = argparse.ArgumentParser().add_subparsers()
    >>> add_parser(sub).prog.endswith('solve')
    True
  """
  p = subparsers.add_parser(
      'solve', help='GP / kernel regression predictions and a diag_reg '
      'sweep, from kernel stores or inputs (exact or Nystrom)',
      description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  g = p.add_argument_group('method')
  g.add_argument('--method', choices=('exact', 'nystrom'), default='exact',
                 help='exact GP (default) or Nystrom + preconditioned CG')
  g.add_argument('--get', choices=('nngp', 'ntk'), default='nngp',
                 help='prior kernel: nngp (default) or ntk')
  g.add_argument('--reg', required=True, nargs='+',
                 help='diag_reg values, e.g. 1e-4,1e-3,1e-2 (relative to the '
                      'mean diagonal of the training kernel)')
  g.add_argument('--reg-absolute', action='store_true',
                 help='--reg values are absolute (noise variances)')
  g.add_argument('--memory-limit',
                 help='memory limit of this process, e.g. 16G (default: 80%% '
                      'of what the machine has available)')
  g = p.add_argument_group('kernel stores')
  g.add_argument('--train-kernel', help='exact: k(train, train); nystrom: '
                 'k(train, centres)')
  g.add_argument('--test-kernel', help='exact: k(test, train); nystrom: '
                 'k(test, centres)')
  g.add_argument('--val-kernel', help='exact: k(val, train); nystrom: '
                 'k(val, centres)')
  g.add_argument('--test-test-kernel', help='k(test, test) store or .npy '
                 'diagonal, for posterior variances')
  g.add_argument('--centre-kernel', help='nystrom: k(centres, centres)')
  g.add_argument('--train-diag', help='nystrom: .npy diagonal of k(train, '
                 'train), for a relative --reg and Titsias\' bound')
  g.add_argument('--no-verify', action='store_true',
                 help='exact: skip checking the stores\' blocks against their '
                      'checksums (one read of each store)')
  g = p.add_argument_group('inputs and architecture')
  g.add_argument('--x-train', help='.npy/.npz training inputs')
  g.add_argument('--x-test', help='.npy/.npz test inputs')
  g.add_argument('--x-val', help='.npy/.npz validation inputs')
  g.add_argument('--arch', help='preset (fcn, cnn-gap, myrtle5, ...) or a '
                 'Python file exporting `kernel_fn`')
  g.add_argument('--arch-args', default='{}', help='JSON preset arguments')
  g.add_argument('--dtype', choices=('float32', 'float64'),
                 help='kernel dtype (default: that of --x-train)')
  g.add_argument('--batch-size', type=int, default=None,
                 help='kernel block size (exact: inputs per side of a block, '
                      'the last blocks smaller where it does not divide the '
                      'numbers of inputs; nystrom: rows per block, default '
                      '1024)')
  g.add_argument('--variances', action='store_true',
                 help='also compute posterior variances of the test points '
                      '(nystrom: and the marginal likelihood)')
  g.add_argument('--marginal-likelihood', action='store_true',
                 help='nystrom: the log marginal likelihood and Titsias\' '
                      'bound of the Nystrom GP (exact: always computed)')
  g = p.add_argument_group('labels')
  g.add_argument('--y-train', required=True, help='.npy training labels '
                 '(integer classes, one-hot rows, or real targets)')
  g.add_argument('--y-test', help='.npy test labels (for the table)')
  g.add_argument('--y-val', help='.npy validation labels')
  g.add_argument('--task', choices=('auto', 'classification', 'regression'),
                 default='auto', help='default: classification for integer '
                 'or one-hot labels')
  g = p.add_argument_group('nystrom')
  g.add_argument('--centres', type=int, help='number of Nystrom centres M')
  g.add_argument('--centre-sampling', choices=('uniform', 'leverage'),
                 default='uniform')
  g.add_argument('--max-iter', type=int, default=100)
  g.add_argument('--tol', type=float, default=1e-7)
  g.add_argument('--patience', type=int, default=3,
                 help='early stopping on --x-val/--val-kernel (iterations)')
  g.add_argument('--seed', type=int, default=0)
  g.add_argument('--cache-dir', help='keep kernel blocks that do not fit in '
                 'memory in a temporary file here (read, not recomputed)')
  g = p.add_argument_group('where')
  g.add_argument('--workers', type=int, default=None,
                 help='start N local tf.distribute workers for the kernels')
  g.add_argument('--threads-per-worker', type=int, default=None)
  g.add_argument('--cluster-spec', help='existing cluster: JSON, a JSON file, '
                 'or TF_CONFIG')
  g = p.add_argument_group('output')
  g.add_argument('--out', required=True, help='new output folder')
  g.add_argument('--resume', action='store_true',
                 help='continue an interrupted run in an existing --out')
  g.add_argument('--no-progress', action='store_true', help='no progress bar')
  # `--reg -1e-3` is a (negative, refused later) value, not an option.
  p._negative_number_matcher = re.compile(r'^-\.?\d')  # pylint: disable=protected-access
  p.set_defaults(func=run)
  return p


def run(args) -> int:
  """Runs `nt-gp solve` with parsed `args`; returns the exit code."""
  from nt_gp.solve import (MemoryLimitError, NotPositiveDefiniteError,  # pylint: disable=g-import-not-at-top
                           PanelFileError)
  from nt_gp.store import StoreError  # pylint: disable=g-import-not-at-top
  try:
    return _run(args)
  except (CliError, ValueError, TypeError,
          FileNotFoundError, FileExistsError, NotImplementedError,
          StoreError, MemoryLimitError, NotPositiveDefiniteError,
          PanelFileError) as e:
    message = ' '.join(str(e).split())
    print(f'nt-gp solve: error: {message}', file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------
# Checks before any work.
# ----------------------------------------------------------------------------
def _regs(values):
  out = []
  for v in values:
    for part in v.split(','):
      part = part.strip()
      if not part:
        continue
      try:
        out.append(float(part))
      except ValueError:
        raise CliError(f'--reg: {part!r} is not a number') from None
  if not out:
    raise CliError('--reg: give at least one value')
  negative = [v for v in out if v < 0]
  if negative:
    raise CliError(f'--reg: diag_reg values must be >= 0 (the noise variance '
                   f'added to the kernel\'s diagonal), got {negative[0]:g}')
  return out


def _check(args, regs):
  stores = [args.train_kernel, args.test_kernel, args.val_kernel,
            args.test_test_kernel, args.centre_kernel, args.train_diag]
  inputs = [args.x_train, args.x_test, args.x_val, args.arch]
  if any(stores) and any(inputs):
    raise CliError('give either kernel stores (--train-kernel, ...) or inputs '
                   'and an architecture (--x-train, --arch, ...), not both')
  from_inputs = any(inputs)
  if from_inputs and not (args.x_train and args.arch):
    raise CliError('--x-train and --arch go together')
  if not from_inputs and not args.train_kernel:
    raise CliError('give --train-kernel (stores) or --x-train and --arch')
  if args.method == 'nystrom':
    if from_inputs and not args.centres:
      raise CliError('--method nystrom needs --centres (the number M of '
                     'centres)')
    if not from_inputs and not args.centre_kernel:
      raise CliError('--method nystrom with stores needs --centre-kernel, '
                     'k(centres, centres)')
    if not from_inputs and not (args.train_diag or args.reg_absolute):
      raise CliError('--method nystrom with stores needs --train-diag (the '
                     'diagonal of k(train, train), the scale of a relative '
                     '--reg), or absolute values with --reg-absolute')
  elif args.centres or args.centre_kernel:
    raise CliError('--centres and --centre-kernel are for --method nystrom')
  for flag, value in (('--batch-size', args.batch_size),
                      ('--workers', args.workers),
                      ('--max-iter', args.max_iter),
                      ('--patience', args.patience),
                      ('--centres', args.centres)):
    if value is not None and value < 1:
      raise CliError(f'{flag} must be positive, got {value}')
  if args.method == 'exact' and from_inputs and not args.batch_size:
    raise CliError('--batch-size is needed to compute the kernels (inputs '
                   'per side of a kernel block, e.g. 1000)')
  if args.workers is not None and args.cluster_spec:
    raise CliError('give either --workers or --cluster-spec, not both')
  for flag, label in (('--y-test', args.y_test), ('--y-val', args.y_val)):
    if label and not (args.test_kernel or args.x_test if flag == '--y-test'
                      else args.val_kernel or args.x_val):
      raise CliError(f'{flag} given without the {flag[4:]} points')
  if args.variances and not (args.test_kernel or args.x_test):
    raise CliError('--variances needs test points (--test-kernel or '
                   '--x-test)')
  if args.method == 'nystrom' and (args.variances or
                                   args.marginal_likelihood) and 0 in regs:
    raise CliError('--reg: the Nystrom GP\'s variances and marginal '
                   'likelihood need positive values (with 0 its covariance '
                   'has rank M < N); drop 0 from --reg')
  if args.marginal_likelihood and args.method == 'exact':
    raise CliError('--marginal-likelihood is for --method nystrom (the exact '
                   'solve always computes it)')
  if args.memory_limit is not None:
    from nt_gp.solve.memory import parse_memory  # pylint: disable=g-import-not-at-top
    try:
      parse_memory(args.memory_limit)
    except (ValueError, TypeError) as e:
      raise CliError(f'--memory-limit: {e}') from None
  for flag in ('train_kernel', 'test_kernel', 'val_kernel',
               'test_test_kernel', 'centre_kernel', 'train_diag',
               'x_train', 'x_test', 'x_val', 'y_train', 'y_test', 'y_val'):
    path = getattr(args, flag)
    if path and not os.path.exists(path):
      raise CliError(f'--{flag.replace("_", "-")}: no such file: {path}')
  return from_inputs


def _prepare_out(args):
  out = args.out
  if os.path.exists(out):
    if not args.resume:
      raise CliError(f'{out} already exists; choose a new --out (nothing is '
                     f'overwritten), or pass --resume to continue it')
    if not os.path.isdir(out):
      raise CliError(f'--out {out} is a file, not a folder')
    done = [f for f in _OUTPUTS if os.path.exists(os.path.join(out, f))]
    if done:
      raise CliError(f'{out} already holds results ({", ".join(done)}); '
                     f'choose a new --out')
  else:
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
      raise CliError(f'--out: folder {parent} does not exist')
    os.makedirs(out)


# ----------------------------------------------------------------------------
# Running.
# ----------------------------------------------------------------------------
def _run(args) -> int:
  regs = _regs(args.reg)
  from_inputs = _check(args, regs)
  from nt_gp.solve.regularization import check_regs  # pylint: disable=g-import-not-at-top
  from nt_gp.solve.targets import Targets  # pylint: disable=g-import-not-at-top
  try:
    check_regs(regs)
  except (ValueError, TypeError) as e:
    raise CliError(f'--reg: {e}') from None
  y_train = cli_kernel_args.load_array(args.y_train, None, '--y-train')
  targets = Targets.from_labels(y_train, args.task)
  labels = {name: cli_kernel_args.load_array(path, None, f'--y-{name}')
            for name, path in (('val', args.y_val), ('test', args.y_test))
            if path}
  arch_args = None
  if from_inputs:
    arch_args = cli_kernel_args.parse_arch_args(args.arch_args)
  _prepare_out(args)
  say = cli_kernel_args.message_printer(args)
  runner = cluster = None
  try:
    if args.workers is not None or args.cluster_spec:
      runner, cluster = _runner(args, say)
    if args.method == 'exact':
      result = _exact(args, targets, regs, from_inputs, arch_args, runner,
                      say)
    else:
      result = _nystrom(args, targets, regs, from_inputs, arch_args, runner,
                        say)
  finally:
    if runner is not None:
      runner.close()
    if cluster is not None:
      cluster.remove_logs()
  _write(args, targets, labels, result, say)
  return 0


def _runner(args, say):
  if args.workers is not None:
    return cli_cluster.start_local_cluster(args.workers, say,
                                           threads=args.threads_per_worker)
  return cli_cluster.runner_from_spec(args.cluster_spec), None


def _inputs(args, names):
  xs = {}
  for name in names:
    path = getattr(args, f'x_{name}')
    if path:
      x = cli_kernel_args.load_array(path, None, f'--x-{name}')
      if x.dtype.kind not in 'biuf':
        raise CliError(f'--x-{name} must be numeric, got dtype {x.dtype}')
      xs[name] = x
  dtype = args.dtype or (xs['train'].dtype.name if xs['train'].dtype in (
      np.float32, np.float64) else 'float32')
  for name, x in xs.items():
    if x.shape[1:] != xs['train'].shape[1:]:
      raise CliError(f'--x-{name} has inputs of shape {x.shape[1:]}, '
                     f'--x-train {xs["train"].shape[1:]}')
    xs[name] = np.ascontiguousarray(x, dtype)
  return xs


def _exact(args, targets, regs, from_inputs, arch_args, runner, say):
  from nt_gp.solve.exact import exact_sweep  # pylint: disable=g-import-not-at-top
  sets = {}
  if from_inputs:
    from nt_gp.distributed import compute as compute_lib  # pylint: disable=g-import-not-at-top
    from nt_gp.solve.kernel_blocks import FunctionBlocks  # pylint: disable=g-import-not-at-top
    kernel_fn, arch_id = cli_kernel_args.load_arch(args.arch, arch_args)
    xs = _inputs(args, ('train', 'val', 'test'))
    folder = os.path.join(args.out, 'kernels')
    os.makedirs(folder, exist_ok=True)
    say(f'computing kernels into {folder}')
    paths = {}
    for name, x in xs.items():
      paths[name] = os.path.join(folder, f'{name}.h5')
      compute_lib.compute_kernel(
          kernel_fn, x, None if name == 'train' else xs['train'],
          out=paths[name], arch=arch_id, get=args.get,
          batch_size=args.batch_size, resume=os.path.exists(paths[name]),
          runner=runner, progress=not args.no_progress)
    train = paths['train']
    for name in ('val', 'test'):
      if name in paths:
        diag = None
        if args.variances and name == 'test':
          diag = FunctionBlocks(kernel_fn, xs[name], xs[name][:1], args.get,
                                256).diagonal()
        sets[name] = paths[name] if diag is None else (paths[name], diag)
  else:
    train = args.train_kernel
    if args.val_kernel:
      sets['val'] = args.val_kernel
    if args.test_kernel:
      diag = args.test_test_kernel
      if diag is not None and diag.endswith('.npy'):
        diag = cli_kernel_args.load_array(diag, None, '--test-test-kernel')
      if args.variances and diag is None:
        raise CliError('--variances with stores needs --test-test-kernel')
      sets['test'] = args.test_kernel if diag is None else (args.test_kernel,
                                                            diag)
    elif args.test_test_kernel:
      raise CliError('--test-test-kernel needs --test-kernel')
  work = os.path.join(args.out, 'work')
  out = exact_sweep(train, targets.values, regs, args.reg_absolute,
                    get='nngp' if args.get == 'nngp' else 'ntkgp',
                    eval_sets=sets, memory_limit=args.memory_limit,
                    work_dir=work, verify=not args.no_verify,
                    progress=not args.no_progress, log=say)
  shutil.rmtree(work, ignore_errors=True)
  say(f'solved with method {out.method}')
  return {'diag_reg': out.diag_reg, 'reg': out.reg, 'mean': out.mean,
          'variance': out.variance, 'lml': out.log_marginal_likelihood,
          'alpha': out.alpha}


def _nystrom(args, targets, regs, from_inputs, arch_args, runner, say):
  from nt_gp.solve.nystrom import nystrom_sweep  # pylint: disable=g-import-not-at-top
  batch = args.batch_size or 1024
  posterior = args.variances or args.marginal_likelihood
  common = dict(task=targets.task, batch_size=batch, tol=args.tol,
                max_iter=args.max_iter, patience=args.patience,
                memory_limit=args.memory_limit, cache_dir=args.cache_dir,
                seed=args.seed, progress=not args.no_progress, log=say,
                get='nngp' if args.get == 'nngp' else 'ntkgp',
                posterior=posterior)
  y = targets.values if targets.classes is None else _as_labels(targets)
  if from_inputs:
    kernel_fn, _ = cli_kernel_args.load_arch(args.arch, arch_args)
    xs = _inputs(args, ('train', 'val', 'test'))
    validation = None
    if 'val' in xs:
      if not args.y_val:
        raise CliError('--x-val needs --y-val (for early stopping)')
      validation = (xs['val'], cli_kernel_args.load_array(args.y_val, None,
                                                     '--y-val'))
    fit = nystrom_sweep(y, regs, args.reg_absolute, kernel_fn=kernel_fn,
                        x_train=xs['train'], n_centres=args.centres,
                        centres=args.centre_sampling, validation=validation,
                        runner=runner, **common)
    predict = {name: (lambda x=x: fit.predict(x))
               for name, x in xs.items() if name != 'train'}
    variance = {'test': lambda: fit.predict_variance(xs['test'])} if (
        args.variances and 'test' in xs) else {}
  else:
    if args.variances and not (args.test_kernel and args.test_test_kernel):
      raise CliError('--variances with stores needs --test-kernel and '
                     '--test-test-kernel')
    test_diag = args.test_test_kernel
    if test_diag is not None and test_diag.endswith('.npy'):
      test_diag = cli_kernel_args.load_array(test_diag, None,
                                             '--test-test-kernel')
    diag = None if args.train_diag is None else cli_kernel_args.load_array(
        args.train_diag, None, '--train-diag')
    validation = None
    if args.val_kernel:
      if not args.y_val:
        raise CliError('--val-kernel needs --y-val (for early stopping)')
      validation = (args.val_kernel, cli_kernel_args.load_array(
          args.y_val, None, '--y-val'))
    fit = nystrom_sweep(y, regs, args.reg_absolute,
                        k_train_centres=args.train_kernel,
                        k_centres_centres=args.centre_kernel,
                        k_train_diag=diag, validation=validation, **common)
    predict = {name: (lambda k=k: fit.predict(k_test_centres=k))
               for name, k in (('val', args.val_kernel),
                               ('test', args.test_kernel)) if k}
    variance = {'test': lambda: fit.predict_variance(
        k_test_centres=args.test_kernel, k_test_diag=test_diag)} if (
            args.variances) else {}
  say(f'CG iterations per value: {fit.solve.iterations.tolist()}')
  return {'diag_reg': fit.diag_reg, 'reg': fit.reg,
          'mean': {name: f() for name, f in predict.items()},
          'variance': {name: f() for name, f in variance.items()},
          'lml': fit.log_marginal_likelihood, 'elbo': fit.elbo,
          'alpha': fit.alpha, 'iterations': fit.solve.iterations,
          'centres': fit.centres}


def _as_labels(targets):
  return targets.classes[np.argmax(targets.values, axis=1)]


def _write(args, targets, labels, result, say):
  from nt_gp.solve import report  # pylint: disable=g-import-not-at-top
  scores = {}
  for name in ('val', 'test'):
    if name in labels and name in result['mean']:
      scores[name] = [targets.score(m, labels[name])
                      for m in result['mean'][name]]
  rows = report.sweep_rows(result['diag_reg'], result['reg'], scores,
                           targets.metric, lml=result['lml'],
                           iterations=result.get('iterations'),
                           elbo=result.get('elbo'))
  arrays = {'diag_reg': result['diag_reg'], 'reg': result['reg'],
            'alpha': result['alpha']}
  for name, m in result['mean'].items():
    arrays[f'{name}_mean'] = m
  for name, v in result['variance'].items():
    arrays[f'{name}_variance'] = v
  if result['lml'] is not None:
    arrays['log_marginal_likelihood'] = result['lml']
  if result.get('elbo') is not None:
    arrays['elbo'] = result['elbo']
  if result.get('centres') is not None:
    arrays['centres'] = result['centres']
  if targets.classes is not None:
    arrays['classes'] = targets.classes
  out = args.out
  with open(os.path.join(out, 'predictions.npz'), 'xb') as f:
    np.savez(f, **arrays)
  report.write_csv(os.path.join(out, 'sweep.csv'), rows)
  with open(os.path.join(out, 'sweep.md'), 'x') as f:
    f.write(report.markdown_table(rows) + '\n')
  plotted = report.can_plot()
  if plotted:
    report.plot_sweep(os.path.join(out, 'sweep.png'), rows, targets.metric,
                      f'nt-gp solve --method {args.method} --get {args.get}')
  best = report.best_index(rows, targets.metric)
  print(report.text_table(rows, best))
  written = [f for f in _OUTPUTS if plotted or f != 'sweep.png']
  print(f'wrote {out}: {", ".join(written)}')
  if not plotted:
    print('sweep.png not written: matplotlib is not installed (pip install '
          '"nt_gp[plots]")')
