"""Global settings of nt_gp (compilation mode and float32 precision of kernel
propagation)."""
import contextlib

import tensorflow as tf

__all__ = ['config', 'compilation', 'apply_tf32_setting']


class _Config:
  """Mutable global settings.

  Attributes:
    jit_compile: how `kernel_fn` graphs are compiled. `None` (default): the
      propagation is a TensorFlow graph whose covariance maps are XLA
      clusters (`nt_gp.ops.compile`), which measured fastest on CPU in both
      float32 and float64; `True` compiles the whole graph with XLA; `False`
      uses no XLA at all.
    pack_symmetric: when `x2` is None, propagate only the input pairs
      n1 <= n2 (half the time and memory); layers that cannot use this
      layout receive the unpacked kernel.
    allow_tf32: whether float32 matmuls and convolutions may run in
      TensorFloat-32 (NVIDIA Ampere GPUs and newer; a 10-bit mantissa, about
      3 fewer correct digits). `False` (default): nt_gp switches TensorFlow's
      TF32 execution off whenever it computes a kernel, so float32 kernels
      keep float32 accuracy. `True`: nt_gp switches it on (TensorFlow's own
      default), trading those digits for tensor-core speed. The switch is
      TensorFlow's and process-wide (`tf.config.experimental.
      enable_tensor_float_32_execution`): it also applies to the process's
      other float32 ops. Set it before the first kernel: code XLA compiled
      earlier keeps the precision it was compiled with. Without such a GPU
      the setting changes nothing.
    graph_first_call_max_entries: opt-in (default 0: off; 2**22 is a good
      value for notebooks and sweeps over many input sizes). The first call
      of a `kernel_fn` on a new
      input signature (shapes, dtype, `get`) whose covariances have at most
      this many entries (N1 * N2 times the spatial size, squared where the
      network needs full spatial covariances) runs as a plain TensorFlow
      graph, without compiling XLA clusters: for small inputs XLA's compile
      time is most of a call, and a new input size (a GP's test set, a
      notebook cell) is often called only once. From the second call with
      that signature on, the XLA-compiled propagation runs (it is compiled
      then). 0 compiles on the first call. Only applies while `jit_compile`
      is None, and not to networks that need full spatial covariances of
      images (2+ spatial axes): derivatives of second order of those
      broadcast tensors of rank > 8, which only XLA supports. Under
      `jit_compile=False` the nonlinearities' gradients keep their forward
      intermediates instead of recomputing them (more memory). Off by
      default because the first and later calls then differ in rounding
      (up to ~5e-9 relative in float64 for some activations): a resumed
      kernel job or a multi-device run would no longer repeat a kernel bit
      for bit.
    bucket_max_entries: a top-level `kernel_fn` call whose covariances have
      at most this many entries (counted as for
      `graph_first_call_max_entries`; default 2**22) pads each batch to its
      size bucket (the next multiple of 2^(⌊log2 N⌋ - 4): less than N/16
      more inputs, copies of its first) and slices the kernel back, so
      nearby sizes (a GP's test sets, a notebook, N = 1000..1024) share one
      traced and compiled propagation instead of compiling per size (see
      `nt_gp.stax.buckets`). The same size always runs the same program, so
      repeated calls agree bit for bit. 0: every size exact. Larger inputs
      never pad: their run time, not the compile, dominates.
  """

  def __init__(self):
    self.jit_compile = None
    self.pack_symmetric = True
    self.allow_tf32 = False
    self.graph_first_call_max_entries = 0
    self.bucket_max_entries = 2 ** 22

  def resolve_jit(self) -> bool:
    """`jit_compile` for the `tf.function` around a whole propagation."""
    return bool(self.jit_compile)


config = _Config()


def apply_tf32_setting():
  """Sets TensorFlow's TF32 execution to `config.allow_tf32`.

  Called by nt_gp wherever it computes a kernel (the stax `kernel_fn`, and
  the adapters, store and command line through it; empirical kernels), so a
  user needs no call of their own.

  Example:
    >>> import tensorflow as tf
    >>> apply_tf32_setting()
    >>> tf.config.experimental.tensor_float_32_execution_enabled()
    False
  """
  want = bool(config.allow_tf32)
  if tf.config.experimental.tensor_float_32_execution_enabled() != want:
    tf.config.experimental.enable_tensor_float_32_execution(want)


@contextlib.contextmanager
def compilation(jit_compile):
  """Temporarily sets `config.jit_compile`.

  Example:
    >>> import nt_gp
    >>> with nt_gp.compilation(jit_compile=False):
    ...   pass
  """
  old = config.jit_compile
  config.jit_compile = jit_compile
  try:
    yield
  finally:
    config.jit_compile = old
