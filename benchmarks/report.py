"""Benchmark pages for the documentation: what ran, where, and what it printed.

Each benchmark script prints its results through a `Report` and, with
`--out PAGE.md` (the scripts default to `docs/benchmarks/<name>.md`), writes a
Markdown page stating the command, the machine and the date, followed by the
tables the script made and everything it printed. The docs build collects
`docs/benchmarks/*.md` (see `tools/mkdocs_hooks.py`).

Other pages quote a page's table between two markers::

  <!-- table from docs/benchmarks/kernels.md: workload, dtype, time ratio -->
  ...
  <!-- end of table -->

(the columns after the colon are optional). Writing a page rewrites every
such block in README.md and docs/ from it (`refresh_quotes`), so no table is
copied by hand; tests/test_benchmark_scripts.py checks that every block
matches its page.
"""
import datetime
import os
import pathlib
import platform
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / 'docs' / 'benchmarks'


def machine_description():
  """One line: OS, CPU model, visible cores, memory, Python."""
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          cpu = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  cores = (len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
           else os.cpu_count())
  mem = ''
  try:
    with open('/proc/meminfo') as f:
      kb = int(f.readline().split()[1])
    mem = f', {kb / 2 ** 20:.0f} GiB memory'
  except (OSError, ValueError, IndexError):
    pass
  return (f'{platform.system()} {platform.machine()} ({cpu}), {cores} CPU '
          f'cores visible{mem}, Python {platform.python_version()}')


class Report:
  """Prints lines and keeps them for the page.

  Example:
    >>> r = Report('Example')
    >>> r.say('hello')
    hello
    >>> r.table(['a', 'b'], [[1, 2]])
    >>> print(r.markdown(command='python x.py', machine='m').splitlines()[0])
    # Example
  """

  def __init__(self, title, intro=''):
    self.title = title
    self.intro = intro
    self.lines = []
    self.tables = []

  def say(self, text='', flush=True):  # pylint: disable=unused-argument
    """`print(text)` (always flushed), and keeps the line for the page."""
    print(text, flush=True)
    self.lines.append(str(text))

  def table(self, header, rows, caption=''):
    self.tables.append((caption, list(header), [list(r) for r in rows]))

  def markdown(self, command=None, machine=None, extra_versions=''):
    command = command or 'python ' + ' '.join(
        [os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)] + sys.argv[1:])
    machine = machine or machine_description()
    out = [f'# {self.title}', '',
           f'Produced by `{command}` on {machine}{extra_versions}, '
           f'{datetime.date.today().isoformat()}.', '']
    if self.intro:
      out += [self.intro, '']
    for caption, header, rows in self.tables:
      if caption:
        out += [caption, '']
      out += ['| ' + ' | '.join(header) + ' |',
              '|' + '---|' * len(header)]
      out += ['| ' + ' | '.join(str(c) for c in r) + ' |' for r in rows]
      out.append('')
    out += ['What the script printed:', '', '```text', *self.lines, '```', '']
    return '\n'.join(out)

  def write(self, path, **kwargs):
    """Writes the page (replacing an earlier run's page), rewrites the blocks
    of README.md and docs/ that quote it, and says where."""
    if not path:
      return
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(self.markdown(**kwargs))
    print(f'wrote {path}')
    for quoting in refresh_quotes(path):
      print(f'updated the table quoted in {quoting}')


QUOTE = re.compile(r'(<!-- table from ([\w./-]+\.md)(?:: ([^>]*?))? -->\n)'
                   r'(.*?)(<!-- end of table -->)', re.S)


def _first_table(text):
  """`(header, rows)` of the first Markdown table of a page."""
  table = []
  for line in text.splitlines():
    if not line.startswith('|'):
      if table:
        break
      continue
    if not re.fullmatch(r'\|(-+\|)+', line.replace(' ', '')):
      table.append([c.strip() for c in line.strip().strip('|').split('|')])
  if not table:
    raise ValueError('the page has no table')
  return table[0], table[1:]


def quote(page_text, columns=None) -> str:
  """The block that quotes a page: its 'Produced by' line and its first
  table (only `columns`, in that order, if given).

  Example:
    >>> page = ('# T\\n\\nProduced by `x` on m, 2026-01-01.\\n\\n'
    ...         '| a | b |\\n|---|---|\\n| 1 | 2 |\\n')
    >>> print(quote(page, ['b']))
    Produced by `x` on m, 2026-01-01.
    <BLANKLINE>
    | b |
    |---|
    | 2 |
    <BLANKLINE>
  """
  produced = next((l for l in page_text.splitlines()
                   if l.startswith('Produced by')), '')
  header, rows = _first_table(page_text)
  index = list(range(len(header)))
  if columns:
    missing = [c for c in columns if c not in header]
    if missing:
      raise ValueError(f'the table has no column(s) {missing}: {header}')
    index = [header.index(c) for c in columns]
  lines = [produced, '', '| ' + ' | '.join(header[i] for i in index) + ' |',
           '|' + '---|' * len(index)]
  lines += ['| ' + ' | '.join(r[i] if i < len(r) else '' for i in index) +
            ' |' for r in rows]
  return '\n'.join(lines) + '\n'


def quoting_files():
  """README.md and the Markdown files of docs/ (the benchmark pages
  themselves excepted)."""
  files = [ROOT / 'README.md'] + sorted((ROOT / 'docs').rglob('*.md'))
  return [f for f in files if DOCS not in f.parents]


def quoted_blocks(text):
  """`(page, columns, body)` of every quoting block of `text`."""
  for m in QUOTE.finditer(text):
    columns = ([c.strip() for c in m.group(3).split(',')] if m.group(3)
               else None)
    yield m.group(2), columns, m.group(4)


def refresh_quotes(page) -> list:
  """Rewrites the blocks quoting `page` (a path under the repository);
  returns the files changed."""
  page = pathlib.Path(page).resolve()
  try:
    name = page.relative_to(ROOT).as_posix()
  except ValueError:
    return []
  page_text = page.read_text()
  changed = []
  for path in quoting_files():
    text = path.read_text()

    def replace(m):
      if m.group(2) != name:
        return m.group(0)
      columns = ([c.strip() for c in m.group(3).split(',')] if m.group(3)
                 else None)
      return m.group(1) + quote(page_text, columns) + m.group(5)
    new = QUOTE.sub(replace, text)
    if new != text:
      path.write_text(new)
      changed.append(path.relative_to(ROOT).as_posix())
  return changed
