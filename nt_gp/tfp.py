"""`NeuralKernel`: the NNGP/NTK of a `stax` network as a TFP PSD kernel.

Import explicitly (TensorFlow Probability is only imported here)::

    import nt_gp.tfp

The kernel is a `tfp.math.psd_kernels.PositiveSemidefiniteKernel` whose
parameters are the named hyperparameters of an *architecture function*:

    >>> import numpy as np
    >>> import tensorflow_probability as tfp
    >>> from nt_gp import stax
    >>> from nt_gp.tfp import NeuralKernel
    >>> kernel = NeuralKernel(
    ...     lambda W_std, b_std: stax.serial(
    ...         stax.Dense(1, W_std, b_std), stax.Relu(),
    ...         stax.Dense(1, W_std, b_std)),
    ...     get='ntk',
    ...     W_std=tfp.util.TransformedVariable(1.5, tfp.bijectors.Softplus()),
    ...     b_std=0.05)
    >>> x = np.random.RandomState(0).randn(4, 3)
    >>> kernel.matrix(x, x).shape
    TensorShape([4, 4])

Shapes follow TFP: inputs are `batch + example + feature` with
`feature_ndims` feature axes (1 for vectors, 3 for `(H, W, C)` images).
Hyperparameters have event rank 0, so a hyperparameter of shape `[3]` gives a
kernel with batch shape `[3]`; each batch member's kernel is computed by the
stax engine with scalar hyperparameters.
"""
import functools
from typing import Callable

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp

from nt_gp import _hyperkernel

__all__ = ['NeuralKernel']

_RESERVED = ('architecture', 'get', 'feature_ndims', 'validate_args', 'name')
_SPECIALIZED = {}


def _specialize(cls, names):
  """The subclass of `cls` whose `_parameter_properties` lists `names`.

  TFP reads parameter properties from the class (`type(k).parameter_
  properties()`), so each set of hyperparameter names gets its own (cached)
  subclass, with a read-only property per hyperparameter.
  """
  key = (cls, names)
  if key not in _SPECIALIZED:
    taken = set(dir(cls))
    for n in names:
      if n in taken:
        raise TypeError(f'NeuralKernel: `{n}` is an attribute of the kernel '
                        f'class and cannot be a hyperparameter name; rename '
                        f'the architecture function\'s parameter.')
    attrs = {'_hyperparameter_names': names, '_specialized': True,
             '__module__': cls.__module__, '__doc__': cls.__doc__}
    for n in names:
      attrs[n] = property(functools.partial(_get_hyperparameter, name=n),
                          doc=f'Hyperparameter `{n}`.')
    sub = type(cls)(cls.__name__, (cls,), attrs)
    sub.__qualname__ = cls.__qualname__
    _SPECIALIZED[key] = sub
  return _SPECIALIZED[key]


def _get_hyperparameter(self, name):
  return self._hyperparameters[name]  # pylint: disable=protected-access


def _common_dtype(values):
  """The common floating dtype of the hyperparameters that have one."""
  dtypes = set()
  for v in values:
    dt = getattr(v, 'dtype', None)
    if dt is None:
      continue
    dt = tf.as_dtype(dt)
    if dt.is_floating:
      dtypes.add(dt)
  if len(dtypes) > 1:
    raise TypeError(f'NeuralKernel: hyperparameters have different dtypes '
                    f'{sorted(d.name for d in dtypes)}.')
  return dtypes.pop() if dtypes else None


def _is_python_number(v) -> bool:
  """A plain Python `int`/`float` (kept as is: cast when computing)."""
  return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_ref(v) -> bool:
  return isinstance(v, tf.Variable) or hasattr(v, 'pretransformed_input')


