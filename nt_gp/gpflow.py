"""`NeuralKernel`: the NNGP/NTK of a `stax` network as a GPflow kernel.

Import explicitly (GPflow is only imported here)::

    import nt_gp.gpflow

Hyperparameters are `gpflow.Parameter`s with the transform of their domain
(positive, non-negative or real), so the kernel trains with
`gpflow.optimizers.Scipy`, `gpflow.optimizers.NaturalGradient` and Keras
optimizers in `GPR`, `SGPR`, `VGP` and `SVGP` (inducing points live in input
space).

    >>> import numpy as np
    >>> import gpflow
    >>> from nt_gp import stax
    >>> from nt_gp.gpflow import NeuralKernel
    >>> kernel = NeuralKernel(
    ...     lambda W_std, b_std: stax.serial(
    ...         stax.Dense(1, W_std, b_std), stax.Relu(),
    ...         stax.Dense(1, W_std, b_std)),
    ...     W_std=1.5, b_std=0.05)
    >>> X = np.random.RandomState(0).randn(10, 3)
    >>> Y = np.sin(X[:, :1])
    >>> model = gpflow.models.GPR((X, Y), kernel)
    >>> _ = gpflow.optimizers.Scipy().minimize(
    ...     model.training_loss, model.trainable_variables,
    ...     options=dict(maxiter=5))
"""
from typing import Callable, Dict, Optional, Sequence

import gpflow
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from check_shapes import inherit_check_shapes

from nt_gp import _domains
from nt_gp import _hyperkernel
from nt_gp import validation

__all__ = ['NeuralKernel']

_RESERVED = ('architecture', 'get', 'input_shape', 'priors', 'active_dims',
             'name')


