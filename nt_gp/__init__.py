"""nt_gp: infinite-width neural networks (NNGP and NTK kernels) for TensorFlow 2.

Example:
  >>> import numpy as np
  >>> import nt_gp
  >>> from nt_gp import stax
  >>> _, _, kernel_fn = stax.serial(stax.Dense(1), stax.Relu(), stax.Dense(1))
  >>> kernel_fn(np.ones((2, 3)), None, 'nngp').shape
  TensorShape([2, 2])
"""
__version__ = '0.1.0'

from nt_gp import predict
from nt_gp import stax
from nt_gp._config import compilation, config
from nt_gp.batching import batch
from nt_gp.kernel import Kernel
from nt_gp.empirical import (NtkImplementation, empirical_kernel_fn,
                             empirical_nngp_fn, empirical_ntk_fn,
                             empirical_ntk_vp_fn)
from nt_gp.linearize import linearize, taylor_expand
from nt_gp.monte_carlo import monte_carlo_kernel_fn
