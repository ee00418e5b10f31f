"""The infinite-width kernels of Keras 3 models.

Import explicitly (Keras is imported here, TFP and GPflow only by the
functions that need them)::

    import nt_gp.keras

`kernel_fn_from_model` reads a built `keras.Sequential` or functional model
and returns the `stax` network `(init_fn, apply_fn, kernel_fn)` of its
infinite-width version: the same graph of layers (branches, shared tensors and
merges included, nested models inlined) with every weight layer's width sent
to infinity, weights `W ~ N(0, W_std² / fan_in)` and biases
`b ~ N(0, b_std²)`. `tfp_kernel_from_model` and `gpflow_kernel_from_model`
wrap it as a TFP or GPflow kernel whose `W_std`/`b_std` are trainable.

Supported layers (Keras 3):

| Keras | stax |
|---|---|
| `InputLayer`, `Dropout` (and `SpatialDropout*`, `GaussianNoise`, `GaussianDropout`, `AlphaDropout`), `Identity`, `ActivityRegularization` | identity (inference) |
| `Dense` (any input rank, acting on the last axis) | `Dense` |
| `Conv1D/2D/3D` (`padding` valid/same, `strides`, `data_format`, `use_bias`) | `Conv` |
| `Conv1DTranspose/2DTranspose/3DTranspose` (same options) | `ConvTranspose` |
| `AveragePooling1D/2D/3D` (same padding averages non-padded entries) | `AvgPool` |
| `GlobalAveragePooling1D/2D/3D`, `Flatten` | `GlobalAvgPool`, `Flatten` |
| `LayerNormalization` (over axes including the channels) | `LayerNorm`, plus the NTK of its trained scale and offset (see below) |
| `Activation`, `activation=`, `ReLU`, `LeakyReLU`, `ELU` | see below |
| `Add`, `Subtract`, `Average`, `Multiply`, `Concatenate` (and `+`, `-`, `*` of tensors) | `FanInSum`, `FanInProd`, `FanInConcat` |
| `Rescaling` (scalar scale, no offset) | multiplication by a constant |

Activations: `relu` (and `ReLU` without `max_value`/`threshold`),
`leaky_relu`, exact `gelu`, `exponential`, and the TensorFlow/`keras.ops`
functions `sin`, `cos`, `erf`, `abs`, `sign` have closed-form kernels. Every
other elementwise Keras activation (`tanh`, `sigmoid`, `softplus`, `softsign`,
`elu`, `selu`, `silu`/`swish`, `mish`, `celu`, `gelu(approximate=True)`,
`relu6`, `hard_sigmoid`, `hard_silu`, `hard_tanh`, `log_sigmoid`,
`soft_shrink`, `tanh_shrink`, `sparse_plus`, `sparse_sigmoid`, `squareplus`,
`ReLU(max_value=...)`) gets the exact kernel of the Keras function by
Gauss–Hermite quadrature (`stax.ElementwiseNumerical`, `quadrature_deg`
nodes per dimension, `quadrature_deg²` evaluations per kernel entry). Its
accuracy depends on the smoothness of the function and on the pre-activation
variance `q`; largest relative errors of NNGP / NTK measured at the default
`quadrature_deg=64` (against 150 nodes):

| activation | `q = 1` | `q = 4` |
|---|---|---|
| `sigmoid`, `softplus`, `silu`, `mish`, `gelu(approximate=True)` | < 1e-11 | < 5e-6 |
| `tanh` | 1e-7 | 2e-3 |
| `elu`, `selu`, `relu6`, `hard_sigmoid` (kinks) | 4e-3 | 1e-2 |
| `softsign` | 2e-2 | 7e-2 |

Raise `quadrature_deg` for large variances or kinks (the cost grows as its
square). No sigmoid is replaced by the erf-based `stax.Sigmoid_like`
approximation. `softmax`, `log_softmax`, `glu` and
`sparsemax` are not elementwise, `hard_shrink` and `threshold` are
discontinuous: they raise.

Rules that follow from the infinite-width limit (each raises a `ValueError`
naming the Keras layer):

* Nonlinearities and `LayerNormalization` need a Gaussian input: the output of
  a `Dense`/convolution layer, possibly pooled, added, rescaled or
  normalised. Two activations in a row, or an activation on a network input,
  are rejected.
* The branches of `Add`/`Subtract`/`Average`, `Multiply` and of a
  `Concatenate` along a spatial axis must be uncorrelated: each must depend on
  the shared tensors only through weight layers of its own (`Add()([x, x])`
  or a tensor added to its own average pool are rejected). At most one
  summand may be a non-Gaussian tensor (e.g. a ReLU shortcut, as in ResNets).
* A layer with weights may be called only once (shared weights correlate
  their outputs).
* Max pooling, batch normalisation, recurrent and attention layers, depthwise
  and dilated or grouped convolutions, `Embedding`, `Lambda` and custom
  layers have no kernel here; `layer_kernels={'layer_name': stax layer}`
  supplies one for a custom or `Lambda` layer, `activation_kernels={fn: stax
  layer}` for a custom activation function.

The widths of the Keras layers only matter where they set relative weights:
`Concatenate` along channels averages its inputs' kernels weighted by their
widths, and `parameterization='standard'` uses every width, as
`stax.Dense(..., parameterization='standard')` does.

`LayerNormalization`'s scale `gamma` and offset `beta` start at 1 and 0 (the
NNGP is `stax.LayerNorm`'s) and are trained: `beta` adds 1 to the NTK of the
normalised tensor; the gradient of `gamma_c` is the normalised activation
`u_c` itself, so where the normalised tensor reaches only weight layers (or
the output) through linear layers it adds `nngp`, and where it feeds one
elementwise activation `phi` (possibly through pooling, flatten or
rescaling) that activation adds `E[u phi'(u) u' phi'(u')]` to its NTK. Other
uses with `scale=True` (e.g. the normalised tensor both activated and added
to a residual branch) raise; `scale=False`/`center=False` remove the terms.
Weight initialisers, regularisers, constraints and `trainable` flags of the
Keras layers are not consulted: every weight is drawn with `W_std`/`b_std`
and trained.

Example:
  >>> import keras
  >>> import numpy as np
  >>> import nt_gp.keras
  >>> model = keras.Sequential([
  ...     keras.Input((3,)), keras.layers.Dense(64, activation='relu'),
  ...     keras.layers.Dense(1)])
  >>> _, _, kernel_fn = nt_gp.keras.kernel_fn_from_model(model, W_std=1.5,
  ...                                                     b_std=0.1)
  >>> x = np.random.RandomState(0).randn(4, 3)
  >>> kernel_fn(x, None, 'ntk').shape
  TensorShape([4, 4])
"""
from typing import Any, Dict, Mapping, Optional

