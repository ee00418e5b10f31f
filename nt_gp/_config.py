"""Global settings of nt_gp (compilation mode of kernel propagation)."""
import contextlib

__all__ = ['config', 'compilation']


class _Config:
  """Mutable global settings.

  Attributes:
    jit_compile: how `kernel_fn` graphs are compiled. `None` (default) picks per
      dtype what measured fastest on CPU (see `benchmarks/`); `True` forces
      XLA; `False` forces TensorFlow graph mode.
    pack_symmetric: when `x2` is None, propagate only the input pairs
      n1 <= n2 (half the time and memory); layers that cannot use this
      layout receive the unpacked kernel.
  """

  def __init__(self):
    self.jit_compile = None
    self.pack_symmetric = True

  def resolve_jit(self, dtype) -> bool:
    if self.jit_compile is not None:
      return bool(self.jit_compile)
    return False


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
