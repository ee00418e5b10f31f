"""The migration guide's table (docs/migration.md) against the code.

* Every public name of neural-tangents 0.6.5 (recorded, with signatures, in
  tests/golden/nt_signatures.json by tools/nt_signatures.py under the
  reference python, so this test needs no jax) has exactly one row.
* A name marked "supported" exists in nt_gp under the name in the nt_gp
  column and is compatible: the same parameter names in the same order as
  neural-tangents (its private `_`-prefixed ones excepted) with equal
  defaults; nt_gp may add parameters with defaults after them. Namedtuples
  have the same fields, enums at least the same members.
* A name marked "differs" exists and its row says how; a name marked "not
  supported" has no nt_gp name and its row gives the alternative.
"""
import enum
import importlib
import inspect
import json
import math
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
GOLDEN = json.loads((ROOT / 'tests' / 'golden' /
                     'nt_signatures.json').read_text())
ROW = re.compile(r'^\| `(neural_tangents[\w.]*)` \| (.*?) \| '
                 r'(supported|differs|not supported) \| (.*) \|$')


def _table():
  rows = {}
  for line in (ROOT / 'docs' / 'migration.md').read_text().splitlines():
    m = ROW.match(line)
    if m:
      name, target, status, notes = m.groups()
      assert name not in rows, f'{name} listed twice'
      target = target.strip()
      rows[name] = (None if target == '—' else target.strip('`'), status,
                    notes.strip())
  return rows


TABLE = _table()


def _golden_names():
  for module, names in GOLDEN['modules'].items():
    for name, entry in names.items():
      yield f'{module}.{name}', entry


def _resolve(path):
  """`nt_gp.a.b` as a user reaches it: attributes first (`nt_gp.linearize` is
  the function, not the module of the same name), modules where needed."""
  parts = path.split('.')
  obj = importlib.import_module(parts[0])
  for i, p in enumerate(parts[1:], start=1):
    if hasattr(obj, p):
      obj = getattr(obj, p)
    else:
      obj = importlib.import_module('.'.join(parts[:i + 1]))
  return obj


def test_golden_is_neural_tangents_0_6_5():
  assert GOLDEN['neural_tangents_version'] == '0.6.5'
  assert len(list(_golden_names())) > 70


def test_every_public_name_has_a_row():
  missing = [n for n, _ in _golden_names() if n not in TABLE]
  assert not missing, f'not in docs/migration.md: {missing}'
  extra = set(TABLE) - {n for n, _ in _golden_names()}
  assert not extra, f'not public in neural-tangents 0.6.5: {extra}'


def _same_default(ref, ours):
  """`ref`: the recorded default of neural-tangents; `ours`: a value."""
  if 'enum' in ref:
    name = ours.name if isinstance(ours, enum.Enum) else ours
    return name == ref['enum']
  if 'value' in ref:
    value = ref['value']
    if isinstance(value, list):
      return isinstance(ours, (tuple, list)) and list(ours) == value
    if isinstance(value, bool) or value is None or isinstance(value, str):
      if isinstance(ours, enum.Enum):
        return ours.name == value or ours.value == value
      return ours is value or ours == value
    return (isinstance(ours, (int, float)) and not isinstance(ours, bool) and
            math.isclose(ours, value))
  if ref['repr'].startswith('<function'):
    return callable(ours)
  return repr(ours) == ref['repr']


def _check_parameters(ref_params, obj, label):
  sig = inspect.signature(obj)
  ours = list(sig.parameters.values())
  ref = [p for p in ref_params if not p['name'].startswith('_')]
  names = [p.name for p in ours]
  assert names[:len(ref)] == [p['name'] for p in ref], (
      f'{label}: parameters {names} do not start with neural-tangents\' '
      f'{[p["name"] for p in ref]}')
  for r, p in zip(ref, ours):
    if r['default'] is None:
      assert p.default is p.empty or r['kind'].startswith('VAR'), (
          f'{label}: `{p.name}` has a default {p.default!r}, neural-tangents '
          f'has none')
      continue
    assert p.default is not p.empty, f'{label}: `{p.name}` has no default'
    assert _same_default(r['default'], p.default), (
        f'{label}: default of `{p.name}` is {p.default!r}, neural-tangents '
        f'has {r["default"]["repr"]}')
  for p in ours[len(ref):]:
    assert (p.default is not p.empty or
            p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)), (
                f'{label}: extra parameter `{p.name}` needs a default')


SUPPORTED = [(n, e) for n, e in _golden_names()
             if TABLE.get(n, (None, None))[1] == 'supported']


@pytest.mark.parametrize('name,entry', SUPPORTED, ids=[n for n, _ in SUPPORTED])
def test_supported_names_are_compatible(name, entry):
  target = TABLE[name][0]
  assert target, f'{name} is supported but has no nt_gp name'
  obj = _resolve(target)
  assert target.rsplit('.', 1)[-1] == name.rsplit('.', 1)[-1], (
      'a supported name keeps its name')
  kind = entry['kind']
  if kind == 'module':
    assert inspect.ismodule(obj)
  elif kind == 'enum':
    assert issubclass(obj, enum.Enum)
    assert set(entry['members']) <= {m.name for m in obj}
  elif kind == 'namedtuple':
    assert list(obj._fields) == entry['fields']
  elif entry.get('parameters') is not None:
    assert callable(obj)
    _check_parameters(entry['parameters'], obj, target)


def test_differs_and_not_supported_rows_explain():
  for name, (target, status, notes) in TABLE.items():
    if status == 'supported':
      continue
    assert len(notes) > 20, f'{name}: say how it differs / what to use'
    if status == 'differs':
      assert target, name
      _resolve(target)
    else:
      assert target is None, f'{name} is "not supported" but names {target}'


def test_sanity_of_the_checker():
  """A renamed parameter or changed default is caught."""
  ref = GOLDEN['modules']['neural_tangents.stax']['Dense']['parameters']

  def dense_renamed(out_dim, w_std=1., b_std=None, batch_axis=0,
                    channel_axis=-1, parameterization='ntk', s=(1, 1)):
    del out_dim, w_std, b_std, batch_axis, channel_axis, parameterization, s

  def dense_default(out_dim, W_std=2., b_std=None, batch_axis=0,  # pylint: disable=invalid-name
                    channel_axis=-1, parameterization='ntk', s=(1, 1)):
    del out_dim, W_std, b_std, batch_axis, channel_axis, parameterization, s

  for fn in (dense_renamed, dense_default):
    with pytest.raises(AssertionError):
      _check_parameters(ref, fn, fn.__name__)
