"""One writer per kernel store: an exclusive lock file beside it.

A process that writes ``k.h5`` first creates ``k.h5.lock`` with
``O_CREAT | O_EXCL`` (atomic, also on NFS v3+) and writes into it who it is:
PID, host name, the process's start time (Linux) and the command. A second
writer finds the file and is refused with a message naming the first. HDF5's
own file locking is not relied on (it is often disabled, e.g. with
``HDF5_USE_FILE_LOCKING=FALSE`` on shared file systems).

A lock left behind by a writer that was killed (SIGKILL, power loss) is
*stale*: its process no longer exists on this host (or the PID now belongs
to a process that started later). A stale lock is taken over; one held from
another host cannot be checked, so the message says how to remove it by hand.

Example:
  >>> import os, tempfile
  >>> path = os.path.join(tempfile.mkdtemp(), 'k.h5')
  >>> with WriterLock(path) as lock:
  ...   os.path.exists(path + '.lock'), lock.holder()['pid'] == os.getpid()
  (True, True)
  >>> os.path.exists(path + '.lock')
  False
"""
import json
import os
import socket
import sys
import time
from typing import Optional

from nt_gp.store_errors import StoreLockedError, StoreReadOnlyError

__all__ = ['WriterLock', 'process_alive']

_EMPTY_LOCK_GRACE_S = 10.   # a lock file being written is empty this long


def _start_time(pid: int) -> Optional[str]:
  """The start time of process `pid` in clock ticks since boot (Linux), or
  None where /proc is not available."""
  try:
    with open(f'/proc/{pid}/stat', 'rb') as f:
      stat = f.read().decode('ascii', 'replace')
  except OSError:
    return None
  # Fields after the command name, which is in parentheses and may hold
  # spaces: state is field 3, starttime field 22.
  fields = stat[stat.rfind(')') + 2:].split()
  return fields[19] if len(fields) > 19 else None


def process_alive(pid: int, start_time: Optional[str] = None) -> bool:
  """Whether process `pid` of this host runs (and, if `start_time` is given
  and known, is the same process, not a later one with a reused PID).

  Example:
    >>> process_alive(os.getpid())
    True
  """
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass                                   # exists, owned by another user
  try:
    with open(f'/proc/{pid}/stat', 'rb') as f:
      stat = f.read().decode('ascii', 'replace')
    if stat[stat.rfind(')') + 2:].split()[0] in ('Z', 'X'):
      return False                         # killed, not yet reaped
  except OSError:
    pass
  if start_time is not None:
    now = _start_time(pid)
    if now is not None and now != start_time:
      return False
  return True


class WriterLock:
  """The exclusive lock file ``<path>.lock`` of the store at `path`.

  Use as a context manager, or `acquire`/`release`.

  Raises (from `acquire`):
    StoreLockedError: another live process holds the lock (its PID, host and
      command are in the message).
    StoreReadOnlyError: the folder cannot be written.
  """

  def __init__(self, path):
    self.path = os.fspath(path)
    self.lock_path = self.path + '.lock'
    self.held = False
    self._me = None

  def holder(self) -> Optional[dict]:
    """The lock file's contents (None if absent; ``{}`` if unreadable)."""
    try:
      with open(self.lock_path, 'r', encoding='utf-8') as f:
        text = f.read()
    except FileNotFoundError:
      return None
    except OSError:
      return {}
    try:
      info = json.loads(text)
    except ValueError:
      return {}
    return info if isinstance(info, dict) else {}

  def _is_stale(self, info: dict) -> bool:
    if not info:   # empty or garbled: a writer killed while creating it
      try:
        age = time.time() - os.stat(self.lock_path).st_mtime
      except FileNotFoundError:
        return True
      return age > _EMPTY_LOCK_GRACE_S
    if info.get('host') != socket.gethostname():
      return False
    pid = info.get('pid')
    if not isinstance(pid, int):
      return True
    return not process_alive(pid, info.get('start_time'))

  def _describe(self, info: dict) -> str:
    if not info:
      return f'{self.lock_path} exists but is being written or is damaged'
    since = info.get('since')
    when = (time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))
            if isinstance(since, (int, float)) else 'an unknown time')
    return (f'process {info.get("pid")} on host {info.get("host")} has been '
            f'writing it since {when} ({info.get("command", "?")})')

  def acquire(self) -> 'WriterLock':
    """Takes the lock (taking over a stale one); see the class docstring."""
    if self.held:
      return self
    me = {'pid': os.getpid(), 'host': socket.gethostname(),
          'start_time': _start_time(os.getpid()), 'since': time.time(),
          'command': ' '.join(os.path.basename(a) if i == 0 else a
                              for i, a in enumerate(sys.argv))[:300]}
    for _ in range(5):
      try:
        fd = os.open(self.lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                     0o644)
      except FileExistsError:
        info = self.holder()
        if info is None:
          continue                           # released meanwhile: retry
        if self._is_stale(info):
          self._break(info)
          continue
        raise StoreLockedError(
            f'{self.path} is being written by another job: '
            f'{self._describe(info)}. Wait for it to finish; if it is no '
            f'longer running (e.g. it ran on another host and was killed), '
            f'delete {self.lock_path} and resume.') from None
      except (PermissionError, OSError) as e:
        if isinstance(e, PermissionError) or e.errno == 30:   # EROFS
          raise StoreReadOnlyError(
              f'cannot create the lock file {self.lock_path} '
              f'({e.strerror}): the folder of {self.path} is not writable; '
              f'make it writable or choose another output file.') from None
        raise
      with os.fdopen(fd, 'w', encoding='utf-8') as f:
        json.dump(me, f)
        f.flush()
        os.fsync(f.fileno())
      self._me = me
      self.held = True
      return self
    raise StoreLockedError(f'could not take the lock {self.lock_path}: other '
                           f'processes keep taking it; retry later.')

  def _break(self, stale: dict):
    """Removes a stale lock file, unless it changed since it was read."""
    aside = f'{self.lock_path}.stale-{os.getpid()}'
    try:
      os.rename(self.lock_path, aside)
    except FileNotFoundError:
      return
    try:
      with open(aside, 'r', encoding='utf-8') as f:
        text = f.read()
      moved = json.loads(text) if text else {}
    except (OSError, ValueError):
      moved = {}
    if moved != stale:
      # Another process replaced the stale lock by its own in between: put
      # it back (unless yet another lock appeared) and let the caller retry.
      try:
        os.link(aside, self.lock_path)
      except OSError:
        pass
    os.unlink(aside)

  def release(self):
    """Removes the lock file if this object holds it."""
    if not self.held:
      return
    self.held = False
    if self.holder() == self._me:
      try:
        os.unlink(self.lock_path)
      except FileNotFoundError:
        pass

  def __enter__(self):
    return self.acquire()

  def __exit__(self, *exc):
    self.release()

  def __repr__(self):
    return f'WriterLock({self.path!r}, held={self.held})'
