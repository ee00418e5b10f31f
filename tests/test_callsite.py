"""`nt_gp._callsite.user_stacklevel`: the user's line, past library frames
and AutoGraph's generated code."""
import os
import warnings

import nt_gp
from nt_gp import _callsite

NT_GP_DIR = os.path.dirname(os.path.abspath(nt_gp.__file__))


def _compiled(source, filename):
  namespace = {'_callsite': _callsite, 'warnings': warnings}
  exec(compile(source, filename, 'exec'), namespace)  # pylint: disable=exec-used
  return namespace


def test_skips_library_frames_and_autograph_generated_code():
  # A "library" function that warns (compiled as if it were a file of
  # nt_gp), called through "AutoGraph-generated" code, called from here.
  lib = _compiled(
      'def warn():\n'
      '  warnings.warn("x", UserWarning, stacklevel=_callsite.user_stacklevel())\n',
      os.path.join(NT_GP_DIR, 'fake_library_module.py'))
  gen = _compiled('def call(f):\n  return f()\n',
                  '/tmp/__autograph_generated_filetest.py')
  with warnings.catch_warnings(record=True) as rec:
    warnings.simplefilter('always')
    gen['call'](lib['warn'])
  assert [w.filename for w in rec] == [__file__]


def test_a_caller_outside_the_libraries_is_named_itself():
  assert _callsite.user_stacklevel() == 1
