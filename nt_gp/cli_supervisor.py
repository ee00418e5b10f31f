"""Runs the computation of `nt-gp kernel` in a child process and reports how
it ended in one line.

Some failures cannot be caught inside the process that has them: a C++
``std::bad_alloc`` in TensorFlow aborts the process, the system's
out-of-memory killer sends SIGKILL, a library can crash. So `nt-gp kernel`
(after the checks of `nt_gp.cli_kernel`, which need no TensorFlow) starts
``python -m nt_gp.cli kernel ... --in-process`` (`nt_gp.cli_kernel_job`) and
stays as its supervisor:

* the child's standard output and its messages (progress bar, block log,
  its own ``error:`` line) are passed through; what TensorFlow, XLA and gRPC
  write to the child's standard error is kept back (``--verbose`` passes it
  through too), and its last lines tell what killed a child that died;
* a child that died from a signal is reported as one ``nt-gp kernel:
  error:`` line: out of memory (lower ``--batch-size``), or which signal; in
  every case how many blocks are saved and that ``--resume`` continues;
* Ctrl-C or SIGTERM/SIGHUP sent to `nt-gp kernel` are passed to the child,
  which stops after its current block and says how to resume; a second
  Ctrl-C kills it at once;
* the child's leftovers (its lock file, temporary files, local cluster log
  folders) are removed when it is gone, and it dies with its supervisor.

Example (starts a child process with TensorFlow, so not run here):
  >>> run_child(args)  # doctest: +SKIP
  0
"""
import codecs
import collections
import glob
import os
import selectors
import signal
import shutil
import subprocess
import sys
import tempfile

from nt_gp.cli_kernel_job import (EXIT_INTERRUPTED, EXIT_TERMINATED,
                                  MESSAGE_FD_ENV, PARENT_PID_ENV)

__all__ = ['run_child', 'crash_message']

# Last words of a process that ran out of memory (or of address space, under
# `ulimit -v`: then even starting a thread fails, and oneDNN, failing to
# allocate its working memory, aborts with "could not create a primitive",
# sometimes before TensorFlow has reported the allocation that failed).
_MEMORY_WORDS = ('bad_alloc', 'out of memory', 'cannot allocate memory',
                 'resourceexhausted', 'oom when allocating', 'memoryerror',
                 'pthread_create() failed', 'could not create a primitive')


def crash_message(returncode: int, log_tail: str, batch_size: int,
                  saved: str) -> str:
  """The one-line explanation of a child that died with `returncode`.

  Example:
    >>> crash_message(-6, "terminate called ... 'std::bad_alloc'", 64,
    ...               '3 of 16 blocks are saved in k.h5')  # doctest: +ELLIPSIS
    'out of memory computing blocks of 64 x 64 inputs (SIGABRT): lower --batch-size (e.g. --batch-size 32) ...'
  """
  if returncode < 0:
    try:
      how = signal.Signals(-returncode).name
    except ValueError:
      how = f'signal {-returncode}'
  else:
    how = f'exit code {returncode}'
  tail = log_tail.lower()
  again = ('rerun the command' if saved.startswith('no block') else
           'rerun with --resume')
  resume = f'{saved}: {again}'
  if any(w in tail for w in _MEMORY_WORDS) or returncode == -signal.SIGKILL:
    cause = ('' if returncode != -signal.SIGKILL or any(
        w in tail for w in _MEMORY_WORDS) else
             ', most often the system\'s out-of-memory killer')
    smaller = (f'lower --batch-size (e.g. --batch-size '
               f'{max(1, batch_size // 2)})' if batch_size > 1 else
               'use a machine with more memory')
    return (f'out of memory computing blocks of {batch_size} x {batch_size} '
            f'inputs ({how}{cause}): {smaller} and {again} ({saved})')
  return (f'the computation crashed ({how}); {resume} (add --verbose to see '
          f'TensorFlow\'s messages)')


def _cleanup_after(pid: int, out: str):
  """Removes what a dead child `pid` may have left: its lock on `out`,
  unfinished store creations, local cluster log folders."""
  from nt_gp.store_lock import WriterLock  # pylint: disable=g-import-not-at-top
  lock = WriterLock(out)
  holder = lock.holder()
  if holder and holder.get('pid') == pid:
    try:
      os.unlink(lock.lock_path)
    except OSError:
      pass
  for tmp in glob.glob(glob.escape(out) + '.tmp-*'):
    if tmp.endswith(f'-{pid}'):
      try:
        os.unlink(tmp)
      except OSError:
        pass
  for folder in glob.glob(os.path.join(tempfile.gettempdir(),
                                       f'nt_gp_cluster_{pid}_*')):
    shutil.rmtree(folder, ignore_errors=True)


