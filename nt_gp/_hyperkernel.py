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
  ReLU kernel's gradient finite on the diagonal, see `nt_gp.ops.arccos`), so the
  pairs carry their own custom gradient: the backward pass vectorises the
  per-pair gradients, which are formed before vectorisation and hence use the
  custom gradients.
"""
import inspect
import numbers
from typing import Callable, Dict, Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf

from nt_gp import _config

__all__ = ['ArchitectureKernel', 'GETS', 'check_get', 'check_names',
           'check_positive', 'is_number', 'cast_values']

GETS = ('nngp', 'ntk')


def is_number(v) -> bool:
  """True for Python / numpy real scalars (not bools)."""
  return isinstance(v, (numbers.Real, np.number)) and not isinstance(
      v, (bool, np.bool_))


def check_get(get) -> str:
  """Validates `get` ('nngp' or 'ntk') and returns it."""
  if not isinstance(get, str):
    raise TypeError(f'`get` must be "nngp" or "ntk", got {get!r}.')
  if get not in GETS:
    raise ValueError(f'`get` must be "nngp" or "ntk", got {get!r}.')
  return get


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


def check_positive(name: str, value):
  """Raises `ValueError` if a concrete hyperparameter value is not positive.

  Numbers, lists, numpy arrays and eager tensors are checked; variables (whose
  values change) are not.
  """
  if isinstance(value, (bool, np.bool_, str, bytes)):
    raise TypeError(f'Hyperparameter `{name}` must be a positive number or '
                    f'a float tensor, got {value!r}.')
  if isinstance(value, tf.Variable) or hasattr(value, 'pretransformed_input'):
    return
  if isinstance(value, tf.Tensor):
    if not hasattr(value, 'numpy'):
      return
    arr = value.numpy()
  elif is_number(value) or isinstance(value, (list, tuple, np.ndarray)):
    try:
      arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
      raise TypeError(f'Hyperparameter `{name}` must be numeric, got '
                      f'{value!r}.') from e
  else:
    return
  if arr.dtype.kind not in 'fiu':
    raise TypeError(f'Hyperparameter `{name}` must be real-valued, got dtype '
                    f'{arr.dtype}.')
  if not np.all(np.isfinite(arr)) or not np.all(arr > 0):
    raise ValueError(f'Hyperparameter `{name}` must be positive and finite, '
                     f'got {arr.tolist()}.')


def cast_values(values: Dict, dtype) -> Dict:
  """Casts tensor-valued hyperparameters to `dtype`; numbers stay numbers."""
  return {n: v if is_number(v) else tf.cast(v, dtype)
          for n, v in values.items()}


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
    self.get = check_get(get)
    self.owner = owner
    self._compiled = {}
    self._checked_shapes = set()

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

    `key` identifies `impl` (one compiled function per key and compilation
    mode), so eager calls with new hyperparameter values do not retrace.
    AutoGraph is off: the kernel is plain TensorFlow, and converting the stax
    engine's Python inside a user's `tf.function` would only cost time.
    """
    if tf.inside_function():
      return impl(x1, *args)
    jit = _config.config.resolve_jit()
    key = (key, jit)
    if key not in self._compiled:
      self._compiled[key] = tf.function(impl, autograph=False,
                                        jit_compile=jit)
    return self._compiled[key](x1, *args)

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

    @tf.custom_gradient
    def pairs(x1, x2, *tensors):
      value = tf.vectorized_map(lambda ab: one(ab[0], ab[1], tensors),
                                (x1, x2))

      def grad(dy):
        def one_grad(args):
          # `stop_gradient` hides the inputs from outer tapes: with a second
          # tape watching, TensorFlow would wrap the stax graph's conditionals
          # (assertions) in function calls, which cannot be vectorised. (So
          # `paired` has no second derivatives.)
          a, b, d = (tf.stop_gradient(t) for t in args)
          ts = [tf.stop_gradient(t) for t in tensors]
          with tf.GradientTape() as tape:
            tape.watch([a, b] + ts)
            v = one(a, b, ts)
          return tape.gradient(v, [a, b] + ts, output_gradients=d,
                               unconnected_gradients=tf.UnconnectedGradients.ZERO)
        ga, gb, *gt = tf.vectorized_map(one_grad, (x1, x2, dy))
        return [ga, gb] + [tf.reduce_sum(g, axis=0) for g in gt]
      return value, grad

    tensors = [values[n] for n in tensor_names]
    # With `x2=None` the second input of each pair is unused (a placeholder of
    # the same leading size keeps the vectorised structure simple).
    out = pairs(x1, x1 if diagonal else x2, *tensors)
    return out
