"""Optional dependencies: the `setup.py` extras and what to install.

scikit-learn (the demo's bundled data sets) and matplotlib (figures) are
not requirements of nt_gp's kernels: Keras, which `import tensorflow`
loads, imports both whenever they are installed (about 1 s and 90 MB per
process), so they are extras (`pip install "nt_gp[demo]"`, `"nt_gp[plots]"`).
"""
import importlib.util
from typing import List

__all__ = ['EXTRAS', 'missing', 'require']

# extra -> (module imported, name on the package index), as in setup.py.
EXTRAS = {'demo': (('sklearn', 'scikit-learn'), ('matplotlib', 'matplotlib')),
          'plots': (('matplotlib', 'matplotlib'),)}


def missing(extra: str) -> List[str]:
  """The packages of `extra` that are not installed (index names).

  Example:
    >>> isinstance(missing('plots'), list)
    True
  """
  if extra not in EXTRAS:
    raise ValueError(f'unknown extra {extra!r}; one of {sorted(EXTRAS)}.')
  return [name for module, name in EXTRAS[extra]
          if importlib.util.find_spec(module) is None]


def require(extra: str, what: str) -> None:
  """Raises `ImportError` naming what to install if `extra` is incomplete.

  Args:
    extra: a key of `EXTRAS`.
    what: what needs it, for the message (e.g. 'nt_gp.demo.run').

  Example:
    >>> require('plots', 'a figure')   # doctest: +SKIP
  """
  names = missing(extra)
  if names:
    raise ImportError(
        f'{what} needs {" and ".join(names)}, which nt_gp does not install '
        f'by default; install with: pip install "nt_gp[{extra}]"')
