"""`FeatureKernel`: a feature map's kernel ``φ(x1) · φ(x2)`` as a TFP kernel.

Import explicitly (TensorFlow Probability is only imported here)::

    import nt_gp.features.tfp

The kernel is a `tfp.math.psd_kernels.PositiveSemidefiniteKernel`, so it
works in `tfd.GaussianProcess`, `GaussianProcessRegressionModel` and their
samplers. Its `matrix` is the low-rank product ``Φ1 Φ2ᵀ``; `marginal` gives
the GP's distribution at `N` points as a
`tfd.MultivariateNormalDiagPlusLowRankCovariance`, whose `log_prob` and
`sample` cost `O(N m²)` instead of `O(N³)`.

Example:
  >>> import numpy as np
  >>> import tensorflow_probability as tfp

from nt_gp.validation import check_kernel_name
  >>> from nt_gp import stax, features
  >>> from nt_gp.features.tfp import FeatureKernel
  >>> net = stax.serial(stax.Dense(1, b_std=0.1), stax.Relu(), stax.Dense(1))
  >>> kernel = FeatureKernel(features.features_fn(net, 512, input_shape=(3,)))
  >>> x = np.random.RandomState(0).randn(20, 3)
  >>> gp = tfp.distributions.GaussianProcess(
  ...     kernel, index_points=x, observation_noise_variance=0.1)
  >>> gp.sample(2, seed=1).shape
  TensorShape([2, 20])
  >>> lp_dense = gp.log_prob(np.zeros(20))   # O(N³), with TFP's jitter 1e-6
  >>> lp_low_rank = kernel.marginal(x, 0.1).log_prob(np.zeros(20))  # O(N m²)
  >>> bool(abs(float(lp_dense) - float(lp_low_rank)) < 1e-3)
  True
"""
import tensorflow as tf
import tensorflow_probability as tfp

from nt_gp.validation import check_kernel_name

__all__ = ['FeatureKernel']


class FeatureKernel(tfp.math.psd_kernels.PositiveSemidefiniteKernel):
  """The kernel ``k(x1, x2) = φ(x1) · φ(x2)`` of a `FeatureMap`.

  Args:
    feature_map: a `FeatureMap` from `nt_gp.features.features_fn`.
    get: `'nngp'` or `'ntk'` features.
    feature_ndims: rightmost input axes of one example (default: the rank of
      the feature map's input shape if it is built, else 1).
    name: kernel name.

  Inputs follow TFP: `batch + example + feature` shapes; outputs have the
  inputs' dtype (float32 or float64). The kernel has no parameters and an
  empty batch shape.
  """

  def __init__(self, feature_map, get: str = 'nngp', feature_ndims=None,
               name: str = 'FeatureKernel'):
    parameters = dict(locals())
    check_kernel_name(get)
    if feature_ndims is None:
      feature_ndims = (1 if feature_map.input_shape is None else
                       len(feature_map.input_shape))
    self._feature_map = feature_map
    self._get = get
    super().__init__(feature_ndims=feature_ndims, dtype=None, name=name,
                     parameters=parameters)

  @classmethod
  def _parameter_properties(cls, dtype):
    return {}

  @property
  def feature_map(self):
    return self._feature_map

  @property
  def get(self) -> str:
    return self._get

  def features(self, x):
    """`φ(x)` for `batch + example + feature` inputs: `(..., m)`."""
    x = tf.convert_to_tensor(x)
    nf = self.feature_ndims
    if x.shape.rank is None or x.shape.rank < nf + 1:
      raise ValueError(f'Inputs need at least {nf + 1} axes (examples and '
                       f'feature_ndims={nf}), got shape {tuple(x.shape)}.')
    lead = tf.shape(x)[:-nf]
    flat = tf.reshape(x, tf.concat([[-1], tf.shape(x)[-nf:]], 0))
    flat = tf.ensure_shape(flat, [None] + x.shape[-nf:].as_list())
    phi = self._feature_map(flat, get=self._get)
    phi = tf.reshape(phi, [tf.shape(phi)[0], -1])
    return tf.reshape(phi, tf.concat([lead, tf.shape(phi)[-1:]], 0))

  def _apply(self, x1, x2, example_ndims=0):
    return tf.reduce_sum(self.features(x1) * self.features(x2), -1)

  def _matrix(self, x1, x2):
    return tf.linalg.matmul(self.features(x1), self.features(x2),
                            transpose_b=True)

  def _tensor(self, x1, x2, x1_example_ndims, x2_example_ndims):
    f1, f2 = self.features(x1), self.features(x2)
    for _ in range(x2_example_ndims):
      f1 = tf.expand_dims(f1, -2)
    for _ in range(x1_example_ndims):
      f2 = tf.expand_dims(f2, -2 - x2_example_ndims)
    return tf.reduce_sum(f1 * f2, -1)

  def marginal(self, x, observation_noise_variance, loc=None):
    """The GP at `x` (`(N, *feature_shape)`) with noise, as a low-rank MVN.

    Returns:
      `tfd.MultivariateNormalDiagPlusLowRankCovariance` with covariance
      ``Φ Φᵀ + σ² I`` (`O(N m²)` log_prob and sampling).
    """
    phi = self.features(x)
    noise = tf.cast(tf.convert_to_tensor(observation_noise_variance,
                                         dtype_hint=phi.dtype), phi.dtype)
    n = tf.shape(phi)[-2]
    diag = tf.fill([n], noise)
    return tfp.distributions.MultivariateNormalDiagPlusLowRankCovariance(
        loc=loc, cov_diag_factor=diag, cov_perturb_factor=phi)