def _store(value, dtype):
  """A hyperparameter as stored, like TFP's kernels store parameters.

  Variables and `TransformedVariable`s are kept (read at each evaluation).
  With a known kernel `dtype`, other values become constants of that dtype;
  without one (all hyperparameters are Python numbers or lists), numbers stay
  Python numbers (cast to the inputs' dtype at full precision) and lists
  become float64 arrays.
  """
  if _is_ref(value):
    return value
  if dtype is not None:
    if tf.is_tensor(value):
      return value if value.dtype == dtype else tf.cast(value, dtype)
    return tf.constant(np.asarray(value, dtype=dtype.as_numpy_dtype))
  if _is_python_number(value) or tf.is_tensor(value):
    return value
  return np.asarray(value, dtype=np.float64)


class NeuralKernel(tfp.math.psd_kernels.PositiveSemidefiniteKernel):
  """NNGP or NTK of a `stax` network as a TFP positive semidefinite kernel.

  Args:
    architecture: function of the hyperparameters (as keyword arguments)
      returning a stax network `(init_fn, apply_fn, kernel_fn)` whose kernel
      is a scalar per pair of inputs (e.g. ending with `Dense(1)`).
    get: `'nngp'` (default) or `'ntk'`.
    feature_ndims: number of rightmost input axes forming one example: 1 for
      vectors `(..., D)`, 3 for images `(..., H, W, C)`.
    validate_args: if True, variable hyperparameters are asserted positive
      whenever the kernel is evaluated.
    name: name scope of the kernel's ops.
    **hyperparameters: values of the architecture's parameters: positive
      Python numbers, arrays, tensors, `tf.Variable`s or
      `tfp.util.TransformedVariable`s of any batch shape (event rank 0). They
      are cast to the inputs' dtype when the kernel is computed. Their
      default constraining bijector is `Softplus`.

  Shapes and dtypes:
    `matrix(x1, x2)`: `x1: B1 + [e1] + F`, `x2: B2 + [e2] + F` ->
    `broadcast(Bk, B1, B2) + [e1, e2]`; `apply` pairs examples (cost linear
    in their number); `tensor` concatenates example shapes. `F` has rank
    `feature_ndims`. Outputs have the inputs' floating dtype; `dtype` is the
    hyperparameters' common dtype (None when all are Python numbers).

  Example:
    >>> import numpy as np
    >>> import tensorflow_probability as tfp
    >>> from nt_gp import stax
    >>> from nt_gp.tfp import NeuralKernel
    >>> arch = lambda W_std: stax.serial(stax.Dense(1, W_std), stax.Relu(),
    ...                                  stax.Dense(1, W_std))
    >>> k = NeuralKernel(arch, W_std=np.array([1., 2.]))
    >>> k.batch_shape
    TensorShape([2])
    >>> x = np.random.RandomState(0).randn(5, 3)
    >>> k.matrix(x, x).shape
    TensorShape([2, 5, 5])
    >>> gp = tfp.distributions.GaussianProcess(k[0], index_points=x,
    ...                                        observation_noise_variance=0.1)
    >>> gp.sample(seed=1).shape
    TensorShape([5])
  """
  _hyperparameter_names = ()
  _specialized = False

  def __new__(cls, architecture=None, get='nngp', feature_ndims=1,
              validate_args=False, name='NeuralKernel', **hyperparameters):
    names = tuple(sorted(hyperparameters))
    target = cls
    if not (cls._specialized and cls._hyperparameter_names == names):
      base = cls
      while base._specialized:  # pylint: disable=protected-access
        base = base.__bases__[0]
      target = _specialize(base, names)
    return super().__new__(target)

  def __init__(self,
               architecture: Callable,
               get: str = 'nngp',
               feature_ndims: int = 1,
               validate_args: bool = False,
               name: str = 'NeuralKernel',
               **hyperparameters):
    parameters = dict(architecture=architecture, get=get,
                      feature_ndims=feature_ndims, validate_args=validate_args,
                      name=name, **hyperparameters)
    _hyperkernel.check_names(architecture, hyperparameters, _RESERVED,
                             owner='nt_gp.tfp.NeuralKernel')
    _hyperkernel.check_get(get)
    if isinstance(feature_ndims, bool) or not isinstance(
        feature_ndims, (int, np.integer)) or feature_ndims < 1:
      raise ValueError(f'`feature_ndims` must be an int >= 1 (1 for vectors, '
                       f'3 for images), got {feature_ndims!r}.')
    feature_ndims = int(feature_ndims)
    for n, v in hyperparameters.items():
      _hyperkernel.check_positive(n, v)
    with tf.name_scope(name):
      dtype = _common_dtype(hyperparameters.values())
      self._hyperparameters = {n: _store(v, dtype)
                               for n, v in hyperparameters.items()}
      self._architecture = architecture
      self._get = get
      self._arch_kernel = _architecture_kernel(architecture, get)
      super().__init__(feature_ndims, dtype=dtype, name=name,
                       validate_args=validate_args, parameters=parameters)

  @property
  def architecture(self) -> Callable:
    """The architecture function."""
    return self._architecture

  @property
  def get(self) -> str:
    """`'nngp'` or `'ntk'`."""
    return self._get

  @property
  def hyperparameters(self) -> dict:
    """Hyperparameters as given (numbers, arrays, tensors or variables)."""
    return dict(self._hyperparameters)

  @classmethod
  def _parameter_properties(cls, dtype):
    try:
      eps = np.finfo(tf.as_dtype(dtype).as_numpy_dtype).eps
    except (TypeError, ValueError):
      eps = np.finfo(np.float32).eps
    def softplus():
      return tfp.bijectors.Softplus(low=eps)
    return {n: tfp.util.ParameterProperties(
        event_ndims=0, default_constraining_bijector_fn=softplus)
            for n in cls._hyperparameter_names}

  def _parameter_control_dependencies(self, is_init):
    if not self.validate_args:
      return []
    assertions = []
    for n, v in self._hyperparameters.items():
      if _is_python_number(v) or isinstance(v, np.ndarray):
        continue
      if is_init != _is_ref(v):
        assertions.append(tf.debugging.assert_positive(
            v, message=f'Hyperparameter `{n}` must be positive.'))
    return assertions

  # --------------------------------------------------------------------------
  # Kernel evaluation.
  # --------------------------------------------------------------------------
  def _values(self):
    return {n: v if _is_python_number(v) else tf.convert_to_tensor(v)
            for n, v in self._hyperparameters.items()}

  def _evaluate(self, x1, x2, x1_example_ndims, x2_example_ndims, kind):
    same = x1 is x2
    x1 = self._as_input(x1)
    x2 = None if same else self._as_input(x2, x1.dtype)
    fn = functools.partial(
        _evaluate, self._arch_kernel, self.feature_ndims, kind,
        x1_example_ndims, x2_example_ndims)
    key = ('tfp', self.feature_ndims, kind, x1_example_ndims,
           x2_example_ndims)
    return self._arch_kernel.run(key, fn, x1, x2, self._values())

  def _as_input(self, x, dtype=None):
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
      if x.dtype.is_complex or x.dtype in (tf.string, tf.bool):
        raise TypeError(f'NeuralKernel inputs must be real-valued, got dtype '
                        f'{x.dtype.name}.')
      x = tf.cast(x, dtype or self.dtype or tf.float32)
    if dtype is not None and x.dtype != dtype:
      raise TypeError(f'NeuralKernel: `x1` and `x2` must have the same dtype, '
                      f'got {dtype.name} and {x.dtype.name}.')
    return x

  def _call_apply(self, x1, x2, example_ndims):
    if x1 is x2 and example_ndims == 0:
      # Keep `apply(x, x)` on the diagonal path (the base class expands
      # `x1` and `x2` separately).
      x = tf.expand_dims(x1, -(self.feature_ndims + 1))
      return tf.squeeze(self._apply(x, x, 1), axis=-1)
    return super()._call_apply(x1, x2, example_ndims)

  def _apply(self, x1, x2, example_ndims=1):
    return self._evaluate(x1, x2, example_ndims, example_ndims, 'apply')

  def _matrix(self, x1, x2):
    return self._evaluate(x1, x2, 1, 1, 'outer')

  def _tensor(self, x1, x2, x1_example_ndims, x2_example_ndims):
    return self._evaluate(x1, x2, x1_example_ndims, x2_example_ndims, 'outer')


