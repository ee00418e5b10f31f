"""The line of user code a warning should name.

Python's default warning filter shows a warning once per (file, line) that
`warnings.warn`'s `stacklevel` points at. Warnings raised deep inside a
kernel's trace would all point into nt_gp (and be shown once per process);
`user_stacklevel` points them at the caller's own line instead.
"""
import os
import sys

__all__ = ['user_stacklevel']

# Frames in these packages (and AutoGraph's generated code) are skipped when
# a warning names the line that caused it: the user's line that called the
# kernel, directly or through TensorFlow Probability, GPflow or Keras.
_LIBRARY_PACKAGES = ('nt_gp', 'tensorflow', 'tensorflow_probability', 'gpflow',
                     'keras', 'tf_keras')


def _library_dirs() -> tuple:
  dirs = []
  for name in _LIBRARY_PACKAGES:
    module = sys.modules.get(name)
    path = getattr(module, '__file__', None)
    if path:
      dirs.append(os.path.dirname(os.path.abspath(path)) + os.sep)
  return tuple(dirs)


def user_stacklevel() -> int:
  """The `stacklevel` that makes a `warnings.warn` in the calling function
  name the first frame outside nt_gp, TensorFlow, TensorFlow Probability,
  GPflow and Keras (the user's line), so Python's default filter shows the
  warning once per such line (1, the calling function itself, when that is
  outside them).

  Example:
    >>> user_stacklevel()   # called from outside the libraries
    1
  """
  dirs = _library_dirs()
  frame = sys._getframe(1)  # pylint: disable=protected-access
  level = 1
  while frame is not None and _in_libraries(frame.f_code.co_filename, dirs):
    frame = frame.f_back
    level += 1
  return level if frame is not None else 2


def _in_libraries(filename: str, dirs: tuple) -> bool:
  # AutoGraph runs converted functions (e.g. TensorFlow's own `pfor` loops)
  # from generated temporary files: never the user's line either.
  return (os.path.abspath(filename).startswith(dirs) or
          os.path.basename(filename).startswith('__autograph_generated_file'))
