"""Networks whose second derivatives are compared with neural-tangents.

Each case's `net` is an expression over `stax`, `ops` (jax.numpy in the
reference process, tf.math here) and the hyperparameters `W` and `b`, which
are differentiated (float64 variables here, traced scalars there). `shape` is
the shape of `x1`; `x2` has the same shape. Inputs are random normal (no two
examples coincide, where second derivatives of ReLU-family kernels are
undefined), except on the diagonal path `k(x, x)`, which is smooth.

Quantities, for `get` in ('nngp', 'ntk'), with fixed random weights `U`, `w`:
  full/mixed        d²F/dx1 dx2,  F = Σ U ⊙ k(x1, x2)   shape x1.shape + x2.shape
  full/hess_cross   d²F/dθ²,      θ = (W, b)             (2, 2)
  full/hess_sym     d²/dθ² of Σ U ⊙ k(x1, x1)            (2, 2)
  pairs/mixed       d²G/dx1 dx2,  G = Σ_i w_i k(x1[i], x2[i])
  pairs/hess        d²G/dθ²
  diag/hess         d²D/dθ²,      D = Σ_i w_i k(x1[i], x1[i])
  diag/hess_x       d²D/dx1²                             x1.shape * 2
"""
import zlib

import numpy as np

_MLP = 'stax.serial(stax.Dense(4, W, b), {0}, stax.Dense(4, W, b), {0}, ' \
       'stax.Dense(1, W, b))'
_S = (3, 4)

SUITE = [
    dict(name='relu', net=_MLP.format('stax.Relu()'), shape=_S),
    dict(name='abrelu', net=_MLP.format('stax.ABRelu(-0.4, 1.2)'), shape=_S),
    dict(name='leaky_relu', net=_MLP.format('stax.LeakyRelu(0.1)'), shape=_S),
    dict(name='erf', net=_MLP.format('stax.Erf()'), shape=_S),
    dict(name='gelu', net=_MLP.format('stax.Gelu()'), shape=_S),
    dict(name='numerical_tanh',
         net=_MLP.format('stax.ElementwiseNumerical(ops.tanh, deg=25)'),
         shape=_S),
    dict(name='layernorm',
         net='stax.serial(stax.Dense(4, W, b), stax.LayerNorm(), stax.Relu(), '
             'stax.Dense(4, W, b), stax.Erf(), stax.Dense(1, W, b))',
         shape=_S),
    dict(name='cnn_pools',
         net="stax.serial(stax.Conv(2, (2, 2), padding='SAME', W_std=W, "
             "b_std=b), stax.Relu(), stax.AvgPool((2, 2), padding='SAME'), "
             "stax.Conv(2, (2, 2), padding='SAME', W_std=W, b_std=b), "
             "stax.Erf(), stax.GlobalAvgPool(), stax.Dense(1, W, b))",
         shape=(2, 3, 3, 1)),
    dict(name='attention',
         net='stax.serial(stax.Dense(4, W, b), stax.GlobalSelfAttention(4, 3, '
             '3, 2, W_key_std=W, W_query_std=1.1, W_value_std=W, W_out_std=W,'
             ' b_std=b), stax.Relu(), stax.GlobalAvgPool(), '
             'stax.Dense(1, W, b))',
         shape=(2, 3, 2)),
]

THETA = (1.3, 0.2)
GETS = ('nngp', 'ntk')
QUANTITIES = ('full/mixed', 'full/hess_cross', 'full/hess_sym', 'pairs/mixed',
              'pairs/hess', 'diag/hess', 'diag/hess_x')


def case_inputs(case):
  """`{'x1', 'x2', 'U', 'U_sym', 'w'}` float64 arrays of a case."""
  rng = np.random.RandomState(zlib.crc32(case['name'].encode()) % (2**31))
  shape = tuple(case['shape'])
  n = shape[0]
  return {'x1': rng.randn(*shape), 'x2': rng.randn(*shape),
          'U': rng.randn(n, n), 'U_sym': rng.randn(n, n), 'w': rng.randn(n)}


def suite_inputs(suite=None):
  """All inputs of the suite as `{'<case>/<array>': array}`."""
  out = {}
  for case in suite or SUITE:
    for k, v in case_inputs(case).items():
      out[f'{case["name"]}/{k}'] = v
  return out