@functools.lru_cache(maxsize=None)
def _architecture_kernel_cached(architecture, get):
  return _hyperkernel.ArchitectureKernel(architecture, get,
                                         owner='nt_gp.tfp.NeuralKernel')


def _architecture_kernel(architecture, get):
  """One `ArchitectureKernel` (and compiled functions) per architecture."""
  try:
    return _architecture_kernel_cached(architecture, get)
  except TypeError:  # unhashable callable
    return _hyperkernel.ArchitectureKernel(architecture, get,
                                           owner='nt_gp.tfp.NeuralKernel')


# ----------------------------------------------------------------------------
# Batched evaluation (runs inside one graph).
# ----------------------------------------------------------------------------
def _split_shape(x, example_ndims, feature_ndims, name):
  rank = x.shape.rank
  if rank is None:
    raise ValueError(f'NeuralKernel: `{name}` must have a known rank.')
  if rank < example_ndims + feature_ndims:
    raise ValueError(
        f'NeuralKernel: `{name}` has shape {x.shape} (rank {rank}), but '
        f'feature_ndims={feature_ndims} and {example_ndims} example axes need '
        f'rank >= {example_ndims + feature_ndims}.')
  nb = rank - example_ndims - feature_ndims
  return x.shape[:nb], x.shape[nb:rank - feature_ndims], x.shape[
      rank - feature_ndims:]


