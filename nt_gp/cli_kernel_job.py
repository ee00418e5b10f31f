"""The computing process of `nt-gp kernel`.

`nt_gp.cli_supervisor` starts ``python -m nt_gp.cli kernel ... --in-process``
after the checks of `nt_gp.cli_kernel`. This process loads the inputs and
the architecture, computes the kernel into the store
(`nt_gp.distributed.compute_kernel`) and turns every failure it can catch
into one ``nt-gp kernel: error: ...`` line:

* a store that cannot be used, a kernel that overflowed, a kernel function
  that refuses the inputs: what happened and what to do;
* TensorFlow running out of memory: lower ``--batch-size``, then
  ``--resume``;
* Ctrl-C (SIGINT, exit code 130) or SIGTERM (143): how many blocks are saved
  and that ``--resume`` continues.

Its Python-level output (progress bar, messages) goes to the descriptor named
by ``NT_GP_MESSAGE_FD``; what TensorFlow, XLA and gRPC write to the standard
error stream stays with the supervisor (shown with ``--verbose``). It exits
when its supervisor does.

Example (a child process of `nt-gp kernel`, so not run here):
  >>> run(args)  # doctest: +SKIP
"""
import ctypes
import os
import signal
import sys
import threading
import time
import traceback

import numpy as np

from nt_gp import cli_cluster
from nt_gp.cli_kernel_args import (CliError, check_arguments, check_inputs,
                                   computation_dtype, load_arch, load_array,
                                   message_printer)

__all__ = ['run', 'MESSAGE_FD_ENV', 'PARENT_PID_ENV']

MESSAGE_FD_ENV = 'NT_GP_MESSAGE_FD'
PARENT_PID_ENV = 'NT_GP_PARENT_PID'
EXIT_INTERRUPTED = 130   # as shells report a SIGINT
EXIT_TERMINATED = 143    # ... and a SIGTERM


class Terminated(KeyboardInterrupt):
  """Raised in the main thread when the process receives SIGTERM."""


def _die_with_parent():
  """Exits when the supervising process ends (Linux: at once, by
  `PR_SET_PDEATHSIG`; elsewhere within a second)."""
  parent = int(os.environ.pop(PARENT_PID_ENV, '0') or 0)
  if not parent:
    return
  try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PDEATHSIG
  except (OSError, AttributeError):
    pass
  if os.getppid() != parent:
    os._exit(1)  # pylint: disable=protected-access

  def watch():
    while True:
      time.sleep(1.)
      if os.getppid() != parent:
        os._exit(1)  # pylint: disable=protected-access
  threading.Thread(target=watch, daemon=True).start()


def _redirect_messages():
  fd = int(os.environ.pop(MESSAGE_FD_ENV, '-1') or -1)
  if fd >= 0:
    sys.stderr = os.fdopen(fd, 'w', buffering=1, encoding='utf-8',
                           errors='replace')


def _quiet(verbose):
  """TensorFlow's C++ log level, set before TensorFlow is imported."""
  if not verbose:
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    os.environ.setdefault('GRPC_VERBOSITY', 'NONE')


def _install_signal_handlers():
  """SIGINT and SIGTERM interrupt the main thread once; later ones are
  ignored, so the clean-up is not cut short."""
  def handler(signum, frame):
    del frame
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()
  signal.signal(signal.SIGINT, handler)
  signal.signal(signal.SIGTERM, handler)


def run(args) -> int:
  """Runs the computation of `nt-gp kernel`; returns the exit code."""
  _die_with_parent()
  _redirect_messages()
  _quiet(args.verbose)
  _install_signal_handlers()
  try:
    return _run(args)
  except CliError as e:
    if args.verbose and e.__cause__ is not None:
      traceback.print_exception(e.__cause__, file=sys.stderr)
    print(f'nt-gp kernel: error: {e}', file=sys.stderr, flush=True)
    return 1
  except KeyboardInterrupt as e:
    from nt_gp.cli_output import blocks_saved  # pylint: disable=g-import-not-at-top
    what = ('terminated (SIGTERM)' if isinstance(e, Terminated) else
            'interrupted')
    print(f'nt-gp kernel: error: {what}; {blocks_saved(args.out)}: run the '
          f'same command with --resume to continue', file=sys.stderr,
          flush=True)
    return EXIT_TERMINATED if isinstance(e, Terminated) else EXIT_INTERRUPTED


def _configure_threads(threads):
  if threads:
    os.environ['TF_NUM_INTRAOP_THREADS'] = str(threads)
    os.environ['TF_NUM_INTEROP_THREADS'] = str(threads)
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def _exit_text(code):
  if code is not None and code < 0:
    try:
      return f'killed by {signal.Signals(-code).name}'
    except ValueError:
      return f'killed by signal {-code}'
  return f'exit code {code}'


