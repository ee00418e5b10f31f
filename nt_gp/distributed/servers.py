"""`tf.distribute` servers for kernel workers, and a local cluster of them.

Each worker or parameter server is a `tf.distribute.Server` process. On a
real cluster start one per task on every host::

  python -m nt_gp.distributed.servers --cluster-spec spec.json --job worker --index 0

(or set `TF_CONFIG` and pass no arguments), then run ``nt-gp kernel
--cluster-spec spec.json ...`` as the ``chief``. `LocalCluster` starts such
processes on 127.0.0.1 for one machine (``nt-gp kernel --workers N``).
"""
import argparse
import glob
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List, Optional

__all__ = ['LocalCluster', 'run_server', 'main', 'free_port', 'free_ports']

READY = 'nt_gp server ready'
PORT_TAKEN = 3          # exit code of a server whose port was taken
_START_ATTEMPTS = 5


class _PortTaken(Exception):
  """A server could not bind its port."""


def _tail(path: str, n: int = 20) -> str:
  try:
    with open(path) as f:
      return ''.join(f.readlines()[-n:])
  except OSError:
    return '(no log)'


def free_port() -> int:
  """A TCP port on 127.0.0.1 that was free a moment ago.

  Example:
    >>> 0 < free_port() < 65536
    True
  """
  return free_ports(1)[0]


def free_ports(n: int) -> list:
  """`n` distinct TCP ports on 127.0.0.1 that were free a moment ago (all
  held open together while choosing, so no two are the same).

  Example:
    >>> ports = free_ports(3)
    >>> len(set(ports))
    3
  """
  socks = []
  try:
    for _ in range(n):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      socks.append(s)
      s.bind(('127.0.0.1', 0))
    return [s.getsockname()[1] for s in socks]
  finally:
    for s in socks:
      s.close()


def _exit_with(parent_pid: int):
  """Ends this process soon after `parent_pid` ends (no orphaned servers)."""
  def watch():
    while True:
      time.sleep(0.5)
      try:
        os.kill(parent_pid, 0)
      except ProcessLookupError:
        os._exit(0)  # pylint: disable=protected-access
      except PermissionError:
        pass
  threading.Thread(target=watch, daemon=True).start()


def run_server(cluster_spec: Dict[str, List[str]], job: str, index: int,
               threads: Optional[int] = None, cpu: Optional[int] = None,
               parent_pid: Optional[int] = None):
  """Starts a `tf.distribute.Server` for task `job`:`index` and serves forever.

  Args:
    cluster_spec: ``{'chief': [...], 'worker': [...], 'ps': [...]}``.
    job: ``'worker'`` or ``'ps'``.
    index: task index within `job`.
    threads: TensorFlow intra- and inter-op threads (default: TensorFlow's).
    cpu: pin the process to this CPU core (Linux).
    parent_pid: exit when this process ends (used by `LocalCluster`).

  Example (serves until killed, so not run as a doctest; `LocalCluster`
  starts it in subprocesses):
    >>> run_server({'chief': ['127.0.0.1:2222'], 'ps': ['127.0.0.1:2223'],
    ...             'worker': ['127.0.0.1:2224']}, 'worker', 0)  # doctest: +SKIP
  """
  if parent_pid is not None:
    _exit_with(parent_pid)
  if cpu is not None:
    os.sched_setaffinity(0, {int(cpu)})
  if threads:
    os.environ['TF_NUM_INTRAOP_THREADS'] = str(threads)
    os.environ['TF_NUM_INTEROP_THREADS'] = str(threads)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from nt_gp import _config  # pylint: disable=g-import-not-at-top
  _config.apply_tf32_setting()   # this process runs the kernels' ops
  if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
  config = tf.compat.v1.ConfigProto(
      intra_op_parallelism_threads=threads or 0,
      inter_op_parallelism_threads=threads or 0)
  try:
    server = tf.distribute.Server(tf.train.ClusterSpec(cluster_spec),
                                  job_name=job, task_index=index,
                                  protocol='grpc', config=config, start=True)
  except tf.errors.UnknownError as e:
    if 'Could not start gRPC server' not in str(e):
      raise
    address = cluster_spec[job][index]
    print(f'error: could not listen on {address} (port taken?)',
          file=sys.stderr, flush=True)
    sys.exit(PORT_TAKEN)
  print(f'{READY}: {job} {index} pid {os.getpid()}', flush=True)
  server.join()


