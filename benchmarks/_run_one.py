"""Times one workload in this process with nt_gp or neural-tangents.

Usage:
  python _run_one.py {nt_gp|neural_tangents} WORKLOAD DTYPE [N]
      [--serve | --first-only]

Builds the inputs (`N` overrides the workload's number of inputs), runs a
full garbage collection (so that no collection left pending by the imports
lands in the first call), makes a first (compiling) call of ``kernel_fn(x, None, ('nngp', 'ntk'))`` and a
second one and prints one JSON line ``{"compile_s": ..., "second_s": ...}``.
Then:

* with ``--first-only``, exits after the first call, printing only
  ``{"compile_s": ...}`` (`compare.py` repeats the first call in fresh
  processes this way);
* by default, times 3 calls and prints one JSON line with compile_s,
  times_s, median_s, cpu_times_s (CPU time of all the process's
  threads), peak_rss_gb and the checksums;
* with ``--serve``, reads commands from stdin: ``run`` times one call and
  prints ``{"t": seconds}``; ``new`` times one call of the same kernel
  function on an input size it has not seen (N+1, N+2, ...: compile + run,
  as a GP predicting on a new test-set size) and prints
  ``{"t_new": seconds}``; ``done`` prints the final line as above (with
  new_shape_times_s and new_shape_median_s) and exits. `compare.py` uses
  this to interleave the two libraries' calls.

The checksums are the float64 sums of the last call's nngp and ntk over the
pairs ``i <= j`` (the upper triangle with the diagonal), which `compare.py`
compares between the libraries. Only the upper triangle: neural-tangents'
quadrature kernels (``ElementwiseNumerical``) are not exactly symmetric (its
2-D Gauss-Hermite rule depends on which input of a pair comes first; 5e-4
relative at degree 25 on the `numerical_n500` inputs), while nt_gp computes
the pairs ``i <= j`` as neural-tangents does and mirrors them. Runs under either library's
python; imports only that library.
"""
import gc
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # pylint: disable=g-import-not-at-top
from machine import peak_rss_bytes  # pylint: disable=g-import-not-at-top
from workloads import ALL_WORKLOADS as WORKLOADS  # pylint: disable=g-import-not-at-top


def build(lib, name, dtype, n=None):
  """`(run, shape, run_on)`: `run()` is one timed-able call of the workload's
  kernel function; `run_on(n)` calls the same kernel function on `n` new
  inputs."""
  spec = WORKLOADS[name]
  shape = tuple(spec['shape'])
  if n:
    shape = (int(n),) + shape[1:]
  x = np.random.RandomState(0).randn(*shape).astype(dtype)

  def inputs(n_new):
    return np.random.RandomState(n_new).randn(
        n_new, *shape[1:]).astype(dtype)
  if lib == 'neural_tangents':
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_enable_x64', dtype == 'float64')
    from neural_tangents import stax  # pylint: disable=g-import-not-at-top
    import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
    kernel_fn = jax.jit(eval(spec['net'], {'stax': stax, 'tanh': jnp.tanh})[2],  # pylint: disable=eval-used
                        static_argnames=('get',))
    x = jnp.asarray(x)

    def run_on(n_new):
      k = kernel_fn(jnp.asarray(inputs(n_new)), None, get=('nngp', 'ntk'))
      k.ntk.block_until_ready()
      return k

    def run():
      k = kernel_fn(x, None, get=('nngp', 'ntk'))
      k.ntk.block_until_ready()
      return k
  else:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from nt_gp import stax  # pylint: disable=g-import-not-at-top
    # Start TensorFlow's runtime, as `jnp.asarray` above starts JAX's: the
    # first call then measures the kernel, not the runtime's start-up.
    tf.zeros(())
    kernel_fn = eval(spec['net'], {'stax': stax, 'tanh': tf.tanh})[2]  # pylint: disable=eval-used

    def run_on(n_new):
      k = kernel_fn(inputs(n_new), None, ('nngp', 'ntk'))
      k.ntk.numpy()
      return k

    def run():
      k = kernel_fn(x, None, ('nngp', 'ntk'))
      k.ntk.numpy()
      return k
  return run, shape, run_on


def _timed(run):
  t, c = time.perf_counter(), time.process_time()
  k = run()
  return time.perf_counter() - t, time.process_time() - c, k


def _summary(lib, name, dtype, shape, compile_s, times, cpu_times, k,
             new_times=(), second_s=None):
  return dict(lib=lib, workload=name, dtype=dtype, shape=shape,
              compile_s=compile_s, second_s=second_s, times_s=times,
              median_s=float(np.median(times)), cpu_times_s=cpu_times,
              new_shape_times_s=list(new_times),
              new_shape_median_s=(float(np.median(new_times)) if new_times
                                  else None),
              median_cpu_s=float(np.median(cpu_times)) if cpu_times else None,
              peak_rss_gb=peak_rss_bytes() / 1e9,
              nngp_checksum=upper_sum(k.nngp), ntk_checksum=upper_sum(k.ntk))


def upper_sum(kernel) -> float:
  """Sum of a `(N, N, ...)` kernel's entries with `i <= j`, in float64."""
  a = np.asarray(kernel, np.float64)
  a = a.reshape(a.shape[0], a.shape[1], -1).sum(-1)
  return float(np.sum(np.triu(a)))


def main(argv):
  serve = '--serve' in argv
  lib, name, dtype, *rest = [a for a in argv
                             if a not in ('--serve', '--first-only')]
  run, shape, run_on = build(lib, name, dtype, rest[0] if rest else None)
  # Python's full (generation-2) collection becomes due at a moment set by
  # the process's import history: in a process whose imports left it
  # pending, the first call's allocations trigger it (0.15 s for
  # TensorFlow's or JAX's heap of ~300,000 objects, docs/performance.md).
  # Both libraries collect here, after their imports and set-up, so their
  # first calls measure the kernel, not a collection owed by the imports.
  gc.collect()
  compile_s, _, k = _timed(run)
  if '--first-only' in argv:
    print(json.dumps({'compile_s': compile_s}), flush=True)
    return
  # The second call with the same inputs: nt_gp runs a small input's first
  # call without XLA and compiles on the second (config.
  # graph_first_call_max_entries); neural-tangents compiled on the first.
  second_s, _, k = _timed(run)
  print(json.dumps({'compile_s': compile_s, 'second_s': second_s}),
        flush=True)
  times, cpu_times, new_times = [], [], []
  if not serve:
    for _ in range(3):
      t, c, k = _timed(run)
      times.append(t)
      cpu_times.append(c)
  else:
    for line in sys.stdin:
      if line.strip() == 'run':
        t, c, k = _timed(run)
        times.append(t)
        cpu_times.append(c)
        print(json.dumps({'t': t}), flush=True)
      elif line.strip() == 'new':
        n_new = shape[0] + len(new_times) + 1
        t, _, _ = _timed(lambda: run_on(n_new))  # pylint: disable=cell-var-from-loop
        new_times.append(t)
        print(json.dumps({'t_new': t}), flush=True)
      elif line.strip() == 'done':
        break
  print(json.dumps(_summary(lib, name, dtype, shape, compile_s, times,
                            cpu_times, k, new_times, second_s)), flush=True)


if __name__ == '__main__':
  main(sys.argv[1:])