import numpy as np
import tensorflow as tf

from nt_gp import validation
from nt_gp.keras import _convert

__all__ = ['kernel_fn_from_model', 'tfp_kernel_from_model',
           'gpflow_kernel_from_model']

_HP_KEYS = ('W_std', 'b_std')


def _check_options(parameterization, quadrature_deg):
  return (validation.check_parameterization(parameterization),
          validation.check_positive_int('quadrature_deg', quadrature_deg))


def _check_per_layer(per_layer, plan) -> Dict[str, Dict[str, Any]]:
  if per_layer is None:
    return {}
  if not isinstance(per_layer, Mapping):
    raise TypeError(f'`per_layer` must map Keras layer names to '
                    f'{{"W_std": ..., "b_std": ...}}, got {per_layer!r}.')
  out = {}
  for name, values in per_layer.items():
    if name not in plan.weight_layers:
      raise ValueError(
          f'`per_layer` names {name!r}, which is not a weight layer (Dense or '
          f'convolution) of the model; its weight layers are '
          f'{sorted(plan.weight_layers)}.')
    if not isinstance(values, Mapping) or not values or any(
        k not in _HP_KEYS for k in values):
      raise ValueError(
          f'`per_layer[{name!r}]` must be a dict with keys among {_HP_KEYS}, '
          f'got {values!r}.')
    out[name] = dict(values)
  return out


