"""Checks of the test suite itself.

A module (or class) that defines two tests of the same name runs only the
second: the first is silently replaced. This happened once when two branches
were merged; this test reads every test file with `ast` and names the
redefined tests.
"""
import ast
import collections
import pathlib

TESTS = pathlib.Path(__file__).resolve().parent


def _redefined(body, where):
  counts = collections.Counter(
      n.name for n in body
      if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)))
  found = [f'{where}: {name} defined {n} times'
           for name, n in counts.items() if n > 1]
  for node in body:
    if isinstance(node, ast.ClassDef):
      found += _redefined(node.body, f'{where}::{node.name}')
  return found


def redefined_names(source: str, where: str):
  """Functions/classes defined more than once in one scope of `source`."""
  return _redefined(ast.parse(source).body, where)


def test_the_check_finds_a_redefined_test():
  source = 'def test_a():\n  pass\n\n\ndef test_a():\n  pass\n'
  assert redefined_names(source, 'x.py') == ['x.py: test_a defined 2 times']
  assert redefined_names('class T:\n  def test_b(self): pass\n'
                         '  def test_b(self): pass\n', 'y.py') == [
                             'y.py::T: test_b defined 2 times']


def test_no_test_module_redefines_a_name():
  found = []
  for path in sorted(TESTS.rglob('*.py')):
    found += redefined_names(path.read_text(), str(path.relative_to(TESTS)))
  assert not found, '\n'.join(found)
