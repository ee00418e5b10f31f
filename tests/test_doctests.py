"""Runs the examples in the docstrings of every nt_gp module (doctest).

Each module is one test, so a failure names its module. The examples are
what the API reference shows; running them keeps the reference true.
"""
import doctest
import importlib
import os
import pkgutil

import pytest

import nt_gp

os.environ.setdefault('MPLBACKEND', 'Agg')


def _modules():
  names = ['nt_gp']
  for info in pkgutil.walk_packages(nt_gp.__path__, 'nt_gp.'):
    names.append(info.name)
  return sorted(names)


MODULES = _modules()
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize('name', MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(name)
  finder = doctest.DocTestFinder(exclude_empty=True)
  runner = doctest.DocTestRunner(optionflags=FLAGS)
  tests = [t for t in finder.find(module, name)
           if t.examples and _defined_here(t, module)]
  for t in tests:
    runner.run(t)
  result = runner.summarize(verbose=False)
  assert result.failed == 0, f'{result.failed} doctest example(s) failed in {name}'


def _defined_here(test, module):
  """Skips objects re-exported from another module (tested there)."""
  return test.filename is None or os.path.abspath(test.filename) == \
      os.path.abspath(module.__file__)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ['docs/quickstart.md', 'docs/tutorials/tfp.md',
         'docs/tutorials/gpflow.md', 'docs/keras.md']


@pytest.mark.parametrize('page', PAGES)
def test_documentation_pages(page):
  """The `>>>` examples of the quickstart and tutorial pages run as shown."""
  result = doctest.testfile(os.path.join(ROOT, page), module_relative=False,
                            optionflags=FLAGS, verbose=False)
  assert result.attempted > 5, page
  assert result.failed == 0, f'{result.failed} example(s) failed in {page}'