def _parse(model, quadrature_deg, activation_kernels, layer_kernels):
  for what, mapping in (('activation_kernels', activation_kernels),
                        ('layer_kernels', layer_kernels)):
    if mapping is not None and not isinstance(mapping, Mapping):
      raise TypeError(f'`{what}` must be a dict, got {mapping!r}.')
  return _convert.parse(model, quadrature_deg, activation_kernels,
                        layer_kernels)


def kernel_fn_from_model(model,
                         W_std=1.,
                         b_std=0.,
                         *,
                         per_layer: Optional[Mapping[str, Mapping]] = None,
                         parameterization: str = 'ntk',
                         quadrature_deg: int = 64,
                         activation_kernels: Optional[Mapping] = None,
                         layer_kernels: Optional[Mapping[str, Any]] = None,
                         init_from_model: bool = False):
  """The stax network of a Keras model's infinite-width limit.

  Args:
    model: a built Keras 3 `Sequential` or functional `Model` (nested models
      are inlined). See the module docstring for the supported layers.
    W_std: weight standard deviation of every Dense/convolution layer (number,
      scalar tensor or variable; > 0): `W ~ N(0, W_std² / fan_in)`.
    b_std: bias standard deviation (>= 0) of the layers with `use_bias=True`;
      layers without a bias have none. `None` removes all biases.
    per_layer: optional `{keras_layer_name: {'W_std': ..., 'b_std': ...}}`
      overriding `W_std`/`b_std` for some weight layers.
    parameterization: `'ntk'` (default; NTK independent of the widths) or
      `'standard'` (the Keras model's own parameterization: the NTK uses the
      layers' widths).
    quadrature_deg: Gauss–Hermite nodes per dimension for activations without
      a closed-form kernel.
    activation_kernels: optional `{activation function: stax layer}` for
      activations the converter does not know (matched by identity).
    layer_kernels: optional `{keras_layer_name: stax layer}` replacing
      layers with one input (e.g. custom or `Lambda` layers). The layer is
      treated as a nonlinearity (its output is not a Gaussian).
    init_from_model: if True, `init_fn` ignores its seed and returns the
      model's current weights (`LayerNormalization` scale and offset
      included), so that `apply_fn(params, x)` equals `model(x)`. With
      `parameterization='ntk'` the weights are divided by
      `W_std / sqrt(fan_in)` and `b_std` (which must then be positive).

  Returns:
    `(init_fn, apply_fn, kernel_fn)` as from `nt_gp.stax.serial`. The kernel
    of a model with one input takes one array of the model's input shape
    `(N, *input_shape)` (float32 or float64; the kernel has the same dtype);
    a model with several inputs takes a list. For a model ending in a vector
    output, `kernel_fn(x1, x2, 'nngp')` has shape `(N1, N2)`; several
    outputs give a list of kernels.

  Raises:
    TypeError: `model` is not a Keras 3 model.
    ValueError: a layer or option without an infinite-width kernel (the
      message names the Keras layer and says why), an unbuilt Sequential
      model, a subclassed model, bad options.

  Example:
    >>> import keras
    >>> import numpy as np
    >>> import nt_gp.keras
    >>> from nt_gp import stax
    >>> inp = keras.Input((8, 8, 3))
    >>> h = keras.layers.Conv2D(16, 3, padding='same', activation='relu')(inp)
    >>> h = keras.layers.GlobalAveragePooling2D()(h)
    >>> model = keras.Model(inp, keras.layers.Dense(10)(h))
    >>> _, _, kernel_fn = nt_gp.keras.kernel_fn_from_model(model, W_std=1.4)
    >>> _, _, reference = stax.serial(
    ...     stax.Conv(1, (3, 3), padding='SAME', W_std=1.4, b_std=0.),
    ...     stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1, W_std=1.4,
    ...                                                   b_std=0.))
    >>> x = np.random.RandomState(0).randn(2, 8, 8, 3)
    >>> bool(np.allclose(kernel_fn(x, None, 'ntk'), reference(x, None, 'ntk')))
    True
  """
  parameterization, deg = _check_options(parameterization, quadrature_deg)
  if not isinstance(init_from_model, bool):
    raise TypeError(f'`init_from_model` must be a bool, got '
                    f'{init_from_model!r}.')
  plan = _parse(model, deg, activation_kernels, layer_kernels)
  opts = _convert.BuildOptions(W_std, b_std, _check_per_layer(per_layer, plan),
                               parameterization, init_from_model)
  return plan.build(opts)