def _parse_spec(text: str) -> dict:
  if os.path.exists(text):
    with open(text) as f:
      text = f.read()
  try:
    return json.loads(text)
  except ValueError as e:
    raise SystemExit(f'--cluster-spec is neither a JSON file nor JSON: {e}')


def main(argv=None):
  """``python -m nt_gp.distributed.servers``: run one worker or ps task.

  Example (serves until killed, so not run as a doctest):
    >>> main(['--cluster-spec', 'spec.json', '--job', 'worker',
    ...       '--index', '0'])  # doctest: +SKIP
  """
  p = argparse.ArgumentParser(
      prog='python -m nt_gp.distributed.servers',
      description='Run a tf.distribute server (worker or ps) for nt-gp kernel.')
  p.add_argument('--cluster-spec', help='JSON (or a JSON file) of the cluster; '
                 'default: TF_CONFIG')
  p.add_argument('--job', choices=('worker', 'ps'))
  p.add_argument('--index', type=int)
  p.add_argument('--threads', type=int, default=None,
                 help='TensorFlow threads of this task (default: all cores)')
  p.add_argument('--cpu', type=int, default=None,
                 help='pin this task to one CPU core')
  p.add_argument('--parent-pid', type=int, default=None,
                 help='exit when this process ends')
  args = p.parse_args(argv)
  if args.cluster_spec is None:
    if 'TF_CONFIG' not in os.environ:
      p.error('give --cluster-spec, --job and --index, or set TF_CONFIG')
    cfg = json.loads(os.environ['TF_CONFIG'])
    spec, job, index = cfg['cluster'], cfg['task']['type'], cfg['task']['index']
  else:
    if args.job is None or args.index is None:
      p.error('--cluster-spec needs --job and --index')
    spec, job, index = _parse_spec(args.cluster_spec), args.job, args.index
  if job not in ('worker', 'ps'):
    p.error(f'this command runs worker and ps tasks, not {job!r}')
  if index >= len(spec.get(job, [])):
    p.error(f'the cluster spec has no task {job}:{index}')
  run_server(spec, job, index, threads=args.threads, cpu=args.cpu,
             parent_pid=args.parent_pid)


def _remove_stale_logs():
  """Deletes the log folders of local clusters whose process is gone (their
  names hold that process's PID: ``nt_gp_cluster_<pid>_*``)."""
  from nt_gp.store_lock import process_alive  # pylint: disable=g-import-not-at-top
  pattern = os.path.join(tempfile.gettempdir(), 'nt_gp_cluster_*_*')
  for folder in glob.glob(pattern):
    pid = os.path.basename(folder).split('_')[3]
    if pid.isdigit() and not process_alive(int(pid)):
      shutil.rmtree(folder, ignore_errors=True)


