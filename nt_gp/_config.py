"""Global settings of nt_gp (compilation mode of kernel propagation)."""
import contextlib

__all__ = ['config', 'compilation']


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
  """

  def __init__(self):
    self.jit_compile = None
    self.pack_symmetric = True

  def resolve_jit(self) -> bool:
    """`jit_compile` for the `tf.function` around a whole propagation."""
    return bool(self.jit_compile)


config = _Config()


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