# ----------------------------------------------------------------------------
# TFP and GPflow kernels.
# ----------------------------------------------------------------------------
class _Architecture:
  """`architecture(**hyperparameters) -> stax network` of a parsed model.

  Hyperparameters are `W_std`, `b_std` (shared), or `W_std_<layer>` and
  `b_std_<layer>` per weight layer.
  """

  def __init__(self, plan, parameterization, per_layer, fixed, names):
    self.plan = plan
    self.parameterization = parameterization
    self.per_layer = per_layer
    self.fixed = fixed
    self.names = names

  def __call__(self, **hyperparameters):
    if self.per_layer:
      per = {}
      for layer_name in self.plan.weight_layers:
        per[layer_name] = {
            k: hyperparameters[f'{k}_{layer_name}'] for k in _HP_KEYS
            if f'{k}_{layer_name}' in hyperparameters}
      W, b = self.fixed.get('W_std', 1.), self.fixed.get('b_std', 0.)
    else:
      per = {}
      W = hyperparameters.get('W_std', self.fixed.get('W_std', 1.))
      b = hyperparameters.get('b_std', self.fixed.get('b_std', 0.))
    opts = _convert.BuildOptions(W, b, per, self.parameterization, False)
    return self.plan.build(opts)


def _single_io(plan, owner):
  if len(plan.inputs) != 1 or len(plan.outputs) != 1:
    raise ValueError(
        f'{owner}: the model has {len(plan.inputs)} inputs and '
        f'{len(plan.outputs)} outputs; a kernel between inputs needs exactly '
        f'one of each.')
  return tuple(int(d) for d in plan.input_shapes[0][1:])


def _hyperparameter_values(plan, W_std, b_std, per_layer, per_layer_values):
  """Initial values by hyperparameter name, and the per-layer bias names."""
  biased = [n for n, op in plan.weight_layers.items()
            if getattr(op, 'use_bias', False)]
  if not plan.weight_layers:
    raise ValueError('The model has no Dense or convolution layer, so its '
                     'kernel has no W_std/b_std to train.')
  values = {}
  if per_layer:
    for n in plan.weight_layers:
      values[f'W_std_{n}'] = per_layer_values.get(n, {}).get('W_std', W_std)
      if n in biased:
        values[f'b_std_{n}'] = per_layer_values.get(n, {}).get('b_std', b_std)
  else:
    if per_layer_values:
      raise ValueError('Per-layer values need per_layer_hyperparameters=True '
                       '(with shared hyperparameters there is one W_std and '
                       'one b_std).')
    values['W_std'] = W_std
    if biased:
      values['b_std'] = b_std
  return values


