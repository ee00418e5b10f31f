"""Feature maps of NNGP and NTK kernels, and GP models on features.

`features_fn(network, feature_dim)` gives explicit features
``phi(x) -> (nngp_feat, ntk_feat)`` whose inner products approximate the
network's NNGP and NTK (random features and sketches; Zandieh et al. 2021,
Han et al. 2022). With features, GP regression is Bayesian linear regression:
`FeatureRegression` fits it from normal equations accumulated block by block
(`normal_equations`), in `O(N m²)` time and `O(m²)` memory.

TFP and GPflow models live in `nt_gp.features.tfp` and
`nt_gp.features.gpflow` (imported explicitly).

Example:
  >>> import numpy as np
  >>> from nt_gp import stax, features
  >>> net = stax.serial(stax.Dense(1), stax.Relu(), stax.Dense(1))
  >>> phi = features.features_fn(net, feature_dim=256)
  >>> phi(np.ones((2, 3)), get='nngp').shape
  TensorShape([2, 256])
"""
from nt_gp.features.build import UnsupportedLayer
from nt_gp.features.feature_map import FeatureMap, features_fn
from nt_gp.features.regression import FeatureRegression, NormalEquations
from nt_gp.features.streaming import (feature_batches, normal_equations,
                                      predict)
