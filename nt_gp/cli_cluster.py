"""Connecting a command to tf.distribute workers: ``--workers`` (a local
cluster this process starts) or ``--cluster-spec`` (running workers).

Shared by ``nt-gp kernel`` and ``nt-gp solve``; errors are `CliError`s,
reported as one ``error:`` line.
"""
import os

from nt_gp.cli_kernel_args import CliError

__all__ = ['start_local_cluster', 'runner_from_spec']


def start_local_cluster(workers: int, say, threads=None,
                        pin_cores: bool = False):
  """Starts `workers` local worker processes; returns `(runner, cluster)`.

  Args:
    workers: number of worker processes (>= 1).
    say: a function printing one message line (one per started worker).
    threads: CPU threads per worker (`None`: TensorFlow's default).
    pin_cores: pin each worker to its own cores.

  Returns:
    A `ClusterRunner` on the workers and the `LocalCluster` (close it when
    done). If the runner cannot be made, the workers are stopped first.

  Example (not run: starts processes)::

    runner, cluster = start_local_cluster(2, print)
    try:
      ...
    finally:
      cluster.close()
  """
  from nt_gp.distributed import ClusterRunner, LocalCluster  # pylint: disable=g-import-not-at-top
  try:
    cluster = LocalCluster(workers, threads=threads, pin_cores=pin_cores)
  except (RuntimeError, TimeoutError) as e:
    raise CliError(f'--workers: {e}') from None
  for i, proc in enumerate(cluster.workers):
    say(f'started worker {i} (pid {proc.pid}) at {cluster.spec["worker"][i]}')
  try:
    return ClusterRunner(cluster.spec), cluster
  except BaseException:
    cluster.close()
    raise


def runner_from_spec(spec: str):
  """A `ClusterRunner` for ``--cluster-spec``: ``TF_CONFIG`` (read from the
  environment), a JSON file's path, or the JSON text itself.

  Example:
    >>> runner_from_spec('{"worker": []}')
    Traceback (most recent call last):
    ...
    nt_gp.cli_kernel_args.CliError: --cluster-spec: ...
  """
  from nt_gp.distributed import ClusterRunner  # pylint: disable=g-import-not-at-top
  if spec == 'TF_CONFIG':
    spec = None
  elif os.path.exists(spec):
    with open(spec) as f:
      spec = f.read()
  try:
    return ClusterRunner(spec)
  except ValueError as e:
    raise CliError(f'--cluster-spec: {e}') from None