def _architecture(model, parameterization, quadrature_deg, activation_kernels,
                  layer_kernels, per_layer_hyperparameters, W_std, b_std,
                  per_layer, owner):
  parameterization, deg = _check_options(parameterization, quadrature_deg)
  if not isinstance(per_layer_hyperparameters, bool):
    raise TypeError(f'`per_layer_hyperparameters` must be a bool, got '
                    f'{per_layer_hyperparameters!r}.')
  plan = _parse(model, deg, activation_kernels, layer_kernels)
  input_shape = _single_io(plan, owner)
  per_layer_values = _check_per_layer(per_layer, plan)
  values = _hyperparameter_values(plan, W_std, b_std,
                                  per_layer_hyperparameters, per_layer_values)
  arch = _Architecture(plan, parameterization, per_layer_hyperparameters, {},
                       tuple(values))
  return arch, values, input_shape


def tfp_kernel_from_model(model,
                          get: str = 'nngp',
                          W_std=1.,
                          b_std=0.1,
                          *,
                          per_layer_hyperparameters: bool = False,
                          per_layer: Optional[Mapping[str, Mapping]] = None,
                          dtype=tf.float64,
                          parameterization: str = 'ntk',
                          quadrature_deg: int = 64,
                          activation_kernels: Optional[Mapping] = None,
                          layer_kernels: Optional[Mapping[str, Any]] = None,
                          validate_args: bool = False,
                          name: str = 'NeuralKernel'):
  """A Keras model's NNGP or NTK as an `nt_gp.tfp.NeuralKernel`.

  The kernel's hyperparameters are `W_std` and `b_std` (`b_std` only if some
  weight layer has a bias), or with `per_layer_hyperparameters=True` one
  `W_std_<layer name>` (and `b_std_<layer name>`) per weight layer. Numbers
  become `tfp.util.TransformedVariable`s with a `Softplus` bijector (so they
  train and stay positive); tensors and variables are used as given.

  Args:
    model: a built Keras 3 model with one input and one output (see
      `kernel_fn_from_model`).
    get: `'nngp'` or `'ntk'`.
    W_std: initial weight standard deviation (> 0), or a variable/tensor.
    b_std: initial bias standard deviation (> 0), or a variable/tensor.
    per_layer_hyperparameters: one hyperparameter pair per weight layer.
    per_layer: initial values per layer, `{name: {'W_std': .., 'b_std': ..}}`
      (with `per_layer_hyperparameters=True`).
    dtype: dtype of the variables created for numbers (the kernel's dtype;
      index points of a `GaussianProcess` must have it).
    parameterization, quadrature_deg, activation_kernels, layer_kernels: as
      in `kernel_fn_from_model`.
    validate_args, name: as in `nt_gp.tfp.NeuralKernel`.

  Returns:
    An `nt_gp.tfp.NeuralKernel` with `feature_ndims` the rank of one model
    input: `matrix(x1, x2)` maps `x1: [N1, *input_shape]`,
    `x2: [N2, *input_shape]` to `[N1, N2]`.

  Example:
    >>> import keras
    >>> import numpy as np
    >>> import tensorflow_probability as tfp
    >>> import nt_gp.keras
    >>> model = keras.Sequential([keras.Input((2,)),
    ...                           keras.layers.Dense(32, activation='tanh'),
    ...                           keras.layers.Dense(1)])
    >>> kernel = nt_gp.keras.tfp_kernel_from_model(model, W_std=1.2)
    >>> sorted(kernel.hyperparameters)
    ['W_std', 'b_std']
    >>> x = np.random.RandomState(0).randn(5, 2)
    >>> gp = tfp.distributions.GaussianProcess(
    ...     kernel, index_points=x, observation_noise_variance=0.1)
    >>> gp.log_prob(np.zeros(5)).shape
    TensorShape([])
  """
  import tensorflow_probability as tfp  # pylint: disable=g-import-not-at-top
  from nt_gp import tfp as nt_tfp  # pylint: disable=g-import-not-at-top
  owner = 'nt_gp.keras.tfp_kernel_from_model'
  arch, values, input_shape = _architecture(
      model, parameterization, quadrature_deg, activation_kernels,
      layer_kernels, per_layer_hyperparameters, W_std, b_std, per_layer,
      owner)
  dtype = tf.as_dtype(dtype)

  def variable(n, v):
    if tf.is_tensor(v) or isinstance(v, tf.Variable) or hasattr(
        v, 'pretransformed_input'):
      return v
    value = np.asarray(v, dtype=dtype.as_numpy_dtype)
    if value.ndim != 0 or not np.isfinite(value) or value <= 0:
      raise ValueError(f'{owner}: hyperparameter `{n}` must be a positive '
                       f'finite number (it is trained through a softplus), '
                       f'got {v!r}.')
    return tfp.util.TransformedVariable(
        value, tfp.bijectors.Softplus(), dtype=dtype, name=n)

  hyperparameters = {n: variable(n, v) for n, v in values.items()}
  return nt_tfp.NeuralKernel(arch, get=get, feature_ndims=len(input_shape),
                             validate_args=validate_args, name=name,
                             **hyperparameters)