class NeuralKernel(gpflow.kernels.Kernel):
  """NNGP or NTK of a `stax` network as a GPflow kernel.

  Args:
    architecture: function of the hyperparameters (keyword arguments)
      returning a stax network `(init_fn, apply_fn, kernel_fn)` whose kernel
      is a scalar per pair of inputs (e.g. ending with `Dense(1)`).
    get: `'nngp'` (default) or `'ntk'`.
    input_shape: shape of one input, e.g. `(8, 8, 1)` for images. As in
      `gpflow.kernels.Convolutional`, inputs arrive flattened as
      `(N, prod(input_shape))` and are reshaped to `(N, *input_shape)`.
      `None` means vector inputs `(N, D)`.
    priors: optional dict mapping hyperparameter names to priors
      (`tfp.distributions`); priors can also be set later via
      `kernel.<name>.prior`.
    active_dims: as for other GPflow kernels.
    name: module name.
    **hyperparameters: initial values of the architecture's parameters
      (numbers, or `gpflow.Parameter`s to control transforms). Each becomes
      an attribute `kernel.<name>`: a scalar `gpflow.Parameter` whose
      transform matches the domain the stax layers accept for it, found by
      building the network with the value -1, then 0: positive (a weight
      standard deviation; `gpflow.utilities.positive()`), non-negative (a
      bias standard deviation; `Softplus()`) or real (e.g. the slopes of
      `stax.ABRelu`; no transform). A non-negative hyperparameter given as
      exactly 0 is a constant (`trainable=False`, no transform): Softplus
      cannot represent 0, and a bias standard deviation at 0 has zero
      gradient in any case (the kernel depends on its square).

  Shapes and dtypes:
    `K(X, X2)`: `X: [batch..., N, D]`, `X2: [batch2..., N2, D]` ->
    `[batch..., N, batch2..., N2]` (or `[batch..., N, N]` without `X2`);
    `K_diag(X)`: `[batch..., N]`, computed in O(N) without the full matrix.
    `D = prod(input_shape)`. As for GPflow's own kernels, the kernel computes
    in its parameters' dtype (`gpflow.config.default_float()` unless given):
    inputs of another floating or integer dtype are cast to it.

  Derivatives of every order of `K` and `K_diag` with respect to inputs and
  hyperparameters are those of the kernel (see `nt_gp.tfp.NeuralKernel`
  for the points where it is not differentiable).

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> from nt_gp.gpflow import NeuralKernel
    >>> k = NeuralKernel(lambda W_std: stax.serial(
    ...     stax.Dense(1, W_std), stax.Relu(), stax.Dense(1, W_std)),
    ...     get='ntk', W_std=1.2)
    >>> X = np.random.RandomState(0).randn(4, 3)
    >>> k(X).shape, k(X, full_cov=False).shape
    (TensorShape([4, 4]), TensorShape([4]))
    >>> bool(np.allclose(k.K_diag(X), np.diag(k.K(X)), rtol=1e-6))
    True
  """

  def __init__(self,
               architecture: Callable,
               get: str = 'nngp',
               input_shape: Optional[Sequence[int]] = None,
               priors: Optional[Dict] = None,
               active_dims=None,
               name: Optional[str] = None,
               **hyperparameters):
    owner = 'nt_gp.gpflow.NeuralKernel'
    _hyperkernel.check_names(architecture, hyperparameters, _RESERVED,
                             owner=owner)
    validation.check_kernel_name(get)
    super().__init__(active_dims=active_dims, name=name)
    self._input_shape = _check_input_shape(input_shape)
    priors = dict(priors or {})
    unknown = [n for n in priors if n not in hyperparameters]
    if unknown:
      raise TypeError(f'{owner}: priors given for unknown hyperparameter(s) '
                      f'{unknown}; hyperparameters are '
                      f'{sorted(hyperparameters)}.')
    taken = set(dir(type(self))) | set(vars(self))
    for n in hyperparameters:
      if n in taken:
        raise TypeError(f'{owner}: `{n}` is an attribute of the kernel and '
                        f'cannot be a hyperparameter name; rename the '
                        f'architecture function\'s parameter.')
    self._hyperparameter_names = tuple(sorted(hyperparameters))
    self._architecture = architecture
    self._get = get
    self._arch_kernel = _hyperkernel.ArchitectureKernel(architecture, get,
                                                        owner=owner)
    self._domains = self._arch_kernel.domains(hyperparameters)
    for n in self._hyperparameter_names:
      setattr(self, n, _as_parameter(n, hyperparameters[n], priors.get(n),
                                     self._domains[n]))

  @property
  def architecture(self) -> Callable:
    """The architecture function."""
    return self._architecture

  @property
  def get(self) -> str:
    """`'nngp'` or `'ntk'`."""
    return self._get

  @property
  def input_shape(self) -> Optional[tuple]:
    """Shape of one (unflattened) input, or None for vectors."""
    return self._input_shape

  @property
  def hyperparameters(self) -> Dict[str, gpflow.Parameter]:
    """The hyperparameters by name."""
    return {n: getattr(self, n) for n in self._hyperparameter_names}

  @property
  def domains(self) -> Dict[str, str]:
    """`{name: 'positive' | 'non-negative' | 'real'}`."""
    return dict(self._domains)

  @property
  def dtype(self) -> tf.DType:
    """The dtype the kernel computes in: its parameters' dtype."""
    for n in self._hyperparameter_names:
      return getattr(self, n).dtype
    return tf.as_dtype(gpflow.config.default_float())

  def _values(self):
    return {n: tf.convert_to_tensor(getattr(self, n))
            for n in self._hyperparameter_names}

  def _as_input(self, X):
    """`X` as a tensor of the kernel's dtype."""
    X = tf.convert_to_tensor(X)
    if not (X.dtype.is_floating or X.dtype.is_integer) or \
        X.dtype.is_complex or X.dtype == tf.bool:
      raise TypeError(f'NeuralKernel: inputs must be real-valued, got dtype '
                      f'{X.dtype.name}.')
    validation.check_kernel_dtype(
        'NeuralKernel: the kernel (its parameters)', self.dtype,
        fix='make its parameters float64 or float32 (gpflow.config.'
            'set_default_float before creating the kernel)')
    return X if X.dtype == self.dtype else tf.cast(X, self.dtype)

  def _unflatten(self, X):
    """`[batch..., N, D]` -> `(prod(batch) N, *input_shape)`."""
    X = self._as_input(X)
    d = X.shape[-1]
    if self._input_shape is None:
      if d is None:
        raise ValueError('NeuralKernel: the input dimension must be known.')
      return tf.reshape(X, [-1, d])
    size = int(np.prod(self._input_shape))
    if d is not None and d != size:
      raise ValueError(f'NeuralKernel: inputs have {d} columns but '
                       f'input_shape={self._input_shape} needs {size} '
                       f'(inputs are flattened images).')
    return tf.reshape(X, (-1,) + self._input_shape)

  @inherit_check_shapes
  def K(self, X, X2=None) -> tf.Tensor:
    values = self._values()
    X = self._as_input(X)
    if X2 is None:
      batch = tf.shape(X)[:-2]
      if X.shape.rank == 2:
        return self._arch_kernel.gram(self._unflatten(X), None, values)
      n = tf.shape(X)[-2]
      flat = tf.reshape(X, tf.concat([[-1], tf.shape(X)[-2:]], 0))
      out = tf.map_fn(
          lambda x: self._arch_kernel.gram(self._unflatten(x), None, values),
          flat, fn_output_signature=X.dtype)
      return tf.reshape(out, tf.concat([batch, [n, n]], 0))
    X2 = self._as_input(X2)
    out = self._arch_kernel.gram(self._unflatten(X), self._unflatten(X2),
                                 values)
    return tf.reshape(out, tf.concat([tf.shape(X)[:-1], tf.shape(X2)[:-1]],
                                     0))

  @inherit_check_shapes
  def K_diag(self, X) -> tf.Tensor:
    X = self._as_input(X)
    out = self._arch_kernel.paired(self._unflatten(X), None, self._values())
    return tf.reshape(out, tf.shape(X)[:-1])


