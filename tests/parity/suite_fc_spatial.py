"""Nonlinearities, LayerNorm and Dropout on spatial inputs vs neural-tangents.

`Dense` acts on the channel axis, so kernels of inputs with spatial axes keep
the covariance between every pair of positions: these cases exercise the
full-spatial layouts `(N1, N2, X, X', [Y, Y'])` of every layer (with `x2=None`
and with `x2` given), and, with `diagonal_spatial=True`, the diagonal layout
`(N1, N2, X, [Y])`. `cov1` is compared too where neural-tangents computes it
correctly.
"""
_D = 'stax.Dense(16, W_std=1.3, b_std=0.2)'
_SHAPES = {'1d': (3, 4, 2), '2d': (3, 3, 2, 2)}

# name: (layer expression, compare cov1?)
_LAYERS = {
    'relu': ('stax.Relu()', True),
    'abrelu': ('stax.ABRelu(-0.4, 1.1)', True),
    'erf': ('stax.Erf(1.1, 0.8, 0.1)', True),
    'gelu': ('stax.Gelu()', True),
    # neural-tangents sets every non-zero cov1 entry after Sign to 1.
    'sign': ('stax.Sign()', False),
    'sin': ('stax.Sin(1.2, 0.8, 0.3)', True),
    'cos': ('stax.Cos(0.9, 1.1, 0.2)', True),
    'rbf': ('stax.Rbf(0.7)', True),
    'exp': ('stax.Exp(0.8, 0.5)', True),
    'exp_normalized': ('stax.ExpNormalized(1.3, 0.5)', True),
    'exp_normalized_clip': ('stax.ExpNormalized(0.7, -0.5, True)', True),
    'gaussian': ('stax.Gaussian(0.9, -0.6)', True),
    'monomial3': ('stax.Monomial(3)', True),
    'polynomial': ('stax.Polynomial([0.3, -0.5, 0.4, 0.1])', True),
    'hermite2': ('stax.Hermite(2)', True),
    'gabor': ('stax.Gabor()', True),
    'numerical_tanh': ('stax.ElementwiseNumerical(ops.tanh, deg=12)', True),
    'elementwise_sin':
        ('stax.Elementwise(ops.sin, nngp_fn=lambda c, v1, v2: '
         'ops.exp(-(v1 + v2) / 2) * ops.sinh(c))', True),
    'layernorm_channel': ('stax.LayerNorm()', True),
    'dropout_train': ("stax.Dropout(0.7, mode='train')", True),
    'dropout_test': ("stax.Dropout(0.6, mode='test')", True),
}

# Layers whose output feeds a second copy of themselves (the others are
# applied once; their full-spatial `cov1` map is compared directly).
_TWICE = ('sign', 'layernorm_channel', 'dropout_train', 'dropout_test')

SUITE = []
for _dims, _shape in _SHAPES.items():
  for _name, (_layer, _cov1) in _LAYERS.items():
    _hidden = f'{_D}, {_layer}, ' * (2 if _name in _TWICE else 1)
    SUITE.append(dict(
        name=f'{_name}_{_dims}',
        net=f'stax.serial({_hidden}stax.Dense(1, W_std=0.9, b_std=0.1))',
        shape=_shape,
        get=('nngp', 'ntk', 'cov1') if _cov1 else ('nngp', 'ntk')))
  # LayerNorm over positions and channels (e.g. (1, 2, 3) for NHWC).
  _axes = tuple(range(1, len(_shape)))
  SUITE.append(dict(
      name=f'layernorm_spatial_{_dims}',
      net=f'stax.serial({_D}, stax.LayerNorm(axis={_axes}), stax.Relu(), '
          f'{_D}, stax.LayerNorm(axis={_axes}), stax.Dense(1))',
      shape=_shape, get=('nngp', 'ntk', 'cov1')))
  # Same batches (x1_is_x2) and different batches of equal size.
  SUITE.append(dict(
      name=f'dropout_equal_batches_{_dims}',
      net=f"stax.serial({_D}, stax.Erf(), stax.Dropout(0.5), {_D}, "
          f"stax.Dropout(0.8), stax.Dense(1))",
      shape=_shape, n2=_shape[0], get=('nngp', 'ntk', 'cov1')))

