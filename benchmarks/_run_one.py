"""Times one workload in this process with nt_gp or neural-tangents.

Usage: python _run_one.py {nt_gp|neural_tangents} WORKLOAD DTYPE [N]
Prints one JSON line: compile_s (first call), times_s (3 timed calls),
cpu_times_s (their CPU time, all threads of the process), peak_rss_gb. Runs
under either library's python; imports only that library.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # pylint: disable=g-import-not-at-top
from machine import peak_rss_bytes  # pylint: disable=g-import-not-at-top
from workloads import WORKLOADS  # pylint: disable=g-import-not-at-top


def main(lib, name, dtype, n=None):
  spec = WORKLOADS[name]
  shape = tuple(spec['shape'])
  if n:
    shape = (int(n),) + shape[1:]
  x = np.random.RandomState(0).randn(*shape).astype(dtype)
  if lib == 'neural_tangents':
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_enable_x64', dtype == 'float64')
    from neural_tangents import stax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    kernel_fn = jax.jit(eval(spec['net'], {'stax': stax})[2],  # pylint: disable=eval-used
                        static_argnames=('get',))
    x = jnp.asarray(x)

    def run():
      k = kernel_fn(x, None, get=('nngp', 'ntk'))
      k.ntk.block_until_ready()
      return k
  else:
    from nt_gp import stax  # pylint: disable=g-import-not-at-top
    kernel_fn = eval(spec['net'], {'stax': stax})[2]  # pylint: disable=eval-used

    def run():
      k = kernel_fn(x, None, ('nngp', 'ntk'))
      k.ntk.numpy()
      return k
  t = time.perf_counter()
  run()
  compile_s = time.perf_counter() - t
  times, cpu_times = [], []
  for _ in range(3):
    t, c = time.perf_counter(), time.process_time()
    k = run()
    times.append(time.perf_counter() - t)
    cpu_times.append(time.process_time() - c)
  out = dict(lib=lib, workload=name, dtype=dtype, shape=shape,
             compile_s=compile_s, times_s=times,
             median_s=float(np.median(times)), cpu_times_s=cpu_times,
             median_cpu_s=float(np.median(cpu_times)),
             peak_rss_gb=peak_rss_bytes() / 1e9,
             ntk_checksum=float(np.sum(np.asarray(k.ntk, np.float64))))
  print(json.dumps(out))


if __name__ == '__main__':
  main(*sys.argv[1:])
