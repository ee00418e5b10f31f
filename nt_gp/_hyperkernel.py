"""The kernel of a `stax` architecture at given hyperparameter values.

Shared by the TensorFlow Probability and GPflow adapters (`nt_gp.tfp`,
`nt_gp.gpflow`), which only differ in how they store hyperparameters and
shape their inputs. An *architecture* is a function of named hyperparameters
returning a `stax` network, e.g.::

    lambda W_std, b_std: stax.serial(stax.Dense(1, W_std, b_std), stax.Relu(),
                                     stax.Dense(1, W_std, b_std))

The network is rebuilt with the current hyperparameter tensors every time a
kernel is computed; this only happens while a graph is traced (eager calls go
through one `tf.function` per `ArchitectureKernel`), so changing a
hyperparameter's value never retraces.

Two computations are provided:

* `ArchitectureKernel.gram`: the full `(N1, N2)` kernel matrix from the stax
  `kernel_fn`.
* `ArchitectureKernel.paired`: `k(x1[i], x2[i])` for `M` matched pairs at a cost
  linear in `M`. Each pair is a 1x1 stax kernel, vectorised over pairs with
  `tf.vectorized_map`. Vectorisation drops `tf.custom_gradient`s (they keep the
  ReLU kernel's gradient finite on the diagonal, see `nt_gp.ops.arccos`), so
  derivatives of every order are formed per pair before vectorisation (see
  `nt_gp._vectorized_grad`).
"""
import collections
import functools
import inspect
from typing import Callable, Dict, Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf

from nt_gp import _config
from nt_gp import _domains
from nt_gp import _vectorized_grad
from nt_gp import nonfinite
from nt_gp.ops import watching
from nt_gp.validation import check_kernel_name, is_number

__all__ = ['ArchitectureKernel', 'check_names', 'cast_values']

# Compiled functions kept per kernel (one per input signature).
_MAX_COMPILED = 64


def check_names(architecture: Callable, names: Iterable[str],
                reserved: Sequence[str] = (), owner: str = 'NeuralKernel'):
  """Checks that `names` are the hyperparameters `architecture` accepts.

  Raises `TypeError` for a non-callable architecture, names that are not
  parameters of it, reserved names, and parameters without a default that are
  not given.
  """
  if not callable(architecture):
    raise TypeError(f'{owner}: `architecture` must be a function of the '
                    f'hyperparameters returning a stax network, got '
                    f'{architecture!r}.')
  names = list(names)
  for n in names:
    if n in reserved:
      raise TypeError(f'{owner}: `{n}` is a constructor argument and cannot be '
                      f'a hyperparameter name.')
  try:
    sig = inspect.signature(architecture)
  except (TypeError, ValueError):
    return
  params = sig.parameters
  if any(p.kind == p.VAR_KEYWORD for p in params.values()):
    return
  accepted = [n for n, p in params.items()
              if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
  unknown = [n for n in names if n not in accepted]
  if unknown:
    raise TypeError(f'{owner}: unknown hyperparameter(s) {unknown}: not '
                    f'parameters of the architecture function, whose '
                    f'parameters are {accepted}.')
  missing = [n for n, p in params.items()
             if p.default is p.empty and n not in names and
             p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY,
                        p.POSITIONAL_ONLY)]
  if missing:
    raise TypeError(f'{owner}: the architecture function needs the '
                    f'hyperparameter(s) {missing}; pass them as keyword '
                    f'arguments.')


def cast_values(values: Dict, dtype) -> Dict:
  """Casts tensor-valued hyperparameters to `dtype`; numbers stay numbers."""
  return {n: v if is_number(v) else tf.cast(v, dtype)
          for n, v in values.items()}


def _signature(value):
  """What a `tf.function` call would trace on: shape and dtype of tensors,
  the value of anything else."""
  if tf.is_tensor(value) or isinstance(value, (tf.Variable, np.ndarray)):
    return (tuple(value.shape), tf.as_dtype(value.dtype).name)
  return (type(value).__name__, value)


