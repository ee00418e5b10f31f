"""nt_gp: infinite-width neural networks (NNGP and NTK kernels) for TensorFlow 2.

Example:
  >>> import numpy as np
  >>> import nt_gp
  >>> from nt_gp import stax
  >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu(), stax.Dense(1))
  >>> kernel_fn(np.ones((2, 3)), None, 'nngp').shape
  TensorShape([2, 2])
"""
import importlib
import sys
import types
import typing

__version__ = '0.1.0'

if typing.TYPE_CHECKING:   # the same names, as static tools (docs) see them
  from nt_gp import predict
  from nt_gp import stax
  from nt_gp._config import compilation, config
  from nt_gp.batching import batch
  from nt_gp.kernel import Kernel
  from nt_gp.empirical import (NtkImplementation, empirical_kernel_fn,
                               empirical_nngp_fn, empirical_ntk_fn,
                               empirical_ntk_vp_fn)
  from nt_gp.linearize import linearize, taylor_expand
  from nt_gp.monte_carlo import monte_carlo_kernel_fn

# Public names, imported on first use: `import nt_gp` (and so `nt-gp`'s
# argument checks) does not start TensorFlow until something needs it.
_EXPORTS = {
    'predict': ('nt_gp.predict', None),
    'stax': ('nt_gp.stax', None),
    'compilation': ('nt_gp._config', 'compilation'),
    'config': ('nt_gp._config', 'config'),
    'batch': ('nt_gp.batching', 'batch'),
    'Kernel': ('nt_gp.kernel', 'Kernel'),
    'NtkImplementation': ('nt_gp.empirical', 'NtkImplementation'),
    'empirical_kernel_fn': ('nt_gp.empirical', 'empirical_kernel_fn'),
    'empirical_nngp_fn': ('nt_gp.empirical', 'empirical_nngp_fn'),
    'empirical_ntk_fn': ('nt_gp.empirical', 'empirical_ntk_fn'),
    'empirical_ntk_vp_fn': ('nt_gp.empirical', 'empirical_ntk_vp_fn'),
    'linearize': ('nt_gp.linearize', 'linearize'),
    'taylor_expand': ('nt_gp.linearize', 'taylor_expand'),
    'monte_carlo_kernel_fn': ('nt_gp.monte_carlo', 'monte_carlo_kernel_fn'),
}
__all__ = list(_EXPORTS)


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  module_name, attr = _EXPORTS[name]
  module = importlib.import_module(module_name)
  value = module if attr is None else getattr(module, attr)
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(_EXPORTS))


class _Package(types.ModuleType):
  """Importing the submodule `nt_gp.linearize` sets the package's attribute
  of that name to the module; the function `nt_gp.linearize` it exports
  keeps the name (as when it was imported eagerly)."""

  def __setattr__(self, name, value):
    if (isinstance(value, types.ModuleType) and
        _EXPORTS.get(name, (None, None))[1] is not None):
      return
    super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
