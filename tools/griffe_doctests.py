"""Griffe extension: render the doctest examples of nt_gp's docstrings as code.

nt_gp's docstrings are Google style with `Example:` sections and, in module
docstrings, doctest lines in the prose. Griffe only treats `Examples:`
(plural) as an examples section; anything else is Markdown, where doctest
output such as `[(3, 4), (3, 4)]` reads as a link. This extension, used by
the documentation build (`mkdocs.yml`), renames `Example:` headers to
`Examples:` and wraps doctest runs outside such sections in `pycon` code
fences. The docstrings themselves (and the doctests that CI runs) are left
as they are.
"""
import re

import griffe

HEADER = re.compile(r'^(\s*)Examples?:\s*$')
PROMPT = re.compile(r'^(\s*)>>> ')


def fence_doctests(text: str) -> str:
  """The docstring `text` with its doctests renderable as code."""
  lines = text.split('\n')
  out = []
  section_indent = None  # indentation of the current Examples: header
  i = 0
  while i < len(lines):
    line = lines[i]
    stripped = line.strip()
    indent = len(line) - len(line.lstrip())
    if section_indent is not None and stripped and indent <= section_indent:
      section_indent = None
    header = HEADER.match(line)
    if header:
      section_indent = len(header.group(1))
      out.append(f'{header.group(1)}Examples:')
      i += 1
      continue
    prompt = PROMPT.match(line)
    if prompt and section_indent is None:
      pad = prompt.group(1)
      out.append(f'{pad}```pycon')
      while i < len(lines) and lines[i].strip():
        out.append(lines[i])
        i += 1
      out.append(f'{pad}```')
      continue
    out.append(line)
    i += 1
  return '\n'.join(out)


class DoctestSections(griffe.Extension):
  """Applies `fence_doctests` to every docstring that griffe loads."""

  def on_instance(self, *, obj, **kwargs):  # pylint: disable=unused-argument
    if obj.docstring is not None:
      obj.docstring.value = fence_doctests(obj.docstring.value)