class _WorkerWatch:
  """Reports local workers that die; interrupts the main thread when every
  one has died."""

  def __init__(self, cluster, say):
    self.cluster = cluster
    self.say = say
    self.all_dead = False
    self._stop = threading.Event()
    threading.Thread(target=self._watch, daemon=True).start()

  def _watch(self):
    reported = set()
    while not self._stop.wait(1.0):
      for i, proc in enumerate(self.cluster.workers):
        if i not in reported and proc.poll() is not None:
          reported.add(i)
          rest = self.cluster.alive_workers()
          self.say(f'worker {i} (pid {proc.pid}) stopped '
                   f'({_exit_text(proc.returncode)}); '
                   + (f'its blocks go to the {rest} other worker(s)' if rest
                      else 'no worker is left'))
      if self.cluster.alive_workers() == 0:
        self.all_dead = True
        os.kill(os.getpid(), signal.SIGINT)
        return

  def stop(self):
    self._stop.set()


def _make_runner(args, say):
  """`(runner, local_cluster or None, worker_watch or None)`."""
  from nt_gp.distributed import compute as compute_lib  # pylint: disable=g-import-not-at-top
  if args.workers is not None:
    runner, cluster = cli_cluster.start_local_cluster(
        args.workers, say, threads=args.threads_per_worker,
        pin_cores=args.pin_cores)
    return runner, cluster, _WorkerWatch(cluster, say)
  if args.cluster_spec:
    return cli_cluster.runner_from_spec(args.cluster_spec), None, None
  try:
    return compute_lib.LocalRunner(args.devices), None, None
  except ValueError as e:
    raise CliError(f'--devices: {e}') from None


def _first_line(e) -> str:
  text = getattr(e, 'message', None) or str(e) or type(e).__name__
  return text.strip().splitlines()[0] if text.strip() else type(e).__name__


def _run(args) -> int:
  from nt_gp.cli_output import blocks_saved  # pylint: disable=g-import-not-at-top
  names, arch_args = check_arguments(args)
  x1 = load_array(args.x1, args.x1_key, '--x1')
  x2 = None if args.x2 is None else load_array(args.x2, args.x2_key, '--x2')
  dtype = computation_dtype(args, x1)
  check_inputs(args.arch, x1, x2, np.dtype(dtype))
  _configure_threads(args.threads)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not args.verbose:
    tf.get_logger().setLevel('CRITICAL')
  from nt_gp.distributed import compute as compute_lib  # pylint: disable=g-import-not-at-top
  from nt_gp.nonfinite import NonFiniteKernelError  # pylint: disable=g-import-not-at-top
  from nt_gp.store import KernelStore, StoreError  # pylint: disable=g-import-not-at-top
  kernel_fn, arch_id = load_arch(args.arch, arch_args)
  say = message_printer(args)
  runner, cluster, watch = _make_runner(args, say)
  before = 0
  if os.path.exists(args.out):
    try:
      with KernelStore.open(args.out, verify=False) as s:
        before = s.n_done
    except (StoreError, OSError):
      pass
  start = time.time()
  b = args.batch_size
  try:
    compute_lib.compute_kernel(
        kernel_fn, x1, x2, out=args.out, arch=arch_id, get=names,
        batch_size=b, dtype=dtype, resume=args.resume, runner=runner,
        progress=not args.no_progress,
        log=say if args.log_blocks else None, fsync=not args.no_fsync,
        verify=not args.no_verify)
  except StoreError as e:
    raise CliError(str(e)) from e
  except NonFiniteKernelError as e:
    raise CliError(f'{str(e).rstrip(".")}; {blocks_saved(args.out)}') from e
  except (tf.errors.ResourceExhaustedError, MemoryError) as e:
    smaller = (f'lower --batch-size (e.g. --batch-size {max(1, b // 2)}) and '
               f'rerun with --resume' if b > 1 else
               'one pair of inputs does not fit: use a machine with more '
               'memory')
    raise CliError(f'out of memory computing blocks of {b} x {b} inputs: '
                   f'{smaller} ({blocks_saved(args.out)})') from e
  except KeyboardInterrupt:
    if watch is not None and watch.all_dead:
      raise CliError(f'all {args.workers} workers died; '
                     f'{blocks_saved(args.out)}: rerun with --resume'
                     ) from None
    raise
  except (ValueError, TypeError, NotImplementedError) as e:
    raise CliError(f'--arch {args.arch} cannot compute this kernel: '
                   f'{_first_line(e)}') from e
  except tf.errors.OpError as e:
    raise CliError(f'TensorFlow failed ({type(e).__name__}: '
                   f'{_first_line(e)}); {blocks_saved(args.out)}: rerun with '
                   f'--resume (add --verbose for details)') from e
  finally:
    if watch is not None:
      watch.stop()
    runner.close()
    if cluster is not None:
      cluster.remove_logs()   # the servers exit when this process does
  seconds = time.time() - start
  with KernelStore.open(args.out, verify=False) as s:
    n_blocks = s.grid.n_blocks
    shapes = ', '.join(f'{n} {s.dataset(n).shape} {s.dataset(n).dtype}'
                       for n in s.names)
    written = n_blocks - before
    entries = s.grid.n1 * s.grid.n2 * written / n_blocks
  print(f'wrote {args.out}: {shapes}; {written} of {n_blocks} blocks written '
        f'by this run in {seconds:.1f} s ({entries / max(seconds, 1e-9):.3g} '
        f'kernel entries/s)', flush=True)
  return 0