def _broadcast_static(shapes, what):
  out = tf.TensorShape([])
  for s in shapes:
    try:
      out = tf.broadcast_static_shape(out, s)
    except ValueError as e:
      raise ValueError(f'NeuralKernel: batch shapes {[list(t) for t in shapes]}'
                       f' of {what} do not broadcast.') from e
  return out


def _dims(x, lo, hi):
  """`x.shape[lo:hi]` as a Python list if known, else as an int32 tensor."""
  part = x.shape[lo:hi]
  if part.is_fully_defined():
    return tf.constant(part.as_list(), tf.int32)
  return tf.shape(x)[lo:hi]


def _evaluate(arch, feature_ndims, kind, e1, e2, x1, x2, values):
  """`kind='outer'`: `B + E1 + E2`; `kind='apply'`: `B + broadcast(E1, E2)`."""
  same = x2 is None
  b1, ex1, f1 = _split_shape(x1, e1, feature_ndims, 'x1')
  if same:
    x2, b2, ex2, f2 = x1, b1, ex1, f1
  else:
    b2, ex2, f2 = _split_shape(x2, e2, feature_ndims, 'x2')
    if f1.is_fully_defined() and f2.is_fully_defined() and f1 != f2:
      raise ValueError(f'NeuralKernel: `x1` and `x2` have different feature '
                       f'shapes {f1} and {f2} (feature_ndims={feature_ndims}).')
  if not f1.is_fully_defined():
    raise ValueError(f'NeuralKernel: the feature shape {f1} of the inputs '
                     f'must be known statically.')
  features = f1.as_list()
  dtype = x1.dtype
  values = _hyperkernel.cast_values(values, dtype)
  tensor_names = [n for n, v in values.items() if tf.is_tensor(v)]
  hp_shapes = [values[n].shape for n in tensor_names]
  batch = _broadcast_static([b1, b2] + hp_shapes,
                            'the inputs and the hyperparameters')
  ex1_t = _dims(x1, b1.rank, b1.rank + e1)
  ex2_t = _dims(x2, b2.rank, b2.rank + e2)
  if kind == 'apply':
    try:
      example = tf.broadcast_static_shape(ex1, ex2)
    except ValueError as e:
      raise ValueError(f'NeuralKernel.apply: example shapes {ex1} and {ex2} '
                       f'do not broadcast.') from e
    example_t = (tf.constant(example.as_list(), tf.int32)
                 if example.is_fully_defined() else
                 tf.broadcast_dynamic_shape(ex1_t, ex2_t))
  else:
    example = ex1.concatenate(ex2)
    example_t = tf.concat([ex1_t, ex2_t], 0)

  def member(xa, xb, vals):
    """One batch member: `xa: E1 + F`, `xb: E2 + F` (or None if `x2 = x1`)."""
    if kind == 'outer':
      a = tf.reshape(xa, [-1] + features)
      b = None if xb is None else tf.reshape(xb, [-1] + features)
      out = arch.gram(a, b, vals)
    elif xb is None:
      out = arch.paired(tf.reshape(xa, [-1] + features), None, vals)
    else:
      if ex1 == ex2 and ex1.is_fully_defined():
        a, b = xa, xb
      else:
        shape = tf.concat([example_t, features], 0)
        a, b = tf.broadcast_to(xa, shape), tf.broadcast_to(xb, shape)
      out = arch.paired(tf.reshape(a, [-1] + features),
                        tf.reshape(b, [-1] + features), vals)
    return tf.reshape(out, example_t)

  if example.is_fully_defined() and example.num_elements() == 0:
    if not batch.is_fully_defined():
      raise ValueError('NeuralKernel: empty example shapes need a static '
                       'batch shape.')
    return tf.zeros(batch.concatenate(example), dtype)

  if batch.is_fully_defined() and batch.num_elements() == 1:
    xa = tf.reshape(x1, tf.concat([ex1_t, features], 0))
    xb = None if same else tf.reshape(x2, tf.concat([ex2_t, features], 0))
    vals = {n: (tf.reshape(v, []) if tf.is_tensor(v) else v)
            for n, v in values.items()}
    out = member(xa, xb, vals)
    if batch.rank:
      out = tf.reshape(out, tf.concat([batch.as_list(), example_t], 0))
    return out

  if batch.is_fully_defined():
    batch_t = tf.constant(batch.as_list(), tf.int32)
  else:
    batch_t = tf.constant([], tf.int32)
    for t, p in [(x1, b1), (x2, b2)] + [
        (values[n], s) for n, s in zip(tensor_names, hp_shapes)]:
      batch_t = tf.broadcast_dynamic_shape(batch_t, tf.shape(t)[:p.rank])
  nb = tf.reduce_prod(batch_t)

  def stack(t, t_batch, rest_t):
    """`t: t_batch + rest` as `[nb] + rest`, or None if loop-invariant."""
    if t_batch.is_fully_defined() and t_batch.num_elements() == 1:
      return None
    full = tf.broadcast_to(t, tf.concat([batch_t, rest_t], 0))
    return tf.reshape(full, tf.concat([[nb], rest_t], 0))

  inv, stacked = {}, {}
  inputs = [('x1', x1, b1, tf.concat([ex1_t, features], 0))]
  if not same:
    inputs.append(('x2', x2, b2, tf.concat([ex2_t, features], 0)))
  for key, t, t_batch, rest_t in inputs:
    s = stack(t, t_batch, rest_t)
    if s is None:
      inv[key] = tf.reshape(t, rest_t)
    else:
      stacked[key] = s
  empty = tf.constant([], tf.int32)
  for n, v in values.items():
    s = stack(v, v.shape, empty) if tf.is_tensor(v) else None
    if s is None:
      inv[n] = tf.reshape(v, []) if tf.is_tensor(v) else v
    else:
      stacked[n] = s

  def body(elems):
    d = dict(inv, **elems)
    return member(d['x1'], None if same else d['x2'],
                  {n: d[n] for n in values})

  out = tf.map_fn(body, stacked,
                  fn_output_signature=tf.TensorSpec(example, dtype))
  return tf.reshape(out, tf.concat([batch_t, example_t], 0))