def _check_input_shape(input_shape):
  if input_shape is None:
    return None
  try:
    shape = tuple(int(d) for d in input_shape)
  except (TypeError, ValueError) as e:
    raise TypeError(f'`input_shape` must be a sequence of ints, got '
                    f'{input_shape!r}.') from e
  if not shape or any(d < 1 for d in shape) or any(
      isinstance(d, bool) for d in input_shape):
    raise ValueError(f'`input_shape` must be a non-empty sequence of positive '
                     f'ints, got {input_shape!r}.')
  return shape


def _as_parameter(name, value, prior, domain):
  """A scalar `gpflow.Parameter` for hyperparameter `name` in `domain`."""
  if isinstance(value, gpflow.Parameter):
    if value.shape.rank != 0:
      raise ValueError(f'Hyperparameter `{name}` must be a scalar, got shape '
                       f'{value.shape}.')
    if prior is not None:
      value.prior = prior
    return value
  _domains.check_value(name, value, domain)
  if isinstance(value, (tf.Variable,)) or hasattr(
      value, 'pretransformed_input'):
    value = tf.convert_to_tensor(value)
  arr = np.asarray(value, dtype=gpflow.config.default_float())
  if arr.ndim != 0:
    raise ValueError(f'Hyperparameter `{name}` must be a scalar, got shape '
                     f'{arr.shape}.')
  if not _domains.contains(domain, arr):
    raise ValueError(f'Hyperparameter `{name}` must be {domain}, got '
                     f'{float(arr)}.')
  if domain == _domains.NON_NEGATIVE and arr == 0:
    return gpflow.Parameter(arr, transform=None, trainable=False, prior=prior,
                            name=name)
  transform = {_domains.POSITIVE: gpflow.utilities.positive(),
               _domains.NON_NEGATIVE: tfp.bijectors.Softplus(),
               _domains.REAL: None}[domain]
  return gpflow.Parameter(arr, transform=transform, prior=prior, name=name)
