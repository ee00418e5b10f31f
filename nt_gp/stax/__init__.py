"""Infinite-width layers with neural-tangents' `stax` API.

Each layer returns `(init_fn, apply_fn, kernel_fn)`:

* `init_fn(seed, input_shape) -> (output_shape, params)`,
* `apply_fn(params, x)` the finite-width network in TensorFlow,
* `kernel_fn(x1, x2=None, get=None)` the NNGP/NTK of its infinite-width limit.

Example:
  >>> import numpy as np
  >>> from nt_gp import stax
  >>> init_fn, apply_fn, kernel_fn = stax.serial(
  ...     stax.Dense(512, W_std=1.5, b_std=0.05), stax.Relu(),
  ...     stax.Dense(1, W_std=1.5, b_std=0.05))
  >>> x = np.random.RandomState(0).randn(5, 3)
  >>> k = kernel_fn(x, None, ('nngp', 'ntk'))
  >>> tuple(k.ntk.shape)
  (5, 5)
"""
from nt_gp.kernel import Kernel
from nt_gp.stax.branching import FanInConcat, FanInProd, FanInSum, FanOut
from nt_gp.stax.combinators import parallel, repeat, serial
from nt_gp.stax.conv import Conv, ConvLocal, ConvTranspose
from nt_gp.stax.dense import Dense, Identity
from nt_gp.stax.layer_call import LayerCall, describe
from nt_gp.stax.dimension_numbers import Padding
from nt_gp.stax.erf import Erf, Sigmoid_like
from nt_gp.stax.layer import layer
from nt_gp.stax.shapes import make_init_fn
from nt_gp.stax.masking import MaskedArray, supports_masking, unmask_fn
from nt_gp.stax.pooling import AvgPool, SumPool
from nt_gp.stax.readout import Flatten, GlobalAvgPool, GlobalSumPool
from nt_gp.stax.relu import ABRelu, Abs, LeakyRelu, Relu
from nt_gp.stax.requirements import Bool, Diagonal, requires
from nt_gp.stax.dropout import Dropout
from nt_gp.stax.exponential import Exp, ExpNormalized, Gaussian, Rbf
from nt_gp.stax.gelu import Gelu
from nt_gp.stax.normalization import LayerNorm
from nt_gp.stax.numerical import Elementwise, ElementwiseNumerical
from nt_gp.stax.polynomial import Hermite, Monomial, Polynomial, RectifiedMonomial
from nt_gp.stax.sign import Sign
from nt_gp.stax.trig import Cos, Gabor, Sin
from nt_gp.stax.indexing import Index, Slice
from nt_gp.stax.resize import ImageResize
from nt_gp.stax.attention import (AttentionMechanism, GlobalSelfAttention,
                                  PositionalEmbedding)
from nt_gp.stax.aggregate import Aggregate, AggregateImplementation
from nt_gp.stax.dot_general import DotGeneral
