"""Masked (variable-length) inputs through every mask-aware layer, compared
with neural-tangents (float64).

About 30% of the positions (all channels) of each input equal the mask
constant; masks follow the layers' `mask_fn`s (strided through convolutions
and pools, widened by transposed convolutions, reduced by readouts) and
covariances of masked positions are zeroed after remasking layers.

Not covered because neural-tangents 0.6.5 itself returns NaN for them:
layers whose output is non-zero at zero input variance (`Polynomial` with a
constant term, `RectifiedMonomial(0)`) followed by a masked readout.
"""
_MASKED = 'np.where(rng.rand(*shape[:-1], 1) < 0.3, -7., rng.randn(*shape))'
_MK = dict(mask_constant=-7.)
_OUT = 'stax.Dense(1, 1.1, 0.1)'


def _case(name, *layers, shape, **kw):
  return dict(name=name, net='stax.serial(' + ', '.join(layers) + ')',
              shape=shape, n2=2, inputs=_MASKED, kernel_kwargs=_MK, **kw)


SUITE = [
    _case('conv_same_relu_gap',
          "stax.Conv(3, (3,), padding='SAME', W_std=1.2, b_std=0.1)",
          'stax.Relu()', "stax.Conv(3, (2,), padding='SAME', b_std=0.2)",
          'stax.GlobalAvgPool()', _OUT, shape=(3, 7, 2)),
    _case('conv_valid_strided_gap',
          'stax.Conv(3, (3,), (2,), W_std=1.2, b_std=0.1)', 'stax.Relu()',
          'stax.GlobalAvgPool()', _OUT, shape=(3, 9, 2)),
    _case('conv2d_same_strided_erf_gap',
          "stax.Conv(3, (3, 2), (2, 2), 'SAME', W_std=1.2, b_std=0.1)",
          'stax.Erf()', 'stax.GlobalAvgPool()', _OUT, shape=(3, 5, 4, 2)),
    _case('conv_circular_sumpool',
          "stax.Conv(3, (3,), padding='CIRCULAR', W_std=1.2, b_std=0.1)",
          'stax.Relu()', 'stax.GlobalSumPool()', _OUT, shape=(3, 6, 2)),
    _case('conv_transpose_same_gap',
          "stax.ConvTranspose(3, (3,), (2,), 'SAME', W_std=1.2, b_std=0.1)",
          'stax.Relu()', 'stax.GlobalAvgPool()', _OUT, shape=(3, 5, 2)),
    _case('conv_transpose_valid_gap',
          "stax.ConvTranspose(3, (3,), (2,), 'VALID', W_std=1.2, b_std=0.1)",
          'stax.Relu()', 'stax.GlobalAvgPool()', _OUT, shape=(3, 5, 2)),
    _case('conv_transpose_circular_gap',
          "stax.ConvTranspose(3, (3,), (2,), 'CIRCULAR', W_std=1.2, "
          "b_std=0.1)", 'stax.Relu()', 'stax.GlobalAvgPool()', _OUT,
          shape=(3, 5, 2)),
    _case('conv_local_flatten',
          "stax.ConvLocal(3, (2,), padding='SAME', W_std=1.2, b_std=0.1)",
          'stax.Relu()', 'stax.Flatten()', _OUT, shape=(3, 5, 2)),
    _case('avgpool_same_strided',
          'stax.Dense(3, 1.2, 0.1)', 'stax.Relu()',
          "stax.AvgPool((2,), (2,), 'SAME')", 'stax.Dense(3, 1., 0.3)',
          'stax.GlobalAvgPool()', _OUT, shape=(3, 7, 2)),
    _case('sumpool_valid_strided',
          'stax.Dense(3, 1.2, 0.1)', 'stax.Relu()', 'stax.SumPool((3,), (2,))',
          'stax.Dense(3, 1., 0.3)', 'stax.GlobalAvgPool()', _OUT,
          shape=(3, 7, 2)),
    _case('avgpool2d_normalize_edges_flatten',
          'stax.Conv(3, (2, 2), W_std=1.2, b_std=0.1)', 'stax.Relu()',
          "stax.AvgPool((2, 2), padding='SAME', normalize_edges=True)",
          'stax.Flatten()', _OUT, shape=(3, 4, 4, 2)),
    _case('gelu_sign_gabor',
          'stax.Dense(3, 1.2, 0.1)', 'stax.Gelu()', 'stax.Dense(3, 1.1)',
          'stax.Sign()', 'stax.Dense(3, 0.9, 0.2)', 'stax.Gabor()',
          'stax.GlobalAvgPool()', _OUT, shape=(3, 6, 2)),
    _case('fan_in_sum_prod',
          'stax.Dense(3, 1.2, 0.1)', 'stax.FanOut(2)',
          'stax.parallel(stax.serial(stax.Relu(), stax.Dense(3, 1.1, 0.2)), '
          'stax.Dense(3, 0.9, 0.3))', 'stax.FanInSum()', 'stax.Dense(3)',
          'stax.FanOut(2)', 'stax.parallel(stax.Dense(3, 1.3), '
          'stax.Identity())', 'stax.FanInProd()', 'stax.GlobalAvgPool()',
          _OUT, shape=(3, 6, 2)),
    _case('fan_in_concat_channels_and_positions',
          'stax.Dense(3, 1.2, 0.1)', 'stax.FanOut(2)',
          'stax.parallel(stax.Relu(), stax.Dense(2, 0.9, 0.3))',
          'stax.FanInConcat()', 'stax.Dense(3)', 'stax.FanOut(2)',
          'stax.parallel(stax.Dense(3), stax.Dense(3, 0.9, 0.3))',
          'stax.FanInConcat(axis=1)', 'stax.Relu()', 'stax.GlobalAvgPool()',
          _OUT, shape=(3, 4, 2)),
    _case('layernorm_positions_and_channels',
          'stax.Dense(3, 1.2, 0.1)', 'stax.LayerNorm(axis=(1, 2))',
          'stax.Relu()', 'stax.Dense(3)', 'stax.LayerNorm()',
          'stax.GlobalAvgPool()', _OUT, shape=(3, 6, 2)),
    _case('flatten_dense_relu',
          "stax.Conv(3, (2,), padding='SAME', W_std=1.2, b_std=0.1)",
          'stax.Relu()', 'stax.Flatten()', _OUT, 'stax.Relu()', _OUT,
          shape=(3, 6, 2)),
]

APPLY_SUITE = [
    dict(name='apply_conv_transpose_pool_flatten',
         net="stax.serial(stax.ConvTranspose(3, (3,), (2,), 'SAME'), "
             "stax.Relu(), stax.AvgPool((2,), (2,)), stax.Flatten())",
         shape=(3, 5, 2), inputs=_MASKED, apply_kwargs=_MK),
    dict(name='apply_conv_layernorm_gap',
         net="stax.serial(stax.Conv(3, (2, 2), (2, 1), 'SAME', b_std=0.3), "
             "stax.LayerNorm(), stax.Relu(), "
             "stax.GlobalAvgPool())",
         shape=(3, 5, 4, 2), inputs=_MASKED, apply_kwargs=_MK),
    dict(name='apply_fan_in_sum_sumpool',
         net="stax.serial(stax.Dense(3), stax.FanOut(2), stax.parallel("
             "stax.Relu(), stax.Dense(3)), stax.FanInSum(), "
             "stax.GlobalSumPool())",
         shape=(3, 6, 2), inputs=_MASKED, apply_kwargs=_MK),
]
