"""Writes the signatures of neural-tangents 0.6.5's public names to JSON.

Run under the reference python (tools/reference_env.sh), never under nt_gp's:

  $(bash tools/reference_env.sh) tools/nt_signatures.py tests/golden/nt_signatures.json

For every public name of `neural_tangents` (it has no `__all__`: the names
without a leading underscore) and of the `__all__` of `stax`, `predict` and
`experimental` it records the kind of object and, for
callables, the parameters in order with their kind and default
(`repr`, plus the plain value for JSON-representable defaults and the member
name for enums). `tests/test_migration_table.py` compares nt_gp's signatures
with these without needing jax.
"""
import enum
import inspect
import json
import sys


def _default(p):
  if p.default is inspect.Parameter.empty:
    return None
  d = p.default
  out = {'repr': repr(d)}
  if isinstance(d, enum.Enum):
    out['enum'] = d.name
  elif d is None or isinstance(d, (bool, int, float, str)):
    out['value'] = d
  elif isinstance(d, tuple) and all(
      isinstance(v, (bool, int, float, str)) or v is None for v in d):
    out['value'] = list(d)
  return out


def _signature(obj):
  try:
    sig = inspect.signature(obj)
  except (TypeError, ValueError):
    return None
  return [{'name': p.name, 'kind': p.kind.name, 'default': _default(p)}
          for p in sig.parameters.values()]


def _describe(obj):
  if inspect.ismodule(obj):
    return {'kind': 'module'}
  if inspect.isclass(obj):
    entry = {'kind': 'class'}
    if issubclass(obj, enum.Enum):
      entry['kind'] = 'enum'
      entry['members'] = [m.name for m in obj]
      return entry
    if issubclass(obj, tuple) and hasattr(obj, '_fields'):
      entry['kind'] = 'namedtuple'
      entry['fields'] = list(obj._fields)
      return entry
    entry['parameters'] = _signature(obj)
    return entry
  if callable(obj):
    return {'kind': 'function', 'parameters': _signature(obj)}
  return {'kind': type(obj).__name__}


def main(path):
  import neural_tangents as nt  # pylint: disable=g-import-not-at-top
  from neural_tangents import experimental, predict, stax  # pylint: disable=g-import-not-at-top
  out = {'neural_tangents_version': nt.__version__, 'modules': {}}
  for module in (nt, stax, predict, experimental):
    names = sorted(getattr(module, '__all__', None) or
                   [n for n in dir(module) if not n.startswith('_')])
    out['modules'][module.__name__] = {
        n: _describe(getattr(module, n)) for n in names}
  with open(path, 'w') as f:
    json.dump(out, f, indent=1, sort_keys=True)
    f.write('\n')


if __name__ == '__main__':
  main(sys.argv[1] if len(sys.argv) > 1 else 'tests/golden/nt_signatures.json')
