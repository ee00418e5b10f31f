"""Benchmark pages for the documentation: what ran, where, and what it printed.

Each benchmark script prints its results through a `Report` and, with
`--out PAGE.md` (the scripts default to `docs/benchmarks/<name>.md`), writes a
Markdown page stating the command, the machine and the date, followed by the
tables the script made and everything it printed. The docs build collects
`docs/benchmarks/*.md` (see `tools/mkdocs_hooks.py`).
"""
import datetime
import os
import pathlib
import platform
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
    """Writes the page (replacing an earlier run's page) and says where."""
    if not path:
      return
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(self.markdown(**kwargs))
    print(f'wrote {path}')