class LocalCluster:
  """Worker and parameter-server processes on 127.0.0.1.

  Args:
    n_workers: number of worker processes.
    threads: TensorFlow threads per worker (None: TensorFlow's default).
    pin_cores: pin worker `i` to CPU core ``i % cpu_count`` (Linux).
    startup_timeout: seconds to wait for all servers to be ready.

  Attributes:
    spec: the cluster spec, with a ``chief`` address for this process.
    workers: the worker `subprocess.Popen` objects (``.pid``).
    log_dir: folder with each server's output (``nt_gp_cluster_<pid>_*`` in
      the temporary directory; removed by `close`, and by the next
      `LocalCluster` if this process was killed).

  Example:
    >>> with LocalCluster(n_workers=1) as cluster:
    ...   len(cluster.spec['worker']), cluster.alive_workers()
    (1, 1)
  """

  def __init__(self, n_workers: int, threads: Optional[int] = None,
               pin_cores: bool = False, startup_timeout: float = 180.):
    if not isinstance(n_workers, int) or n_workers < 1:
      raise ValueError(f'`n_workers` must be a positive int, got {n_workers!r}.')
    _remove_stale_logs()
    self.log_dir = tempfile.mkdtemp(prefix=f'nt_gp_cluster_{os.getpid()}_')
    self.workers = []
    self.ps = []
    # A port chosen free can be taken by another process before the server
    # binds it (tests running in parallel, outgoing connections): such a
    # server exits with PORT_TAKEN and the cluster starts again on new ports.
    for attempt in range(_START_ATTEMPTS):
      ports = free_ports(n_workers + 2)
      self.spec = {'chief': [f'127.0.0.1:{ports[0]}'],
                   'worker': [f'127.0.0.1:{p}' for p in ports[1:-1]],
                   'ps': [f'127.0.0.1:{ports[-1]}']}
      try:
        self._start(n_workers, threads, pin_cores)
        self._wait_ready(startup_timeout)
        return
      except _PortTaken:
        self.close(keep_logs=True)
        self.workers, self.ps = [], []
        if attempt + 1 == _START_ATTEMPTS:
          raise RuntimeError(
              f'Could not start a local cluster: a port was taken by another '
              f'process in each of {_START_ATTEMPTS} attempts; see the logs '
              f'in {self.log_dir}.') from None
      except BaseException:
        self.close(keep_logs=True)
        raise

  def _start(self, n_workers, threads, pin_cores):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    env.pop('TF_CONFIG', None)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') \
        else list(range(os.cpu_count() or 1))
    for job, n in (('ps', 1), ('worker', n_workers)):
      for i in range(n):
        cmd = [sys.executable, '-m', 'nt_gp.distributed.servers',
               '--cluster-spec', json.dumps(self.spec), '--job', job,
               '--index', str(i), '--parent-pid', str(os.getpid())]
        if job == 'worker' and threads:
          cmd += ['--threads', str(threads)]
        if job == 'ps':
          cmd += ['--threads', '1']
        if job == 'worker' and pin_cores:
          cmd += ['--cpu', str(cpus[i % len(cpus)])]
        log = open(os.path.join(self.log_dir, f'{job}{i}.log'), 'w')
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log,
                                env=env, text=True)
        log.close()
        proc.log_path = log.name
        (self.ps if job == 'ps' else self.workers).append(proc)

  def _wait_ready(self, timeout):
    deadline = time.time() + timeout
    for proc in self.ps + self.workers:
      line = ''
      while READY not in line:
        if proc.poll() is not None:
          if proc.returncode == PORT_TAKEN:
            raise _PortTaken()
          raise RuntimeError(f'A cluster server exited with code '
                             f'{proc.returncode} while starting; the end of '
                             f'its log ({proc.log_path}):\n'
                             f'{_tail(proc.log_path)}')
        if time.time() > deadline:
          raise TimeoutError(f'Cluster servers did not start within {timeout} '
                             f's; see {self.log_dir}.')
        if select.select([proc.stdout], [], [], 0.5)[0]:
          line = proc.stdout.readline()

  def alive_workers(self) -> int:
    """Number of worker processes still running."""
    return sum(p.poll() is None for p in self.workers)

  def remove_logs(self):
    """Deletes the servers' log folder (running servers keep writing to
    their unlinked files)."""
    shutil.rmtree(self.log_dir, ignore_errors=True)

  def close(self, keep_logs: bool = False):
    """Stops every server process started here (and removes their logs,
    unless `keep_logs`).

    (Servers also exit by themselves when this process ends; a process that
    connected to the cluster may prefer that, so that TensorFlow's clean-up at
    exit still finds them.)
    """
    for proc in self.workers + self.ps:
      if proc.poll() is None:
        proc.terminate()
    for proc in self.workers + self.ps:
      try:
        proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
      if proc.stdout:
        proc.stdout.close()
    if not keep_logs:
      self.remove_logs()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()


if __name__ == '__main__':
  main()
