"""`ClusterRunner`: kernel blocks on the workers of a `tf.distribute` cluster.

This process is the coordinator (task ``chief``) of a
`tf.distribute.experimental.ParameterServerStrategy` cluster. Each block is a
`tf.function` closure scheduled with `tf.distribute.coordinator.ClusterCoordinator`
on whichever worker is free; its input blocks travel with the closure and its
outputs come back to the coordinator, which writes them to the store. If a
worker dies, the coordinator puts its closure back into the queue and another
worker runs it (TensorFlow's own fault tolerance); blocks already written are
never redone. The cluster needs one parameter-server task (it holds no
variables here, but the strategy requires it); losing it stops the job, which
can then be resumed from the store.
"""
import collections
import json
import os
import threading
from typing import Optional

import tensorflow as tf

__all__ = ['ClusterRunner', 'cluster_resolver']


def cluster_resolver(cluster_spec=None):
  """A resolver for this process as the ``chief`` of a cluster.

  Args:
    cluster_spec: a dict (or its JSON) ``{'worker': [...], 'ps': [...],
      'chief': [...]}`` of ``host:port`` addresses; None reads `TF_CONFIG`
      (whose ``task`` must be ``chief``, index 0).

  Returns:
    A `tf.distribute.cluster_resolver.ClusterResolver`.

  Example:
    >>> r = cluster_resolver({'chief': ['127.0.0.1:2222'],
    ...                       'worker': ['127.0.0.1:2223'],
    ...                       'ps': ['127.0.0.1:2224']})
    >>> r.task_type, sorted(r.cluster_spec().as_dict())
    ('chief', ['chief', 'ps', 'worker'])
  """
  if cluster_spec is None:
    if 'TF_CONFIG' not in os.environ:
      raise ValueError('No cluster given: pass a cluster spec or set TF_CONFIG.')
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if resolver.task_type != 'chief':
      raise ValueError(f'TF_CONFIG names task {resolver.task_type!r}; the '
                       f'process computing the kernel must be the "chief" '
                       f'(workers and ps run `python -m '
                       f'nt_gp.distributed.servers`).')
    spec = resolver.cluster_spec().as_dict()
  else:
    if isinstance(cluster_spec, str):
      try:
        cluster_spec = json.loads(cluster_spec)
      except ValueError as e:
        raise ValueError(f'The cluster spec is not valid JSON: {e}') from None
    spec = dict(cluster_spec)
  for job in ('chief', 'worker', 'ps'):
    if not spec.get(job):
      raise ValueError(f'The cluster spec needs a "{job}" job, got '
                       f'{sorted(spec)}.')
  if len(spec['chief']) != 1:
    raise ValueError('The cluster spec must have exactly one "chief" address.')
  return tf.distribute.cluster_resolver.SimpleClusterResolver(
      tf.train.ClusterSpec(spec), task_type='chief', task_id=0,
      rpc_layer='grpc')


class ClusterRunner:
  """Runs block closures on a cluster's workers (see module docstring).

  Args:
    cluster_spec: see `cluster_resolver`.
    window: most blocks scheduled but not yet consumed (bounds the memory of
      the coordinator); default 4 per worker.

  Example (not run as a doctest: connecting makes the calling process part of
  the cluster for the rest of its life; `tests/test_distributed.py` runs it in
  a subprocess):
    >>> from nt_gp.distributed import ClusterRunner, LocalCluster
    >>> with LocalCluster(n_workers=2) as cluster:      # doctest: +SKIP
    ...   runner = ClusterRunner(cluster.spec)
    ...   compute_kernel(kernel_fn, x, out='k.h5', arch='mlp', batch_size=64,
    ...                  runner=runner)
  """

  def __init__(self, cluster_spec=None, window: Optional[int] = None):
    resolver = cluster_resolver(cluster_spec)
    self.spec = resolver.cluster_spec().as_dict()
    self.n_workers = len(self.spec['worker'])
    self.window = window or 4 * self.n_workers
    self.max_refetch = 3
    self.strategy = tf.distribute.experimental.ParameterServerStrategy(resolver)
    self.coordinator = tf.distribute.coordinator.ClusterCoordinator(
        self.strategy)

  def imap(self, computer, tasks):
    """Yields ``(task, {name: array})`` in scheduling order."""
    pair_fn, diag_fn = computer.functions()
    pending = collections.deque()

    def schedule(task):
      a, b = computer.inputs(task)
      if b is None:
        return self.coordinator.schedule(diag_fn, args=(a,))
      return self.coordinator.schedule(pair_fn, args=(a, b))

    def result(task, remote):
      for attempt in range(self.max_refetch + 1):
        try:
          values = remote.fetch()
          break
        except (tf.errors.UnavailableError, tf.errors.CancelledError,
                tf.errors.AbortedError):
          # The block was computed on a worker that died before its output was
          # copied here (the coordinator's own retry covers a worker dying
          # while computing, but not this window): compute it again.
          if attempt == self.max_refetch:
            raise
          remote = schedule(task)
      if not isinstance(values, (tuple, list)):
        values = (values,)
      return task, dict(zip(computer.names, values))

    for task in tasks:
      pending.append((task, schedule(task)))
      while len(pending) >= self.window:
        yield result(*pending.popleft())
    while pending:
      yield result(*pending.popleft())

  def close(self):
    """Stops the coordinator's threads (servers are left running).

    After a worker died, TensorFlow's failure handler waits for it to come
    back while holding a lock that the coordinator's clean-up also takes, so
    dropping the coordinator would hang. The job is finished by now, so that
    wait is cut loose (the handler thread is a daemon) before stopping.
    """
    coordinator, self.coordinator = self.coordinator, None
    if coordinator is None:
      return
    cluster = getattr(coordinator, '_cluster', None)
    handler = getattr(cluster, 'failure_handler', None)
    lock = getattr(handler, '_cluster_update_lock', None)
    if lock is not None and lock.locked():
      handler._cluster_update_lock = threading.Lock()  # pylint: disable=protected-access
    if cluster is not None:
      cluster.stop()