class _Pump:
  """Copies the child's streams: stdout and messages through, its standard
  error kept (and passed through if `verbose`)."""

  def __init__(self, proc, message_fd, verbose):
    self.sel = selectors.DefaultSelector()
    self.tail = collections.deque(maxlen=200)
    self.verbose = verbose
    for fd, sink in ((proc.stdout.fileno(), 'out'), (message_fd, 'msg'),
                     (proc.stderr.fileno(), 'log')):
      os.set_blocking(fd, False)
      self.sel.register(fd, selectors.EVENT_READ,
                        (sink, codecs.getincrementaldecoder('utf-8')('replace')))
    self.partial = ''

  def _emit(self, sink, text):
    if sink == 'out':
      sys.stdout.write(text)
      sys.stdout.flush()
    elif sink == 'msg':
      sys.stderr.write(text)
      sys.stderr.flush()
    else:
      lines = (self.partial + text).split('\n')
      self.partial = lines.pop()[-4000:]
      self.tail.extend(lines)
      if self.verbose:
        sys.stderr.write(text)
        sys.stderr.flush()

  def run(self):
    while self.sel.get_map():
      for key, _ in self.sel.select(timeout=1.0):
        sink, decoder = key.data
        try:
          data = os.read(key.fd, 1 << 16)
        except BlockingIOError:
          continue
        except InterruptedError:
          continue
        if not data:
          self._emit(sink, decoder.decode(b'', final=True))
          self.sel.unregister(key.fd)
          continue
        self._emit(sink, decoder.decode(data))

  def log_tail(self) -> str:
    return '\n'.join(list(self.tail) + [self.partial])


def run_child(args) -> int:
  """Runs `args` (parsed `nt-gp kernel` arguments) in a child process; returns
  its exit code (see the module docstring)."""
  read_fd, write_fd = os.pipe()
  argv = list(getattr(args, 'argv', None) or sys.argv[1:])
  env = dict(os.environ, **{MESSAGE_FD_ENV: str(write_fd),
                            PARENT_PID_ENV: str(os.getpid())})
  if not args.verbose:
    env.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
    env.setdefault('GRPC_VERBOSITY', 'NONE')
  proc = subprocess.Popen(
      [sys.executable, '-m', 'nt_gp.cli', *argv, '--in-process'],
      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      pass_fds=(write_fd,), env=env, start_new_session=True)
  os.close(write_fd)
  received = []

  def forward(signum, frame):
    del frame
    received.append(signum)
    if proc.poll() is not None:
      return
    if signum == signal.SIGINT and received.count(signal.SIGINT) > 1:
      proc.kill()                       # a second Ctrl-C: stop at once
    else:
      proc.send_signal(signal.SIGINT if signum == signal.SIGINT
                       else signal.SIGTERM)
  signals = [signal.SIGINT, signal.SIGTERM]
  if hasattr(signal, 'SIGHUP'):
    signals.append(signal.SIGHUP)
  previous = {}
  try:
    for s in signals:
      previous[s] = signal.signal(s, forward)
  except ValueError:          # not the main thread: no forwarding
    previous = {}
  pump = _Pump(proc, read_fd, args.verbose)
  try:
    pump.run()
    returncode = proc.wait()
  finally:
    for s, h in previous.items():
      signal.signal(s, h)
    os.close(read_fd)
    proc.stdout.close()
    proc.stderr.close()
    if proc.poll() is None:
      proc.kill()
      proc.wait()
    _cleanup_after(proc.pid, args.out)
  if returncode in (0, 1, 2, EXIT_INTERRUPTED, EXIT_TERMINATED):
    return returncode
  from nt_gp.cli_output import blocks_saved  # pylint: disable=g-import-not-at-top
  if returncode == -signal.SIGKILL and signal.SIGINT in received:
    message = (f'stopped at once (second Ctrl-C); {blocks_saved(args.out)}: '
               f'run the same command with --resume to continue')
    returncode = EXIT_INTERRUPTED
  else:
    message = crash_message(returncode, pump.log_tail(), args.batch_size,
                            blocks_saved(args.out))
    returncode = 1
  print(f'nt-gp kernel: error: {message}', file=sys.stderr, flush=True)
  return returncode