def _stopping(impl: Callable, watched: tuple, x1, *args):
  """`impl(x1, *args)` with the gradients of unwatched inputs stopped."""
  x1, args = watching.stop_unwatched((x1, args), watched)
  return impl(x1, *args)


class ArchitectureKernel:
  """Evaluates the NNGP or NTK of `architecture(**values)`.

  Args:
    architecture: function of the hyperparameters returning
      `(init_fn, apply_fn, kernel_fn)` (or only `kernel_fn`).
    get: `'nngp'` or `'ntk'`.
    owner: name used in error messages.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> k = ArchitectureKernel(lambda W_std: stax.Dense(1, W_std), 'nngp')
    >>> x = np.array([[1., 1.]])
    >>> float(k.gram(x, None, {'W_std': 2.})[0, 0])   # 2² · (x·x / 2)
    4.0
  """

  def __init__(self, architecture: Callable, get: str,
               owner: str = 'NeuralKernel'):
    self.architecture = architecture
    self.get = check_kernel_name(get)
    self.owner = owner
    self._compiled = collections.OrderedDict()
    self._checked_shapes = set()
    self._domains = {}

  def __deepcopy__(self, memo):
    # Compiled functions are not copyable; a copy compiles its own.
    return ArchitectureKernel(self.architecture, self.get, self.owner)

  def __getstate__(self):
    return {'architecture': self.architecture, 'get': self.get,
            'owner': self.owner}

  def __setstate__(self, state):
    self.__init__(**state)

  # --------------------------------------------------------------------------
  def build(self, values: Dict):
    """Returns `(init_fn, kernel_fn)` of the network at `values`."""
    net = self.architecture(**values)
    if callable(net) and not isinstance(net, (tuple, list)):
      return None, net
    if isinstance(net, (tuple, list)) and len(net) == 3 and callable(net[2]):
      return net[0], net[2]
    raise TypeError(f'{self.owner}: the architecture function must return a '
                    f'stax network `(init_fn, apply_fn, kernel_fn)`, got '
                    f'{type(net).__name__}.')

  def domains(self, values: Dict) -> Dict[str, str]:
    """`{name: 'positive' | 'non-negative' | 'real'}` (see `nt_gp._domains`),
    inferred once per set of names."""
    key = tuple(sorted(values))
    if key not in self._domains:
      self._domains[key] = _domains.infer(self.architecture, values)
    return dict(self._domains[key])

  def _check_feature_shape(self, init_fn, feature_shape):
    """Checks that the network accepts inputs of `feature_shape`."""
    feature_shape = tuple(feature_shape)
    if feature_shape in self._checked_shapes:
      return
    shape_fn = getattr(init_fn, 'shape_fn', None)
    if shape_fn is not None:
      try:
        shape_fn((1,) + feature_shape)
      except Exception as e:  # pylint: disable=broad-except
        raise ValueError(
            f'{self.owner}: the network does not accept inputs with feature '
            f'shape {feature_shape} (rank {len(feature_shape)}); check '
            f'`feature_ndims`/`input_shape`. The network said: {e}') from e
    self._checked_shapes.add(feature_shape)

  def _kernel(self, values, x1, x2):
    init_fn, kernel_fn = self.build(values)
    self._check_feature_shape(init_fn, x1.shape[1:])
    out = kernel_fn(x1, x2, self.get)
    if out.shape.rank != 2:
      raise ValueError(
          f'{self.owner}: the network\'s {self.get} has shape {out.shape}; a '
          f'kernel between inputs needs shape (N1, N2). End the network with a '
          f'readout such as stax.Flatten() or a global pooling before the '
          f'last Dense layer.')
    return out

  # --------------------------------------------------------------------------
  @tf.autograph.experimental.do_not_convert
  def run(self, key, impl: Callable, x1, *args):
    """`impl(x1, *args)`, inline when tracing, else as a cached `tf.function`.

    `key` identifies `impl`. The stax engine needs static shapes, so each
    input signature (shapes, dtypes, Python values) gets its own
    `tf.function`, traced once: a new input size costs one trace, as with a
    retracing `tf.function`, without TensorFlow's warning about frequent
    retracing (which would fire in ordinary use, e.g. a GP predicting on
    batches of different sizes). Tensor hyperparameters are arguments, so
    changing their values never retraces. AutoGraph is off: the kernel is
    plain TensorFlow, and converting the stax engine's Python inside a
    user's `tf.function` would only cost time.
    """
    if tf.inside_function():
      return impl(x1, *args)
    jit = _config.config.resolve_jit()
    # Inputs no tape watches (usually the data) get no gradient from the
    # compiled call (see `nt_gp.ops.watching`).
    watched = watching.watched_mask((x1, args))
    try:
      signature = tuple(_signature(v) for v in tf.nest.flatten((x1, args)))
      full_key = (key, jit, watched, signature)
      hash(full_key)
    except TypeError:
      full_key = (key, jit, watched)
    fn = self._compiled.pop(full_key, None)
    if fn is None:
      # A new callable each time (a partial: TensorFlow counts traces per
      # code object of a function, across `tf.function` objects).
      fn = tf.function(
          nonfinite.checked_after(functools.partial(_stopping, impl, watched)),
          autograph=False, jit_compile=jit)
      if len(self._compiled) >= _MAX_COMPILED:
        self._compiled.popitem(last=False)
    self._compiled[full_key] = fn
    out = fn(x1, *args)
    if jit:
      # XLA drops the kernel's own finiteness assertion inside `fn`.
      out = nonfinite.check_values((out,), (self.get,))[0]
    return out

  def gram(self, x1, x2: Optional[tf.Tensor], values: Dict) -> tf.Tensor:
    """Kernel matrix `(N1, N2)` between `x1: (N1, *F)` and `x2: (N2, *F)`.

    `x2=None` means `x2 = x1` (a symmetric matrix). `values` maps
    hyperparameter names to Python numbers or scalar tensors.
    """
    x1 = tf.convert_to_tensor(x1)
    x2 = None if x2 is None else tf.convert_to_tensor(x2, x1.dtype)
    return self.run('gram', self._gram_impl, x1, x2,
                     cast_values(values, x1.dtype))

  def _gram_impl(self, x1, x2, values):
    return self._kernel(values, x1, x2)

  def paired(self, x1, x2: Optional[tf.Tensor], values: Dict) -> tf.Tensor:
    """`k(x1[i], x2[i])` for `M` pairs, shape `(M,)`; cost linear in `M`.

    `x2=None` gives the diagonal `k(x1[i], x1[i])`.
    """
    x1 = tf.convert_to_tensor(x1)
    x2 = None if x2 is None else tf.convert_to_tensor(x2, x1.dtype)
    return self.run('paired', self._paired_impl, x1, x2,
                     cast_values(values, x1.dtype))

  def _paired_impl(self, x1, x2, values):
    tensor_names = [n for n, v in values.items() if not is_number(v)]
    numbers_ = {n: v for n, v in values.items() if is_number(v)}
    diagonal = x2 is None

    def one(a, b, tensors):
      vals = dict(numbers_, **dict(zip(tensor_names, tensors)))
      return self._kernel(vals, a[None], None if diagonal else b[None])[0, 0]

    if x1.shape[0] == 0:
      return tf.zeros([0], x1.dtype)
    if not diagonal and x1.shape[0] is not None and x2.shape[0] is not None \
        and x1.shape[0] != x2.shape[0]:
      raise ValueError(f'{self.owner}: paired inputs must have the same number '
                       f'of examples, got {x1.shape[0]} and {x2.shape[0]}.')

    tensors = [values[n] for n in tensor_names]
    if diagonal:
      return _vectorized_grad.vectorized(
          lambda a, *ts: one(a, None, ts), [x1], tensors)
    return _vectorized_grad.vectorized(
        lambda a, b, *ts: one(a, b, ts), [x1, x2], tensors)
