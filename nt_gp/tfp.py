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

TFP reads a kernel's parameters from its class (`type(k).parameter_
properties()`), so each set of hyperparameter names and domains has its own
subclass of `NeuralKernel`, made on demand. These subclasses pickle by
reference to that recipe (`NeuralKernel.for_architecture` returns the one of
an architecture, e.g. for `tfp.experimental.util.make_trainable`).
"""
import abc
import copyreg
import functools
import inspect
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from tensorflow_probability.python.internal import dtype_util
from tensorflow_probability.python.internal import tensor_util
from tensorflow_probability.python.math.psd_kernels.internal import (
    util as psd_util)

from nt_gp import _domains
from nt_gp import _hyperkernel
from nt_gp import validation
from nt_gp._tfp_batch import evaluate as _evaluate

__all__ = ['NeuralKernel']

_RESERVED = ('architecture', 'get', 'feature_ndims', 'validate_args', 'name')
_SPECIALIZED = {}


class _NeuralKernelType(abc.ABCMeta):
  """Metaclass of `NeuralKernel` and its per-hyperparameter subclasses."""


def _reduce_kernel_class(cls):
  """Pickles `NeuralKernel` by name and a subclass as its recipe."""
  if not cls.__dict__.get('_specialized', False):
    return cls.__qualname__
  return _specialize, (cls.__bases__[0], cls._hyperparameter_names,  # pylint: disable=protected-access
                       cls._domains)  # pylint: disable=protected-access


copyreg.pickle(_NeuralKernelType, _reduce_kernel_class)


def _specialize(cls, names, domains):
  """The subclass of `cls` whose `_parameter_properties` lists `names`.

  `domains[i]` is the domain of `names[i]` ('positive', 'non-negative' or
  'real'), which sets its default constraining bijector. One (cached)
  subclass per `(names, domains)`, with a read-only property per
  hyperparameter.
  """
  key = (cls, names, domains)
  if key not in _SPECIALIZED:
    taken = set(dir(cls))
    for n in names:
      if n in taken:
        raise TypeError(f'NeuralKernel: `{n}` is an attribute of the kernel '
                        f'class and cannot be a hyperparameter name; rename '
                        f'the architecture function\'s parameter.')
    attrs = {'_hyperparameter_names': names, '_domains': domains,
             '_specialized': True, '__module__': cls.__module__,
             '__doc__': cls.__doc__}
    for n in names:
      attrs[n] = property(functools.partial(_get_hyperparameter, name=n),
                          doc=f'Hyperparameter `{n}`.')
    sub = type(cls)(cls.__name__, (cls,), attrs)
    sub.__qualname__ = cls.__qualname__
    _SPECIALIZED[key] = sub
  return _SPECIALIZED[key]


def _get_hyperparameter(self, name):
  return self._hyperparameters[name]  # pylint: disable=protected-access


def _is_python_number(v) -> bool:
  """A plain Python `int`/`float` (kept as is: cast when computing); numpy
  scalars have a dtype."""
  return isinstance(v, (int, float)) and not isinstance(v, (bool, np.generic))


def _has_dtype(v) -> bool:
  """Whether `v` brings a dtype (Python numbers and lists do not)."""
  return not (_is_python_number(v) or isinstance(v, (list, tuple)))


def _bijector(domain, dtype):
  """Default constraining bijector of a hyperparameter's domain (as TFP's
  own kernels: `Softplus(low=eps)` for positive parameters, `Softplus()` for
  non-negative ones)."""
  if domain == _domains.POSITIVE:
    return tfp.bijectors.Softplus(low=dtype_util.eps(dtype))
  if domain == _domains.NON_NEGATIVE:
    return tfp.bijectors.Softplus()
  return tfp.bijectors.Identity()


class NeuralKernel(tfp.math.psd_kernels.PositiveSemidefiniteKernel,
                   metaclass=_NeuralKernelType):
  """NNGP or NTK of a `stax` network as a TFP positive semidefinite kernel.

  Args:
    architecture: function of the hyperparameters (as keyword arguments)
      returning a stax network `(init_fn, apply_fn, kernel_fn)` whose kernel
      is a scalar per pair of inputs (e.g. ending with `Dense(1)`). Kernels
      pickle if it does (a module-level function, not a lambda).
    get: `'nngp'` (default) or `'ntk'`.
    feature_ndims: number of rightmost input axes forming one example: 1 for
      vectors `(..., D)`, 3 for images `(..., H, W, C)`.
    validate_args: if True, variable hyperparameters are asserted to be in
      their domains whenever the kernel is evaluated.
    name: name scope of the kernel's ops.
    **hyperparameters: values of the architecture's parameters: Python
      numbers, arrays, tensors, `tf.Variable`s or
      `tfp.util.TransformedVariable`s of any batch shape (event rank 0).
      Each has the domain the stax layers accept for it: positive (a weight
      standard deviation), non-negative (a bias standard deviation, which
      may be 0) or real (e.g. the slopes of `stax.ABRelu`), found by
      building the network with the value -1, then 0. The domain sets the
      default constraining bijector in `parameter_properties`:
      `Softplus(low=eps)`, `Softplus()` or `Identity()`.

  Shapes and dtypes:
    `matrix(x1, x2)`: `x1: B1 + [e1] + F`, `x2: B2 + [e2] + F` ->
    `broadcast(Bk, B1, B2) + [e1, e2]`; `apply` pairs examples (cost linear
    in their number); `tensor` concatenates example shapes. `F` has rank
    `feature_ndims`.

    As for TFP's own kernels, `dtype` is the common dtype of the
    hyperparameters that have one (arrays, tensors, variables), and a kernel
    with a dtype computes in it: inputs of another floating or integer dtype
    are cast (float64 hyperparameters and float32 inputs give float64).
    Python numbers and lists have no dtype; if all hyperparameters are such,
    `dtype` is None and floating inputs keep their dtype (integer inputs
    become float32, TFP's default).

  Derivatives of every order (with respect to inputs and hyperparameters,
  eagerly, in `tf.function` and with `jit_compile=True`) are those of the
  kernel, also through `apply`'s paired path. Where the kernel is not
  differentiable they follow neural-tangents: the ReLU-family maps at
  exactly coincident (or parallel) inputs take the derivative of
  arccos(c) at c = 1 as zero, which is right for `k(x, x)` as a function of
  `x` and of the hyperparameters, while d²k(x, x')/dx dx' at x = x' is
  undefined.

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
  _domains = ()
  _specialized = False

  def __new__(cls, architecture=None, get='nngp', feature_ndims=1,
              validate_args=False, name='NeuralKernel', **hyperparameters):
    if architecture is None and cls._specialized:
      # Unpickling (`cls.__new__(cls)`), or a missing architecture that
      # `__init__` reports.
      return super().__new__(cls)
    names = tuple(sorted(hyperparameters))
    base = cls
    while base._specialized:  # pylint: disable=protected-access
      base = base.__bases__[0]
    domains = cls._domains_of(architecture, get, hyperparameters)
    target = _specialize(base, names, tuple(domains[n] for n in names))
    return super().__new__(target)

  @staticmethod
  def _domains_of(architecture, get, hyperparameters) -> Dict[str, str]:
    if not callable(architecture):
      return {n: _domains.POSITIVE for n in hyperparameters}
    try:
      return _architecture_kernel(architecture, get).domains(hyperparameters)
    except (TypeError, ValueError):  # invalid `get`: reported by __init__
      return _domains.infer(architecture, hyperparameters)

  @classmethod
  def for_architecture(cls, architecture: Callable, **values):
    """The `NeuralKernel` class of an architecture's hyperparameters.

    Its `parameter_properties()` lists every parameter of `architecture`,
    with the default bijector of its domain, which is what
    `tfp.experimental.util.make_trainable` needs.

    Args:
      architecture: the architecture function.
      **values: values used to find the domains (defaults: the function's
        own defaults, else 1).

    Example:
      >>> import tensorflow as tf
      >>> import tensorflow_probability as tfp
      >>> from nt_gp import stax
      >>> from nt_gp.tfp import NeuralKernel
      >>> def mlp(W_std, b_std):
      ...   return stax.serial(stax.Dense(1, W_std, b_std), stax.Relu(),
      ...                      stax.Dense(1, W_std, b_std))
      >>> cls = NeuralKernel.for_architecture(mlp)
      >>> sorted(cls.parameter_properties())
      ['W_std', 'b_std']
      >>> k = tfp.experimental.util.make_trainable(
      ...     cls, initial_parameters={'W_std': 1.5, 'b_std': 0.1},
      ...     parameter_dtype=tf.float64, architecture=mlp, get='ntk')
      >>> len(k.trainable_variables)
      2
    """
    try:
      params = inspect.signature(architecture).parameters
    except (TypeError, ValueError) as e:
      raise TypeError(f'NeuralKernel.for_architecture: cannot read the '
                      f'parameters of {architecture!r}.') from e
    names = [n for n, p in params.items()
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    probe = {n: values.get(n, 1. if params[n].default is params[n].empty
                           else params[n].default) for n in names}
    _hyperkernel.check_names(architecture, probe, _RESERVED,
                             owner='nt_gp.tfp.NeuralKernel')
    domains = _domains.infer(architecture, probe)
    base = cls
    while base._specialized:  # pylint: disable=protected-access
      base = base.__bases__[0]
    names = tuple(sorted(names))
    return _specialize(base, names, tuple(domains[n] for n in names))

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
    owner = 'nt_gp.tfp.NeuralKernel'
    try:
      _hyperkernel.check_names(architecture, hyperparameters, _RESERVED,
                               owner=owner)
    except TypeError as e:
      if 'needs the hyperparameter' in str(e):
        raise TypeError(
            f'{e} (tfp.experimental.util.make_trainable creates the '
            f'hyperparameters listed by the class\'s parameter_properties: '
            f'pass it NeuralKernel.for_architecture(architecture).)') from None
      raise
    validation.check_kernel_name(get)
    if isinstance(feature_ndims, bool) or not isinstance(
        feature_ndims, (int, np.integer)) or feature_ndims < 1:
      raise ValueError(f'`feature_ndims` must be an int >= 1 (1 for vectors, '
                       f'3 for images), got {feature_ndims!r}.')
    feature_ndims = int(feature_ndims)
    domains = dict(zip(self._hyperparameter_names, self._domains))
    for n, v in hyperparameters.items():
      _domains.check_value(n, v, domains[n])
    with tf.name_scope(name):
      try:
        dtype = psd_util.maybe_get_common_dtype(
            [v if _has_dtype(v) else None for v in hyperparameters.values()])
      except TypeError as e:
        raise TypeError(f'{owner}: hyperparameters have different dtypes '
                        f'({e}); give them one dtype.') from None
      if dtype is not None:
        validation.check_kernel_dtype(
            f'{owner}: a hyperparameter', dtype,
            fix='give the hyperparameters float32 or float64 values')
      self._hyperparameters = {
          n: self._store(n, v, dtype) for n, v in hyperparameters.items()}
      self._architecture = architecture
      self._get = get
      self._arch_kernel = _architecture_kernel(architecture, get)
      super().__init__(feature_ndims, dtype=dtype, name=name,
                       validate_args=validate_args, parameters=parameters)

  @staticmethod
  def _store(name, value, dtype):
    """A hyperparameter as stored: as TFP's kernels store parameters
    (`convert_nonref_to_tensor`: variables are kept and read at each
    evaluation) when the kernel has a dtype; without one, Python numbers
    stay numbers (cast to the inputs' dtype at full precision) and lists
    become float64 arrays."""
    if dtype is None and _is_python_number(value):
      return value
    if dtype is None and isinstance(value, (list, tuple)):
      return np.asarray(value, dtype=np.float64)
    return tensor_util.convert_nonref_to_tensor(value, dtype=dtype, name=name)

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
    """Hyperparameters as stored (numbers, arrays, tensors or variables)."""
    return dict(self._hyperparameters)

  @property
  def domains(self) -> Dict[str, str]:
    """`{name: 'positive' | 'non-negative' | 'real'}`."""
    return dict(zip(self._hyperparameter_names, self._domains))

  @classmethod
  def _parameter_properties(cls, dtype):
    return {n: tfp.util.ParameterProperties(
        event_ndims=0,
        default_constraining_bijector_fn=functools.partial(
            _bijector, d, dtype or tf.float32))
            for n, d in zip(cls._hyperparameter_names, cls._domains)}

  def _parameter_control_dependencies(self, is_init):
    if not self.validate_args:
      return []
    assertions = []
    for n, d in self.domains.items():
      v = self._hyperparameters[n]
      if d == _domains.REAL or _is_python_number(v) or isinstance(
          v, np.ndarray):
        continue
      if is_init != tensor_util.is_ref(v):
        check = (tf.debugging.assert_positive if d == _domains.POSITIVE else
                 tf.debugging.assert_non_negative)
        assertions.append(check(v, message=f'Hyperparameter `{n}` must be '
                                           f'{d}.'))
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

  def _as_input(self, x, dtype: Optional[tf.DType] = None):
    """`x` as a tensor of the kernel's dtype (see the class docstring)."""
    x = tf.convert_to_tensor(x)
    if not (x.dtype.is_floating or x.dtype.is_integer) or x.dtype.is_complex \
        or x.dtype == tf.bool:
      raise TypeError(f'NeuralKernel inputs must be real-valued, got dtype '
                      f'{x.dtype.name}.')
    target = self.dtype or dtype or (
        x.dtype if x.dtype.is_floating else tf.float32)
    if x.dtype.is_floating and target == x.dtype:
      validation.check_kernel_dtype(
          'NeuralKernel: an input', x.dtype,
          fix='cast it, e.g. tf.cast(x, tf.float32), or give the '
              'kernel float32 or float64 hyperparameters (inputs are cast '
              'to them)')
    if self.dtype is None and dtype is not None and x.dtype.is_floating \
        and x.dtype != dtype:
      raise TypeError(f'NeuralKernel: `x1` and `x2` must have the same dtype, '
                      f'got {dtype.name} and {x.dtype.name}.')
    return x if x.dtype == target else tf.cast(x, target)

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
