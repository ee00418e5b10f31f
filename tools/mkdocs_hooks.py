"""MkDocs hooks for nt_gp's documentation (`mkdocs.yml`: `hooks:`).

* `<!-- api: MODULE -->` in a page expands into one mkdocstrings block
  (`::: MODULE.NAME`) per public name of `MODULE` (its `__all__`, else the
  public classes and functions it defines or re-exports), so every name a
  user can import is documented without keeping lists by hand. A module that
  does not exist yet expands into a note.
* `<!-- benchmarks -->` expands into the tables that the scripts in
  `benchmarks/` wrote to `docs/benchmarks/*.md`, and those pages are added to
  the navigation under "Benchmarks".
* `<!-- cli-help: COMMAND -->` expands into the `--help` text of
  `nt-gp COMMAND` (of `nt-gp` itself without a command), as argparse prints
  it, so the page always matches the code.
* Navigation entries and links to pages that are not there (pages written
  separately, e.g. the scale-out guide) are dropped instead of failing the
  strict build.
"""
import importlib
import inspect
import os
import re
import sys

API = re.compile(r'<!-- api: ([\w.]+) -->')
CLI_HELP = re.compile(r'<!-- cli-help: ?([\w-]*) -->')
BENCHMARKS = '<!-- benchmarks -->'


def _docs_dir(config):
  return config['docs_dir']


def _benchmark_pages(docs_dir):
  folder = os.path.join(docs_dir, 'benchmarks')
  if not os.path.isdir(folder):
    return []
  return sorted(f'benchmarks/{f}' for f in os.listdir(folder)
                if f.endswith('.md'))


def _title(docs_dir, page):
  with open(os.path.join(docs_dir, page), encoding='utf-8') as f:
    for line in f:
      if line.startswith('# '):
        return line[2:].strip()
  return os.path.splitext(os.path.basename(page))[0]


def _filter_nav(nav, docs_dir):
  out = []
  for item in nav:
    if isinstance(item, str):
      if os.path.exists(os.path.join(docs_dir, item)):
        out.append(item)
      continue
    (title, value), = item.items()
    if isinstance(value, list):
      value = _filter_nav(value, docs_dir)
      if value:
        out.append({title: value})
    elif value == 'benchmarks.md':
      pages = _benchmark_pages(docs_dir)
      out.append({title: [{'Overview': value}] + [
          {_title(docs_dir, p): p} for p in pages]} if pages else item)
    elif os.path.exists(os.path.join(docs_dir, value)):
      out.append(item)
  return out


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _has_source(module_name):
  """Whether this checkout has the module's source (griffe reads it there)."""
  path = os.path.join(ROOT, *module_name.split('.'))
  return (os.path.exists(path + '.py') or
          os.path.exists(os.path.join(path, '__init__.py')))


def on_config(config, **kwargs):
  del kwargs
  # Import nt_gp from this checkout (public names, `--help` texts), as griffe
  # reads it from here.
  if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
  if config.get('nav'):
    config['nav'] = _filter_nav(config['nav'], _docs_dir(config))
  return config


def public_names(module_name):
  """Public names of a module, in the order of `__all__` or definition."""
  module = importlib.import_module(module_name)
  names = getattr(module, '__all__', None)
  if names is None:
    names = [n for n, v in vars(module).items()
             if not n.startswith('_') and not inspect.ismodule(v) and
             (inspect.isclass(v) or callable(v)) and
             getattr(v, '__module__', '').startswith('nt_gp')]
  return list(names)


def _expand_api(match):
  module_name = match.group(1)
  if not _has_source(module_name):
    return (f'!!! note\n    `{module_name}` is not part of this version of '
            f'nt_gp.\n')
  blocks = [f'::: {module_name}\n    options:\n      members: false\n'
            f'      show_root_heading: false\n']
  module = importlib.import_module(module_name)
  for name in public_names(module_name):
    path = f'{module_name}.{name}'
    obj = getattr(module, name, None)
    if _has_source(path) and not inspect.ismodule(obj):
      # A function named like a submodule (`stax.layer`): griffe would
      # document the module, so point at the function's own definition.
      path = f'{obj.__module__}.{obj.__qualname__}'
    blocks.append(f'::: {path}\n')
  return '\n'.join(blocks)


def _expand_cli_help(match):
  import argparse  # pylint: disable=g-import-not-at-top
  from nt_gp import cli  # pylint: disable=g-import-not-at-top
  os.environ['COLUMNS'] = '80'
  parser = cli.build_parser()
  command = match.group(1)
  if command:
    sub = next(a for a in parser._actions  # pylint: disable=protected-access
               if isinstance(a, argparse._SubParsersAction))  # pylint: disable=protected-access
    parser = sub.choices[command]
  return '```text\n' + parser.format_help().rstrip() + '\n```'


def _expand_benchmarks(docs_dir):
  pages = _benchmark_pages(docs_dir)
  if not pages:
    return ('No benchmark tables have been generated in this checkout yet; '
            'run the scripts in `benchmarks/`.')
  lines = ['| table | page |', '|---|---|']
  for p in pages:
    lines.append(f'| {_title(docs_dir, p)} | [{p}]({p}) |')
  return '\n'.join(lines)


LINK = re.compile(r'\[([^\]]+)\]\(([\w./-]+\.md)(#[\w-]+)?\)')


def on_page_markdown(markdown, page, config, files, **kwargs):
  del kwargs
  docs_dir = _docs_dir(config)
  markdown = API.sub(_expand_api, markdown)
  markdown = CLI_HELP.sub(_expand_cli_help, markdown)
  if BENCHMARKS in markdown:
    markdown = markdown.replace(BENCHMARKS, _expand_benchmarks(docs_dir))
  here = os.path.dirname(page.file.src_path)

  def keep_existing(m):
    target = os.path.normpath(os.path.join(here, m.group(2)))
    if files.get_file_from_path(target) is None:
      return m.group(1)
    return m.group(0)

  return LINK.sub(keep_existing, markdown)
