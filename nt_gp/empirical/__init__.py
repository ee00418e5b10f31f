"""Kernels of finite networks: empirical NNGP and NTK samples.

Works on functions `f(params, x, **kwargs)` over nested parameters (like
`nt_gp.stax` `apply_fn`s) and on built Keras 3 models, with neural-tangents'
arguments (`trace_axes`, `diagonal_axes`, `vmap_axes`, `implementation`).

Example:
  >>> import numpy as np
  >>> import nt_gp
  >>> from nt_gp import stax
  >>> init_fn, apply_fn, _ = stax.serial(stax.Dense(64), stax.Relu(),
  ...                                    stax.Dense(1))
  >>> _, params = init_fn(0, (-1, 3))
  >>> x = np.random.RandomState(0).randn(4, 3).astype(np.float32)
  >>> ntk_fn = nt_gp.empirical_ntk_fn(apply_fn, vmap_axes=0)
  >>> ntk_fn(x, None, params).shape
  TensorShape([4, 4])
"""
from nt_gp.empirical.kernel import empirical_kernel_fn
from nt_gp.empirical.nngp import empirical_nngp_fn
from nt_gp.empirical.ntk import (DEFAULT_NTK_IMPLEMENTATION, NtkImplementation,
                                 empirical_ntk_fn)
from nt_gp.empirical.ntvp import empirical_ntk_vp_fn

__all__ = ['empirical_kernel_fn', 'empirical_nngp_fn', 'empirical_ntk_fn',
           'empirical_ntk_vp_fn', 'NtkImplementation',
           'DEFAULT_NTK_IMPLEMENTATION']