def gpflow_kernel_from_model(model,
                             get: str = 'nngp',
                             W_std=1.,
                             b_std=0.1,
                             *,
                             per_layer_hyperparameters: bool = False,
                             per_layer: Optional[Mapping[str, Mapping]] = None,
                             parameterization: str = 'ntk',
                             quadrature_deg: int = 64,
                             activation_kernels: Optional[Mapping] = None,
                             layer_kernels: Optional[Mapping[str, Any]] = None,
                             priors: Optional[Dict] = None,
                             name: Optional[str] = None):
  """A Keras model's NNGP or NTK as an `nt_gp.gpflow.NeuralKernel`.

  Hyperparameters as in `tfp_kernel_from_model`, as positive
  `gpflow.Parameter`s (`kernel.W_std`, `kernel.b_std`, or
  `kernel.W_std_<layer name>` ...).

  Args:
    model: a built Keras 3 model with one input and one output.
    get: `'nngp'` or `'ntk'`.
    W_std, b_std: initial values (> 0).
    per_layer_hyperparameters, per_layer, parameterization, quadrature_deg,
      activation_kernels, layer_kernels: as in `tfp_kernel_from_model`.
    priors: optional `{hyperparameter name: tfp distribution}`.
    name: module name.

  Returns:
    An `nt_gp.gpflow.NeuralKernel`. GPflow passes inputs as matrices:
    `K(X, X2)` maps `X: [N1, D]`, `X2: [N2, D]` to `[N1, N2]`, where
    `D = prod(input_shape)` (images are flattened; they are reshaped to the
    model's input shape inside the kernel).

  Example:
    >>> import gpflow
    >>> import keras
    >>> import numpy as np
    >>> import nt_gp.keras
    >>> model = keras.Sequential([keras.Input((2,)),
    ...                           keras.layers.Dense(32, activation='relu'),
    ...                           keras.layers.Dense(1)])
    >>> kernel = nt_gp.keras.gpflow_kernel_from_model(model, get='ntk')
    >>> X = np.random.RandomState(0).randn(6, 2)
    >>> gp = gpflow.models.GPR((X, np.sin(X[:, :1])), kernel)
    >>> _ = gpflow.optimizers.Scipy().minimize(
    ...     gp.training_loss, gp.trainable_variables, options=dict(maxiter=3))
    >>> bool(kernel.W_std.numpy() > 0)
    True
  """
  from nt_gp import gpflow as nt_gpflow  # pylint: disable=g-import-not-at-top
  owner = 'nt_gp.keras.gpflow_kernel_from_model'
  arch, values, input_shape = _architecture(
      model, parameterization, quadrature_deg, activation_kernels,
      layer_kernels, per_layer_hyperparameters, W_std, b_std, per_layer,
      owner)
  return nt_gpflow.NeuralKernel(
      arch, get=get, input_shape=input_shape if len(input_shape) > 1 else None,
      priors=priors, name=name, **values)
