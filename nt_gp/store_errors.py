"""The errors of the kernel store (`nt_gp.store`), each saying what to do.

Every way a store cannot be used as asked raises a subclass of `StoreError`;
`nt-gp kernel` prints its message as its one error line.
"""
__all__ = ['StoreError', 'StoreCorruptError', 'StoreMismatchError',
           'StoreExistsError', 'StoreReadOnlyError', 'StoreLockedError',
           'StoreWriteError']


class StoreError(Exception):
  """A kernel store cannot be used as asked.

  Example:
    >>> issubclass(StoreCorruptError, StoreError)
    True
  """


class StoreCorruptError(StoreError):
  """The file is not a readable, consistent kernel store.

  Example:
    >>> str(StoreCorruptError('k.h5 is corrupted'))
    'k.h5 is corrupted'
  """


class StoreMismatchError(StoreError):
  """The store was made for other inputs, architecture or settings.

  Example:
    >>> issubclass(StoreMismatchError, StoreError)
    True
  """


class StoreExistsError(StoreError, FileExistsError):
  """A file already exists where a new store was to be created.

  Example:
    >>> issubclass(StoreExistsError, FileExistsError)
    True
  """


class StoreReadOnlyError(StoreError, PermissionError):
  """The store (or its folder) cannot be written, so it cannot be resumed.

  Example:
    >>> issubclass(StoreReadOnlyError, PermissionError)
    True
  """


class StoreLockedError(StoreError):
  """Another process is writing the store (see `nt_gp.store_lock`).

  Example:
    >>> issubclass(StoreLockedError, StoreError)
    True
  """


class StoreWriteError(StoreError, OSError):
  """Writing to the store failed (e.g. the disk is full); the blocks recorded
  before the failure are kept, so the job can be resumed.

  Example:
    >>> import errno
    >>> e = StoreWriteError(errno.ENOSPC, 'k.h5: the disk is full')
    >>> e.errno == errno.ENOSPC, str(e)
    (True, 'k.h5: the disk is full')
  """

  def __init__(self, errno_: int, message: str):
    super().__init__(errno_, message)
    self.message = message

  def __str__(self):
    return self.message
