"""The output of `nt-gp kernel`, checked before anything is computed.

`check_output` runs in the `nt-gp kernel` process before TensorFlow starts
(`nt_gp.cli_kernel`): the folder must be writable and have room for the
kernel; an existing ``--out`` (with ``--resume``) must be an intact kernel
store made for this job, writable, and not being written by another process.
The computing process checks the same again (and the architecture's probe
kernel) when it opens the store: these checks only make the refusal come
first, in one line.

Example:
  >>> import argparse, os, tempfile
  >>> import numpy as np
  >>> out = os.path.join(tempfile.mkdtemp(), 'k.h5')
  >>> args = argparse.Namespace(out=out, resume=False, arch='fcn',
  ...                           batch_size=4)
  >>> check_output(args, ('nngp',), {}, np.ones((8, 2)), None, 'float64')
  >>> os.listdir(os.path.dirname(out))
  []
"""
import errno
import os
import shutil
import socket
import tempfile

import numpy as np

from nt_gp.cli_kernel_args import CliError
from nt_gp.store_errors import StoreError
from nt_gp.store_fingerprint import compare_fingerprints, fingerprint
from nt_gp.store_lock import WriterLock, process_alive

__all__ = ['check_output', 'blocks_saved']


def _check_folder_writable(out):
  folder = os.path.dirname(os.path.abspath(out))
  try:
    fd, probe = tempfile.mkstemp(prefix=os.path.basename(out) + '.check-',
                                 dir=folder)
  except OSError as e:
    raise CliError(f'--out: cannot write in {folder} ({e.strerror}); choose '
                   f'another --out or make the folder writable') from None
  os.close(fd)
  os.unlink(probe)


def _check_free_space(out, n1, n2, names, dtype):
  folder = os.path.dirname(os.path.abspath(out))
  need = n1 * n2 * len(names) * np.dtype(dtype).itemsize
  free = shutil.disk_usage(folder).free
  if need > free:
    raise CliError(f'--out: the kernel needs at least {need / 1e9:.3g} GB '
                   f'but {folder} has {free / 1e9:.3g} GB free; free space or '
                   f'choose another --out')


def _check_lock(out):
  lock = WriterLock(out)
  holder = lock.holder()
  if holder and holder.get('host') == socket.gethostname() and isinstance(
      holder.get('pid'), int) and process_alive(holder['pid'],
                                                holder.get('start_time')):
    raise CliError(f'{out} is being written by another job (process '
                   f'{holder["pid"]}: {holder.get("command", "?")}); wait for '
                   f'it to finish')


def check_output(args, names, arch_args, x1, x2, dtype):
  """Raises `CliError` (one line, saying what to do) if the job cannot write
  its output; see the module docstring."""
  from nt_gp import presets  # pylint: disable=g-import-not-at-top
  from nt_gp.blocks import BlockGrid  # pylint: disable=g-import-not-at-top
  from nt_gp.store import KernelStore  # pylint: disable=g-import-not-at-top
  _check_folder_writable(args.out)
  n1 = x1.shape[0]
  n2 = n1 if x2 is None else x2.shape[0]
  if not os.path.lexists(args.out):
    _check_free_space(args.out, n1, n2, names, dtype)
    return
  _check_lock(args.out)
  if os.path.isfile(args.out) and not os.access(args.out, os.W_OK):
    raise CliError(f'{args.out} is read-only, so it cannot be resumed; make '
                   f'it writable (chmod u+w {args.out}) or copy it elsewhere')
  try:
    fd = os.open(args.out, os.O_RDWR)
    os.close(fd)
  except OSError as e:
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
      raise CliError(f'{args.out} cannot be opened for writing '
                     f'({e.strerror}), so it cannot be resumed; make it '
                     f'writable or copy it elsewhere') from None
    if e.errno != errno.EISDIR:
      raise CliError(f'--out: cannot open {args.out} ({e.strerror})') from None
  try:
    with KernelStore.open(args.out, verify=False) as store:
      arch = (presets.identity(args.arch, arch_args)
              if args.arch in presets.PRESETS else store.fingerprint['arch'])
      x1c = np.ascontiguousarray(x1, dtype=dtype)
      x2c = None if x2 is None else np.ascontiguousarray(x2, dtype=dtype)
      wanted = fingerprint(x1c, x2c, arch=arch, get=names, dtype=dtype,
                           batch_size=args.batch_size)
      compare_fingerprints(store.fingerprint, wanted, args.out)
      grid = BlockGrid.of(n1, n2, args.batch_size, symmetric=x2 is None)
      if store.grid != grid:
        raise CliError(f'{args.out} holds blocks of another grid '
                       f'({store.grid}); delete it to start over')
  except StoreError as e:
    raise CliError(str(e)) from None


def blocks_saved(out) -> str:
  """'12 of 64 blocks are saved in k.h5' (or that none are), for messages
  about a job that stopped.

  Example:
    >>> blocks_saved('no-such-file.h5')
    'no block was saved'
  """
  from nt_gp.store import KernelStore  # pylint: disable=g-import-not-at-top
  if not os.path.exists(out):
    return 'no block was saved'
  try:
    with KernelStore.open(out, verify=False) as s:
      return f'{s.n_done} of {s.grid.n_blocks} blocks are saved in {out}'
  except (StoreError, OSError):
    return f'the blocks finished so far are saved in {out}'
