"""Local devices, and running kernel blocks on them in parallel.

Blocks are spread over the logical devices of this process
(`tf.config.list_logical_devices`): the accelerators (GPUs/TPUs) if there are
any, else the CPU devices (one by default; more with
`tf.config.set_logical_device_configuration`, which must run before
TensorFlow initialises). Each device gets one Python thread that runs its
blocks under `tf.device`; TensorFlow releases the GIL while it computes, so
the devices work concurrently.
"""
import collections
import concurrent.futures
import queue
from typing import Callable, Iterable, Iterator, List, Optional, Tuple

import tensorflow as tf

__all__ = ['local_devices', 'DeviceRunner']


def local_devices(device_count: int = -1) -> List[Optional[str]]:
  """Names of the logical devices to use.

  Args:
    device_count: `-1` for all accelerators (or all CPU devices if there is
      no accelerator), `0` for the default device only (returned as
      ``[None]``), or a positive number of devices.

  Returns:
    A list of device names such as ``'/job:localhost/replica:0/task:0/device:
    CPU:0'`` (or ``[None]``).

  Example:
    >>> len(local_devices(1))
    1
    >>> local_devices(0)
    [None]
  """
  if not isinstance(device_count, int) or device_count < -1:
    raise ValueError(f'`device_count` must be -1 (all), 0 (default device) or '
                     f'a positive int, got {device_count!r}.')
  if device_count == 0:
    return [None]
  devices = []
  for kind in ('TPU', 'GPU', 'CPU'):
    devices = tf.config.list_logical_devices(kind)
    if devices:
      break
  names = [d.name for d in devices] or [None]
  if device_count == -1:
    return names
  if device_count > len(names):
    kind = devices[0].device_type if devices else 'CPU'
    raise ValueError(f'`device_count={device_count}` but only {len(names)} '
                     f'{kind} device(s) are available: {names}.')
  return names[:device_count]


class DeviceRunner:
  """Runs `fn(item, device)` for many items over local devices.

  Args:
    devices: device names (from `local_devices`); one thread per device.
    window: most items in flight or finished but not yet consumed (bounds
      memory); default ``2 * len(devices)``.

  Example:
    >>> runner = DeviceRunner(local_devices(1))
    >>> sorted(r for _, r in runner.imap(lambda x, d: x * x, [1, 2, 3]))
    [1, 4, 9]
  """

  def __init__(self, devices: List[Optional[str]], window: Optional[int] = None):
    if not devices:
      raise ValueError('`devices` must not be empty.')
    self.devices = list(devices)
    self.window = window or 2 * len(self.devices)

  def _run_on(self, fn, item, device):
    if device is None:
      return fn(item, None)
    with tf.device(device):
      return fn(item, device)

  def imap(self, fn: Callable, items: Iterable) -> Iterator[Tuple[object, object]]:
    """Yields ``(item, fn(item, device))`` as items finish."""
    if len(self.devices) == 1:
      for item in items:
        yield item, self._run_on(fn, item, self.devices[0])
      return
    free = queue.Queue()
    for d in self.devices:
      free.put(d)

    def call(item):
      device = free.get()
      try:
        return self._run_on(fn, item, device)
      finally:
        free.put(device)

    items = iter(items)
    pending = collections.OrderedDict()
    with concurrent.futures.ThreadPoolExecutor(len(self.devices)) as pool:
      try:
        for item in items:
          pending[pool.submit(call, item)] = item
          if len(pending) >= self.window:
            break
        while pending:
          done, _ = concurrent.futures.wait(
              pending, return_when=concurrent.futures.FIRST_COMPLETED)
          for fut in [f for f in pending if f in done]:
            item = pending.pop(fut)
            result = fut.result()
            nxt = next(items, _END)
            if nxt is not _END:
              pending[pool.submit(call, nxt)] = nxt
            yield item, result
      finally:
        for fut in pending:
          fut.cancel()


_END = object()
