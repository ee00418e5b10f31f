"""The import rule of the package (docs/concepts.md, "Architecture").

Read from the source with `ast` (every import counts, also those inside
functions):

* no import cycle between nt_gp modules;
* the leaves `nt_gp._callsite` and `nt_gp._graph_context` import nothing
  of nt_gp; `nt_gp.validation`, `nt_gp.nonfinite` and `nt_gp._config` only
  the leaves; `nt_gp.ops` only `nt_gp.ops`, `nt_gp._config` and the
  leaves; `nt_gp.kernel` only `nt_gp.ops`;
* the stax engine imports only the layers below it and itself, never a
  layer module;
* a layer module (one file per layer family in `nt_gp/stax/`) imports only
  the engine: never another layer module;
* no module imports another module's private (`_name`) function or class,
  or calls one through the module (`module._name`).
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'nt_gp'

LEAVES = {'nt_gp._callsite', 'nt_gp._graph_context'}
FOUNDATION = {'nt_gp._config', 'nt_gp.validation', 'nt_gp.nonfinite'} | LEAVES
STAX_ENGINE = {f'nt_gp.stax.{m}' for m in (
    'layer', 'layer_call', 'rule_spec', 'requirements', 'masking', 'inputs',
    'shapes', 'hparams', '_random', 'elementwise', 'compiled_map',
    'dimension_numbers', 'buckets')}


def _module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix('').parts
  if parts[-1] == '__init__':
    parts = parts[:-1]
  return '.'.join(parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob('*.py')}
LAYER_MODULES = {m for m in MODULES if m.startswith('nt_gp.stax.') and
                 m not in STAX_ENGINE}


def _resolve(module, level, current):
  """Absolute name of a (possibly relative) `from ... import`."""
  if not level:
    return module
  base = current.split('.')
  if not MODULES[current].name == '__init__.py':
    base = base[:-1]
  base = base[:len(base) - (level - 1)]
  return '.'.join(base + ([module] if module else []))


def _imports(name):
  """`(imported module, line)` edges and `(private name, line)` uses."""
  tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
  edges, private = [], []
  bound = {}    # local name -> nt_gp module it is bound to
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name in MODULES:
          edges.append((alias.name, node.lineno))
          bound[alias.asname or alias.name] = alias.name
    elif isinstance(node, ast.ImportFrom):
      src = _resolve(node.module, node.level, name)
      if not src or not src.split('.')[0] == 'nt_gp':
        continue
      for alias in node.names:
        full = f'{src}.{alias.name}'
        if full in MODULES:        # a submodule
          edges.append((full, node.lineno))
          bound[alias.asname or alias.name] = full
        else:
          edges.append((src, node.lineno))
          if alias.name.startswith('_') and not alias.name.startswith('__'):
            private.append((f'{src}.{alias.name}', node.lineno))
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in bound and node.attr.startswith('_')
        and not node.attr.startswith('__')
        and f'{bound[node.value.id]}.{node.attr}' not in MODULES):
      private.append((f'{bound[node.value.id]}.{node.attr}', node.lineno))
  return edges, private


GRAPH = {m: _imports(m) for m in MODULES}


def _deps(name):
  return {dep for dep, _ in GRAPH[name][0] if dep != name}


def test_the_rule_sees_the_package():
  assert 'nt_gp.stax.dense' in LAYER_MODULES
  assert 'nt_gp.kernel' in _deps('nt_gp.stax.layer')
  assert STAX_ENGINE <= set(MODULES), STAX_ENGINE - set(MODULES)


def test_no_import_cycles():
  done, stack, cycles = set(), [], []

  def visit(m):
    if m in stack:
      cycles.append(stack[stack.index(m):] + [m])
      return
    if m in done:
      return
    stack.append(m)
    for dep in sorted(_deps(m)):
      # A module's own package (its __init__) is imported before it; only
      # the modules it names count.
      if not m.startswith(dep + '.'):
        visit(dep)
    stack.pop()
    done.add(m)

  for m in sorted(MODULES):
    visit(m)
  assert not cycles, '\n'.join(' -> '.join(c) for c in cycles)


def _offending(name, allowed):
  return [(dep, line) for dep, line in GRAPH[name][0]
          if dep != name and not allowed(dep)]


@pytest.mark.parametrize('name', sorted(
    m for m in MODULES if m.startswith('nt_gp.ops')))
def test_ops_import_only_ops(name):
  assert not _offending(name, lambda d: d.startswith('nt_gp.ops') or
                        d == 'nt_gp._config' or d in LEAVES)


def test_foundation_and_kernel():
  for name in FOUNDATION:
    assert _deps(name) <= LEAVES, name
  for name in LEAVES:
    assert not _deps(name), name
  assert not _offending('nt_gp.kernel', lambda d: d.startswith('nt_gp.ops.'))


def _below_layers(dep):
  return (dep in FOUNDATION or dep == 'nt_gp.kernel' or
          dep.startswith('nt_gp.ops.') or dep in STAX_ENGINE)


@pytest.mark.parametrize('name', sorted(STAX_ENGINE))
def test_stax_engine_imports_no_layer_module(name):
  assert not _offending(name, _below_layers)


@pytest.mark.parametrize('name', sorted(LAYER_MODULES))
def test_layer_modules_import_only_the_engine(name):
  bad = _offending(name, _below_layers)
  assert not bad, (f'{name} imports {bad}: a layer module may import only '
                   f'the engine (see docs/concepts.md, "Architecture")')


@pytest.mark.parametrize('name', sorted(MODULES))
def test_no_private_names_across_modules(name):
  private = [(p, line) for p, line in GRAPH[name][1]
             if not p.startswith(name + '.')]
  assert not private, f'{name} uses private names of other modules: {private}'
