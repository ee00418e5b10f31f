"""GPflow models on feature maps.

Import explicitly (GPflow is only imported here)::

    import nt_gp.features.gpflow

* `FeatureKernel`: ``K(X, X2) = φ(X) φ(X2)ᵀ`` as a `gpflow.kernels.Kernel`
  (for `gpflow.models.GPR`, SVGP, ... with the approximate kernel);
* `FeatureGPR`: the same GP regression in `O(N m²)`: a `gpflow.models`
  model whose data enter only through the normal equations (accumulated
  block by block, so `N` can exceed memory), with the Gaussian likelihood's
  noise variance a `gpflow.Parameter` learned by maximising the marginal
  likelihood (`gpflow.optimizers.Scipy().minimize(model.training_loss, ...)`).

GPflow inputs are 2-D: `X` is `(N, D)` with `D` the product of the feature
map's input shape; image inputs are reshaped to it.

Example:
  >>> import numpy as np
  >>> import gpflow
  >>> from nt_gp import stax, features
  >>> from nt_gp.features.gpflow import FeatureGPR
  >>> net = stax.serial(stax.Dense(1, b_std=0.1), stax.Relu(), stax.Dense(1))
  >>> phi = features.features_fn(net, 256, input_shape=(2,))
  >>> rs = np.random.RandomState(0)
  >>> X = rs.randn(200, 2)
  >>> Y = np.sin(X[:, :1]) + 0.1 * rs.randn(200, 1)
  >>> model = FeatureGPR(phi, (X, Y), noise_variance=1.)
  >>> _ = gpflow.optimizers.Scipy().minimize(
  ...     model.training_loss, model.trainable_variables)
  >>> dense = gpflow.models.GPR((X, Y), model.kernel, noise_variance=1.)
  >>> _ = gpflow.optimizers.Scipy().minimize(      # O(N³): the same GP
  ...     dense.training_loss, dense.trainable_variables)
  >>> v, v_dense = (m.likelihood.variance.numpy() for m in (model, dense))
  >>> bool(abs(v - v_dense) < 1e-5 * v)
  True
  >>> mean, var = model.predict_f(X[:3])
  >>> tuple(mean.shape), tuple(var.shape)
  ((3, 1), (3, 1))
"""
from typing import Optional

import gpflow
import numpy as np
import tensorflow as tf
from check_shapes import inherit_check_shapes

from nt_gp.features import streaming
from nt_gp.validation import check_kernel_name
from nt_gp.features.regression import FeatureRegression, NormalEquations

__all__ = ['FeatureKernel', 'FeatureGPR']


def _features(feature_map, get, X):
  """Features of 2-D GPflow inputs `(N, D)` (reshaped to the map's input)."""
  X = tf.convert_to_tensor(X)
  if feature_map.input_shape is None:
    raise ValueError('Build the feature map first: pass `input_shape=` to '
                     'features_fn.')
  size = int(np.prod(feature_map.input_shape))
  if X.shape.rank != 2 or X.shape[-1] != size:
    raise ValueError(f'X must have shape (N, {size}) (inputs of shape '
                     f'{feature_map.input_shape} flattened), got '
                     f'{tuple(X.shape)}.')
  x = tf.reshape(X, [-1, *feature_map.input_shape])
  phi = feature_map(x, get=get)
  return tf.reshape(phi, [tf.shape(phi)[0], -1])


class FeatureKernel(gpflow.kernels.Kernel):
  """``K(X, X2) = φ(X) φ(X2)ᵀ`` for a `FeatureMap` (no parameters).

  Args:
    feature_map: a built `FeatureMap` (`features_fn(..., input_shape=...)`).
    get: `'nngp'` or `'ntk'`.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax, features
    >>> phi = features.features_fn(stax.serial(stax.Dense(1), stax.Relu()),
    ...                            64, input_shape=(2,))
    >>> FeatureKernel(phi).K(np.ones((3, 2))).shape
    TensorShape([3, 3])
  """

  def __init__(self, feature_map, get: str = 'nngp',
               name: Optional[str] = None):
    super().__init__(name=name)
    self.feature_map = feature_map
    self.get = check_kernel_name(get)

  def features(self, X):
    return _features(self.feature_map, self.get, X)

  def K(self, X, X2=None):
    f1 = self.features(X)
    f2 = f1 if X2 is None else self.features(X2)
    return tf.matmul(f1, f2, transpose_b=True)

  def K_diag(self, X):
    return tf.reduce_sum(tf.square(self.features(X)), -1)


class FeatureGPR(gpflow.models.GPModel,
                 gpflow.models.InternalDataTrainingLossMixin):
  """GP regression with a feature kernel, in `O(N m²)` time, `O(m²)` memory.

  Args:
    feature_map: a built `FeatureMap`.
    data: `(X, Y)` with `X` `(N, D)` (or `(N, *input_shape)`) and `Y`
      `(N, P)`; or None with `normal_equations`.
    normal_equations: precomputed `NormalEquations` (e.g. from
      `nt_gp.features.normal_equations` over data on disk).
    get: `'nngp'` or `'ntk'` features.
    noise_variance: initial noise variance of the Gaussian likelihood.
    batch_size: rows per block when accumulating `data`.

  `maximum_log_likelihood_objective` is the exact log marginal likelihood of
  the GP with kernel ``Φ Φᵀ``; `predict_f` its posterior.
  """

  def __init__(self, feature_map, data=None, *, normal_equations=None,
               get: str = 'nngp', noise_variance: float = 1.,
               batch_size: int = 4096):
    if (data is None) == (normal_equations is None):
      raise ValueError('Pass exactly one of `data` and `normal_equations`.')
    if data is not None:
      X, Y = data
      X = np.asarray(X)
      if feature_map.input_shape is None:
        feature_map.build(X.shape[1:])
      X = X.reshape((len(X),) + tuple(feature_map.input_shape))
      normal_equations = streaming.normal_equations(
          feature_map, X, np.asarray(Y), batch_size=batch_size, get=get)
    if not isinstance(normal_equations, NormalEquations):
      raise TypeError('`normal_equations` must be a NormalEquations.')
    kernel = FeatureKernel(feature_map, get)
    likelihood = gpflow.likelihoods.Gaussian(noise_variance)
    super().__init__(kernel, likelihood, None,
                     num_latent_gps=normal_equations.rhs.shape[1])
    self.normal_equations = normal_equations

  def _regression(self):
    return FeatureRegression(self.normal_equations, self.likelihood.variance)

  def maximum_log_likelihood_objective(self) -> tf.Tensor:
    return self._regression().log_marginal_likelihood()

  @inherit_check_shapes
  def predict_f(self, Xnew, full_cov: bool = False,
                full_output_cov: bool = False):
    if full_output_cov:
      raise NotImplementedError('FeatureGPR: the outputs are independent; '
                                'full_output_cov=True is not supported.')
    phi = self.kernel.features(tf.reshape(
        Xnew, [tf.shape(Xnew)[0], -1]))
    mean, var = self._regression().predict(phi, full_cov=full_cov)
    p = self.num_latent_gps
    if full_cov:
      var = tf.tile(var[None], [p, 1, 1])
    else:
      var = tf.tile(var[:, None], [1, p])
    return mean, var
