"""Fully-connected architectures compared with neural-tangents (float64)."""
_D = 'stax.Dense(512, W_std=1.4, b_std=0.1)'
_S = (5, 6)


def _mlp(*act, readout='stax.Dense(1, W_std=1.2, b_std=0.2)'):
  return f'stax.serial({_D}, {", ".join(act)}, {_D}, {", ".join(act)}, {readout})'


SUITE = [
    dict(name='dense_ntk', net='stax.Dense(3, W_std=1.5, b_std=0.1)', shape=_S),
    dict(name='dense_no_bias', net='stax.Dense(3, W_std=0.7)', shape=_S),
    dict(name='dense_standard',
         net="stax.serial(stax.Dense(8, 1.3, 0.2, parameterization='standard'),"
             " stax.Relu(), stax.Dense(2, 0.9, 0.3, parameterization='standard'))",
         shape=_S),
    dict(name='dense_standard_s',
         net="stax.serial(stax.Dense(8, 1.3, 0.2, parameterization='standard', "
             "s=(1, 3)), stax.Erf(), stax.Dense(2, 0.9, 0.3, "
             "parameterization='standard', s=(3, 1)))",
         shape=_S),
    dict(name='relu_mlp', net=_mlp('stax.Relu()'), shape=_S),
    dict(name='relu_deep',
         net='stax.serial(*[stax.Dense(64, 1.5, 0.05), stax.Relu()] * 6, '
             'stax.Dense(1, 1.5, 0.05))', shape=_S),
    dict(name='relu_stabilized',
         net='stax.serial(*[stax.Dense(64, 1.5, 0.05), stax.Relu(True)] * 4, '
             'stax.Dense(1))', shape=_S),
    dict(name='abrelu', net=_mlp('stax.ABRelu(-0.3, 1.2)'), shape=_S),
    dict(name='leaky_relu', net=_mlp('stax.LeakyRelu(0.1)'), shape=_S),
    dict(name='abs', net=_mlp('stax.Abs()'), shape=_S),
    dict(name='erf', net=_mlp('stax.Erf(1.3, 0.7, 0.2)'), shape=_S),
    dict(name='sigmoid_like', net=_mlp('stax.Sigmoid_like()'), shape=_S),
    dict(name='gelu', net=_mlp('stax.Gelu()'), shape=_S),
    dict(name='sign', net=_mlp('stax.Sign()'), shape=_S),
    dict(name='sin', net=_mlp('stax.Sin(1.2, 0.8, 0.3)'), shape=_S),
    dict(name='cos', net=_mlp('stax.Cos(0.9, 1.1, 0.2)'), shape=_S),
    dict(name='rbf', net=_mlp('stax.Rbf(0.7)'), shape=_S),
    dict(name='exp', net=_mlp('stax.Exp(0.8, 0.5)'), shape=_S),
    dict(name='exp_normalized', net=_mlp('stax.ExpNormalized(1.3, 0.5)'),
         shape=_S),
    dict(name='gaussian', net=_mlp('stax.Gaussian(0.9, -0.6)'), shape=_S),
    dict(name='monomial2', net=_mlp('stax.Monomial(2)'), shape=_S),
    dict(name='monomial3', net=_mlp('stax.Monomial(3)'), shape=_S),
    # neural-tangents 0.6.5 evaluates RectifiedMonomial's kernel as
    # (π - θ)/sin θ · sin θ, NaN at θ = 0: with full (non-diagonal) layouts
    # `cov1` is NaN; with `diagonal_spatial=True` only the sym diagonal is
    # (see `reference_nan_diagonal` in tests/test_parity_fc.py).
    dict(name='rectified_monomial2', net=_mlp('stax.RectifiedMonomial(2)'),
         shape=_S, kernel_kwargs=dict(diagonal_spatial=True),
         get=('nngp', 'ntk', 'cov1'), reference_nan_diagonal=True),
    dict(name='rectified_monomial0', net=_mlp('stax.RectifiedMonomial(0)'),
         shape=_S, kernel_kwargs=dict(diagonal_spatial=True),
         get=('nngp', 'ntk', 'cov1'), reference_nan_diagonal=True),
    dict(name='polynomial', net=_mlp('stax.Polynomial([0.3, -0.5, 0.4, 0.1])'),
         shape=_S),
    dict(name='hermite3', net=_mlp('stax.Hermite(3)'), shape=_S,
         inputs='rng.randn(*shape) / np.linalg.norm(rng.randn(*shape), axis=1, '
                'keepdims=True) * shape[1] ** 0.5'),
    dict(name='gabor', net=_mlp('stax.Gabor()'), shape=_S),
    dict(name='elementwise_numerical_tanh',
         net=_mlp('stax.ElementwiseNumerical(ops.tanh, deg=25)'), shape=_S),
    dict(name='elementwise_closed_form',
         net=_mlp('stax.Elementwise(ops.sin, nngp_fn=lambda cov12, var1, var2:'
                  ' ops.exp(-(var1 + var2) / 2) * ops.sinh(cov12))'), shape=_S),
    dict(name='layernorm',
         net=f'stax.serial({_D}, stax.LayerNorm(), stax.Relu(), {_D}, '
             f'stax.LayerNorm(axis=-1), stax.Dense(1))', shape=_S),
    dict(name='dropout_test_mode',
         net=f"stax.serial({_D}, stax.Relu(), stax.Dropout(0.7, mode='test'), "
             f"stax.Dense(1))", shape=_S),
    dict(name='dropout_train_mode',
         net=f"stax.serial({_D}, stax.Relu(), stax.Dropout(0.8, mode='train'), "
             f"stax.Dense(1))", shape=_S),
    dict(name='residual_fan_in_sum',
         net=f'stax.serial({_D}, stax.FanOut(2), stax.parallel(stax.serial('
             f'stax.Relu(), {_D}), stax.Identity()), stax.FanInSum(), '
             f'stax.Relu(), stax.Dense(1))', shape=_S),
    dict(name='fan_in_concat',
         net=f'stax.serial(stax.FanOut(3), stax.parallel(stax.Dense(4, 1.1), '
             f'stax.serial({_D}, stax.Relu(), stax.Dense(6, 1.3)), '
             f'stax.Dense(2, 0.8, 0.4)), stax.FanInConcat(), stax.Dense(3, 1.1, 0.1), '
             f'stax.Erf(), '
             f'stax.Dense(1))', shape=_S),
    dict(name='fan_in_prod',
         net=f'stax.serial(stax.FanOut(2), stax.parallel({_D}, stax.serial('
             f'{_D}, stax.Erf(), {_D})), stax.FanInProd(), stax.Dense(1))',
         shape=_S),
    dict(name='repeat',
         net='stax.serial(stax.Dense(16, 1.3, 0.1), stax.repeat(stax.serial('
             'stax.Relu(), stax.Dense(16, 1.3, 0.1)), 3))', shape=_S),
    dict(name='identity', net='stax.serial(stax.Identity(), stax.Dense(2, 2.))',
         shape=_S),
    dict(name='dense_on_sequence',
         net='stax.serial(stax.Dense(8, 1.2, 0.3), stax.Relu(), '
             'stax.Dense(1, 0.8, 0.1))', shape=(4, 3, 5)),
    dict(name='nngp_only_get', net=_mlp('stax.Relu()'), shape=_S,
         get=('nngp',)),
    dict(name='ntk_standard_no_bias',
         net="stax.serial(stax.Dense(8, 1.3, parameterization='standard'), "
             "stax.Relu(), stax.Dense(2, 0.9, parameterization='standard'))",
         shape=_S),
]