# The diagonal-spatial layout, one case per family (two nonlinearities each).
_DIAGONAL = {
    'relu': ('stax.Relu()', 'stax.ABRelu(-0.4, 1.1)'),
    'erf_gelu': ('stax.Erf()', 'stax.Gelu()'),
    # Not Sign twice: with diagonal_spatial=True neural-tangents maps variances
    # exactly but self-covariances in `nngp` through arcsin, whose square-root
    # singularity at correlation 1 turns rounding into ~1e-8 errors, ~1e-4
    # after a second Sign (nt_gp pins them to the variances).
    'sign': ('stax.Sign()', 'stax.Gelu()'),
    'trig': ('stax.Sin(1.2, 0.8, 0.3)', 'stax.Gabor()'),
    'exponential': ('stax.Exp(0.8, 0.5)', 'stax.Rbf(0.6)'),
    'exp_normalized': ('stax.ExpNormalized(1.3, 0.5)', 'stax.Gaussian(0.9, -0.6)'),
    'polynomial': ('stax.Monomial(2)', 'stax.Polynomial([0.3, -0.5, 0.4])'),
    'rectified_monomial': ('stax.RectifiedMonomial(2)',
                           'stax.RectifiedMonomial(1)'),
    'hermite': ('stax.Hermite(3)', 'stax.Hermite(2)'),
    'numerical': ('stax.ElementwiseNumerical(ops.sin, deg=12)',
                  'stax.Elementwise(ops.sin, nngp_fn=lambda c, v1, v2: '
                  'ops.exp(-(v1 + v2) / 2) * ops.sinh(c))'),
    'layernorm': ('stax.LayerNorm(axis=(1, 2, 3))', 'stax.LayerNorm()'),
    'dropout': ('stax.Dropout(0.7)', "stax.Dropout(0.9, mode='test')"),
}
for _name, (_first, _second) in _DIAGONAL.items():
  case = dict(
      name=f'diagonal_spatial_{_name}',
      net=f'stax.serial({_D}, {_first}, {_D}, {_second}, stax.Dense(1))',
      shape=_SHAPES['2d'], get=('nngp', 'ntk', 'cov1'),
      kernel_kwargs=dict(diagonal_spatial=True))
  if _name == 'rectified_monomial':
    # neural-tangents: NaN on the x2=None diagonal (see
    # tests/parity/reference_nan.py).
    case['reference_nan_diagonal'] = True
  SUITE.append(case)

# Masked positions (`mask_constant`): layers that re-mask (Exp, Sin) or not
# (Gelu), and LayerNorm statistics that skip masked positions.
_MASKED_INPUTS = ('np.where(rng.rand(*shape[:-1], 1) < 0.3, 7., '
                  'rng.randn(*shape))')
for _dims, _shape in _SHAPES.items():
  _axes = tuple(range(1, len(_shape)))
  SUITE.append(dict(
      name=f'masked_{_dims}',
      net=f'stax.serial({_D}, stax.Exp(0.8, 0.5), {_D}, stax.Gelu(), {_D}, '
          f'stax.LayerNorm(axis={_axes}), stax.Sin(), stax.Dense(1))',
      shape=_shape, inputs=_MASKED_INPUTS, get=('nngp', 'ntk', 'cov1'),
      kernel_kwargs=dict(mask_constant=7.)))

# Full-batch covariances (diagonal_batch=False), LayerNorm over the batch
# axis, and channels-first activations.
SUITE += [
    dict(name='layernorm_over_batch',
         net=f'stax.serial({_D}, stax.LayerNorm(axis=(0, 2)), stax.Relu(), '
             f'{_D}, stax.LayerNorm(axis=(0, 1, 2)), stax.Dense(1))',
         shape=_SHAPES['1d'], get=('nngp', 'ntk', 'cov1')),
    dict(name='full_batch_layernorm_dropout',
         net=f'stax.serial({_D}, stax.LayerNorm(axis=(1, 2)), stax.Gelu(), '
             f'{_D}, stax.Dropout(0.6), stax.Dense(1))',
         shape=_SHAPES['1d'], get=('nngp', 'ntk', 'cov1'),
         kernel_kwargs=dict(diagonal_batch=False)),
    dict(name='full_batch_fc',
         net=f'stax.serial({_D}, stax.Gabor(), {_D}, '
             f'stax.ExpNormalized(0.5, 0.1), {_D}, '
             f'stax.Polynomial([0.1, 0.3, 0.2]), {_D}, '
             f'stax.ElementwiseNumerical(ops.sin, deg=10), stax.Dense(1))',
         shape=(3, 5), get=('nngp', 'ntk', 'cov1'),
         kernel_kwargs=dict(diagonal_batch=False)),
    dict(name='full_batch_2d',
         net=f'stax.serial({_D}, stax.Gaussian(), {_D}, stax.Exp(), {_D}, '
             f'stax.Dropout(0.8), {_D}, stax.Rbf(), stax.Dense(1))',
         shape=(2, 3, 2, 2), get=('nngp', 'ntk', 'cov1'),
         kernel_kwargs=dict(diagonal_batch=False)),
    dict(name='channels_first',
         net='stax.serial(stax.Dense(8, 1.2, 0.1, channel_axis=1), '
             'stax.LayerNorm(axis=1, channel_axis=1), stax.Sin(), '
             'stax.Dense(8, 1.2, 0.1, channel_axis=1), '
             'stax.LayerNorm(axis=(1, 2), channel_axis=1), stax.Erf(), '
             'stax.Dense(1, channel_axis=1))',
         shape=(3, 2, 4), get=('nngp', 'ntk', 'cov1')),
]

# Masked inputs with the layer last (no re-masking Dense after it), and the
# second input of each batch fully masked.
_FULLY_MASKED = ('np.where((rng.rand(*shape[:-1], 1) < 0.3) | '
                 '(np.arange(shape[0]) == 1)[:, None, None], 7., '
                 'rng.randn(*shape))')
for _name, _layer in [('exp', 'stax.Exp(0.8, 0.5)'),
                      ('gaussian', 'stax.Gaussian(0.9, -0.6)'),
                      ('numerical', 'stax.ElementwiseNumerical(ops.cos, deg=8)'),
                      ('layernorm', 'stax.LayerNorm(axis=(1, 2))')]:
  SUITE.append(dict(
      name=f'masked_last_{_name}',
      net=f'stax.serial({_D}, {_layer})', shape=_SHAPES['1d'],
      inputs=_FULLY_MASKED, get=('nngp', 'ntk', 'cov1'),
      kernel_kwargs=dict(mask_constant=7.)))
