"""Compiling XLA clusters on a second thread while the network is traced.

A new input signature's first `kernel_fn` call traces the whole propagation
in Python and then runs it; the XLA clusters in it (the nonlinearities'
covariance maps) compile when the graph first reaches them. Both take about
as long on small inputs, one after the other. Inside `priming()`, a compiled
function called while being traced also starts its compilation on a
background thread, by running it once on placeholder inputs of the traced
shapes inside a graph of its own: TensorFlow keys compiled clusters by
function and shapes, so the real run finds the executable ready (or waits
for the compilation under way) instead of starting it then. The Python
tracing of the rest of the network goes on meanwhile.

Priming is on for a `kernel_fn`'s own first call of an input signature and
wherever a kernel is traced into a caller's graph (a user's `tf.function`,
the TFP and GPflow adapters), and for a covariance map's compiled gradient
while TensorFlow traces the backward pass. It is off inside an
XLA-compiled caller (`jit_compile=True`), which compiles the clusters as
part of its own program.

Only inputs of at most `MAX_ENTRIES` elements are primed: for larger ones
the run on placeholder inputs would cost more time and memory than the
compilation it hides. The compilation runs under the device scope that
`priming()` was entered in (the caller's `tf.device`), so it compiles for
the device the real call runs on. Failures on the background thread (e.g. a map that
rejects its placeholder values) are ignored: the real call compiles then.
"""
import concurrent.futures
import contextlib
import os
import threading
import weakref

import tensorflow as tf
from tensorflow.python.eager import context  # pylint: disable=g-direct-tensorflow-import

from nt_gp import _graph_context

__all__ = ['priming', 'maybe_prime', 'MAX_ENTRIES']

MAX_ENTRIES = 2 ** 22

_STATE = threading.local()
_LOCK = threading.Lock()
_POOL = None
# Signatures started, per compiled function. Weak keys: a function that is
# gone takes its entries with it (an `id()` key could be reused by a later
# function, which would then never be primed).
_DONE = weakref.WeakKeyDictionary()
_MAX_DONE = 4096   # signatures kept per function


@contextlib.contextmanager
def priming():
  """Within (this thread only): `maybe_prime` starts compilations.

  Example:
    >>> with priming():
    ...   pass
  """
  old = getattr(_STATE, 'on', False), getattr(_STATE, 'device', '')
  _STATE.on = True
  _STATE.device = context.context().device_name or ''
  try:
    yield
  finally:
    _STATE.on, _STATE.device = old


def _forget_pool():
  global _POOL
  _POOL = None    # a forked child has none of the parent's threads


os.register_at_fork(after_in_child=_forget_pool)


def _pool():
  global _POOL
  with _LOCK:
    if _POOL is None:
      _POOL = concurrent.futures.ThreadPoolExecutor(
          1, thread_name_prefix='nt_gp_xla_prime')
    return _POOL


def maybe_prime(compiled, args) -> bool:
  """Starts compiling `compiled(*args)` in the background if worthwhile.

  Called with the symbolic `args` of a trace, inside `priming()`: gets the
  concrete function here (the trace would next), then on a worker thread
  runs it once, inside a graph, on ones of the same shapes and dtypes.

  Args:
    compiled: a `tf.function(jit_compile=True)`.
    args: its positional arguments (nested tuples of tensors and None).

  Returns:
    Whether a compilation was started.

  Example:
    >>> f = tf.function(lambda x: 2 * x, jit_compile=True)
    >>> maybe_prime(f, (tf.constant(1.),))   # not inside priming()
    False
  """
  if not getattr(_STATE, 'on', False) or not tf.inside_function():
    return False
  if _graph_context.in_xla_context():
    return False   # traced into an XLA-compiled caller, compiled with it
  flat = tf.nest.flatten(args)
  if not all(t is None or isinstance(t, tf.Tensor) for t in flat):
    return False
  present = [t for t in flat if t is not None]
  if not all(t.shape.is_fully_defined() for t in present) or sum(
      t.shape.num_elements() for t in present) > MAX_ENTRIES:
    return False
  specs = [None if t is None else (tuple(t.shape), t.dtype) for t in flat]
  key = tuple(specs)
  with _LOCK:
    done = _DONE.setdefault(compiled, set())
    if key in done:
      return False
    if len(done) >= _MAX_DONE:
      done.clear()
    done.add(key)
  compiled.get_concrete_function(*args)
  device = _STATE.device

  def work():
    try:
      with tf.device(device):
        ones = [None if s is None else tf.ones(s[0], s[1]) for s in specs]
        run = tf.function(lambda *a: compiled(*a), autograph=False)
        # Every run is a function of its own, traced once; TensorFlow would
        # count them as retraces of one (they share their code) and log its
        # frequent-retracing warning at the user. (Its own restored
        # functions are exempted the same way.)
        run._omit_frequent_tracing_warning = True  # pylint: disable=protected-access
        run(*tf.nest.pack_sequence_as(args, ones))
    except Exception:  # pylint: disable=broad-except
      pass   # only a head start: the real call compiles (and reports) then
  _pool().submit(work)
  return True
