"""LocalCluster start-up: a port taken between choosing it and the server
binding it (tests running in parallel, other processes' connections) makes
the cluster start again on new ports instead of failing."""
import socket

from nt_gp.distributed import servers


def test_free_ports_are_distinct():
  ports = servers.free_ports(16)
  assert len(set(ports)) == 16


def test_port_taken_at_start_is_retried(monkeypatch):
  taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
  taken.bind(('0.0.0.0', 0))
  taken.listen()
  port = taken.getsockname()[1]
  real = servers.free_ports
  calls = []

  def first_collides(n):
    calls.append(n)
    ports = real(n)
    if len(calls) == 1:
      ports[1] = port           # the worker's port is already in use
    return ports

  monkeypatch.setattr(servers, 'free_ports', first_collides)
  try:
    with servers.LocalCluster(n_workers=1, threads=1) as cluster:
      assert len(calls) == 2
      assert f'127.0.0.1:{port}' not in cluster.spec['worker']
      assert cluster.alive_workers() == 1
  finally:
    taken.close()


def test_server_failing_for_another_reason_is_not_retried():
  class Broken(servers.LocalCluster):
    def _start(self, n_workers, threads, pin_cores):
      super()._start(n_workers, threads, pin_cores)
      for proc in self.ps + self.workers:
        proc.kill()
        proc.wait()

  try:
    Broken(n_workers=1, startup_timeout=30)
  except RuntimeError as e:
    assert 'exited with code -9' in str(e) and 'its log' in str(e)
  else:
    raise AssertionError('a cluster whose servers died started')
