"""Convolutional architectures compared with neural-tangents (float64)."""
_I2 = (3, 6, 6, 2)      # NHWC
_I1 = (3, 8, 2)         # NWC
_I3 = (2, 4, 4, 3, 2)   # NDHWC


def _c(ch, f, *args, **kw):
  extra = ''.join(f', {a!r}' for a in args) + ''.join(
      f', {k}={v!r}' for k, v in kw.items())
  return f'stax.Conv({ch}, {f!r}{extra}, W_std=1.3, b_std=0.2)'


def _net(*layers):
  return 'stax.serial(' + ', '.join(layers) + ')'


_R = 'stax.Relu()'
_D = 'stax.Dense(1, W_std=1.1, b_std=0.1)'
_GAP = 'stax.GlobalAvgPool()'
_FL = 'stax.Flatten()'

SUITE = [
    # 1-D
    dict(name='conv1d_valid_flatten',
         net=_net(_c(4, (3,)), _R, _c(4, (2,)), _FL, _D), shape=_I1, n2=2),
    dict(name='conv1d_same_stride_gap',
         net=_net(_c(4, (3,), (2,), 'SAME'), _R, _c(4, (3,), padding='SAME'),
                  _GAP, _D), shape=_I1, n2=2),
    dict(name='conv1d_circular_gap',
         net=_net(_c(4, (3,), padding='CIRCULAR'), 'stax.Erf()',
                  _c(4, (4,), (2,), 'CIRCULAR'), _GAP, _D), shape=_I1, n2=2),
    dict(name='conv1d_abs_sumpool',
         net=_net(_c(4, (2,), padding='SAME'), 'stax.Abs()',
                  'stax.SumPool((3,), (2,), "SAME")', _c(3, (2,)), _FL, _D),
         shape=_I1, n2=2),
    # 2-D
    dict(name='conv2d_valid_flatten',
         net=_net(_c(4, (3, 3)), _R, _c(4, (2, 2)), _R, _FL, _D),
         shape=_I2, n2=2),
    dict(name='conv2d_same_gap',
         net=_net(_c(4, (3, 3), padding='SAME'), _R,
                  _c(4, (3, 3), padding='SAME'), _R, _GAP, _D),
         shape=_I2, n2=2),
    dict(name='conv2d_circular_gap',
         net=_net(_c(4, (3, 3), padding='CIRCULAR'), _R,
                  _c(4, (2, 3), padding='CIRCULAR'), _GAP, _D),
         shape=_I2, n2=2),
    dict(name='conv2d_strided_same_flatten',
         net=_net(_c(4, (3, 3), (2, 2), 'SAME'), _R, _FL, _D),
         shape=_I2, n2=2),
    dict(name='conv2d_strided_valid_gap',
         net=_net(_c(4, (3, 2), (2, 1)), _R, _c(4, (2, 2), (1, 2)), _GAP, _D),
         shape=_I2, n2=2),
    dict(name='conv2d_full_override_flatten',
         net=_net(_c(4, (3, 3), padding='SAME'), _R, _FL, _D),
         shape=_I2, n2=2, kernel_kwargs=dict(diagonal_spatial=False)),
    dict(name='conv2d_standard',
         net=_net("stax.Conv(5, (3, 3), padding='SAME', W_std=1.2, b_std=0.3, "
                  "parameterization='standard')", _R,
                  "stax.Conv(3, (2, 2), W_std=0.9, b_std=0.1, "
                  "parameterization='standard')", _GAP,
                  "stax.Dense(2, 1.1, 0.2, parameterization='standard')"),
         shape=_I2, n2=2),
    dict(name='conv2d_no_bias',
         net=_net("stax.Conv(4, (3, 3), padding='SAME', W_std=1.4)", _R,
                  "stax.Conv(4, (3, 3), W_std=1.4)", _GAP,
                  "stax.Dense(1, W_std=1.)"), shape=_I2, n2=2),
    dict(name='conv2d_nchw',
         net=_net("stax.Conv(4, (3, 2), padding='SAME', W_std=1.3, b_std=0.2, "
                  "dimension_numbers=('NCHW', 'OIHW', 'NCHW'))", _R,
                  "stax.Conv(4, (2, 2), W_std=1.3, b_std=0.2, "
                  "dimension_numbers=('NCHW', 'OIHW', 'NCHW'))",
                  "stax.GlobalAvgPool(channel_axis=1)",
                  'stax.Dense(1, 1.1, 0.1)'),
         shape=(3, 2, 6, 5), n2=2),
    dict(name='conv2d_out_spec_permuted',
         net=_net("stax.Conv(4, (3, 2), padding='SAME', W_std=1.3, b_std=0.2, "
                  "dimension_numbers=('NHWC', 'HWIO', 'NWHC'))", _R,
                  "stax.Conv(4, (2, 3), W_std=1.3, b_std=0.2, "
                  "dimension_numbers=('NWHC', 'WHIO', 'NHWC'))", _GAP, _D),
         shape=(3, 6, 5, 2), n2=2),
    # 3-D
    dict(name='conv3d_same_flatten',
         net=_net(_c(3, (3, 3, 2), padding='SAME'), _R, _c(3, (2, 2, 2)),
                  _FL, _D), shape=_I3, n2=2),
    dict(name='conv3d_valid_gap',
         net=_net(_c(3, (2, 2, 2)), 'stax.Erf()', _c(3, (2, 2, 1), (1, 2, 1)),
                  _GAP, _D), shape=_I3, n2=2),
    # Pooling
    dict(name='avgpool_valid',
         net=_net(_c(4, (3, 3), padding='SAME'), _R,
                  'stax.AvgPool((2, 2), (2, 2))', _c(4, (2, 2)), _R, _GAP, _D),
         shape=_I2, n2=2),
    dict(name='avgpool_same_normalize_edges',
         net=_net(_c(4, (2, 2)), _R,
                  "stax.AvgPool((3, 3), (2, 2), 'SAME', normalize_edges=True)",
                  _GAP, _D), shape=_I2, n2=2),
    dict(name='avgpool_same_no_normalize',
         net=_net(_c(4, (2, 2)), _R,
                  "stax.AvgPool((3, 2), (1, 2), 'SAME')", _FL, _D),
         shape=_I2, n2=2),
    dict(name='avgpool_circular',
         net=_net(_c(4, (3, 3), padding='CIRCULAR'), _R,
                  "stax.AvgPool((3, 3), (2, 2), 'CIRCULAR')", _GAP, _D),
         shape=_I2, n2=2),
    dict(name='sumpool_flatten',
         net=_net(_c(4, (2, 2)), _R, "stax.SumPool((2, 2), (1, 1))", _FL, _D),
         shape=_I2, n2=2),
    dict(name='global_sum_pool',
         net=_net(_c(4, (3, 3), padding='SAME'), _R,
                  'stax.GlobalSumPool()', _D), shape=_I2, n2=2),
    dict(name='myrtle5_small',
         net=_net(*[_c(4, (3, 3), padding='SAME'), _R] * 2,
                  'stax.AvgPool((2, 2), (2, 2))',
                  _c(4, (3, 3), padding='SAME'), _R,
                  'stax.AvgPool((2, 2), (2, 2))',
                  _c(4, (3, 3), padding='SAME'), _R, _GAP,
                  'stax.Dense(10, W_std=1.2, b_std=0.1)'),
         shape=(2, 8, 8, 3), n2=2),
    dict(name='wide_resnet_block',
         net=_net(_c(4, (3, 3), padding='SAME'),
                  'stax.FanOut(2)',
                  'stax.parallel(stax.serial(stax.Relu(), '
                  + _c(4, (3, 3), padding='SAME') + ', stax.Relu(), '
                  + _c(4, (3, 3), padding='SAME') + '), ' + _c(4, (1, 1)) + ')',
                  'stax.FanInSum()', _R, _GAP, _D), shape=_I2, n2=2),
    dict(name='fan_in_concat_spatial',
         net=_net('stax.FanOut(2)',
                  'stax.parallel(' + _c(3, (3, 3), padding='SAME') + ', '
                  + _c(3, (2, 2), padding='SAME') + ')',
                  'stax.FanInConcat(axis=1)', _R, _GAP, _D),
         shape=_I2, n2=2),
    dict(name='fan_in_concat_channel_conv',
         net=_net('stax.FanOut(2)',
                  'stax.parallel(' + _c(3, (3, 3), padding='SAME') + ', '
                  + _c(5, (2, 2), padding='SAME') + ')',
                  'stax.FanInConcat()', _c(3, (2, 2)), _R, _GAP, _D),
         shape=_I2, n2=2),
    # Transposed and local convolutions
    dict(name='conv_transpose_same',
         net=_net(_c(4, (2, 2), padding='SAME'), _R,
                  "stax.ConvTranspose(4, (3, 3), (2, 2), 'SAME', W_std=1.2, "
                  "b_std=0.1)", _R, _GAP, _D), shape=(2, 4, 4, 2), n2=2),
    dict(name='conv_transpose_valid',
         net=_net(_c(4, (2, 2)), _R,
                  "stax.ConvTranspose(4, (3, 2), (1, 2), 'VALID', W_std=1.2, "
                  "b_std=0.1)", _R, _FL, _D), shape=(2, 4, 5, 2), n2=2),
    dict(name='conv_transpose_circular',
         net=_net(_c(4, (2, 2), padding='SAME'), _R,
                  "stax.ConvTranspose(4, (3, 3), (2, 1), 'CIRCULAR', W_std=1.2, "
                  "b_std=0.1)", _R, _GAP, _D), shape=(2, 4, 4, 2), n2=2),
    dict(name='conv_transpose_1d_standard',
         net=_net(_c(4, (2,), padding='SAME'), _R,
                  "stax.ConvTranspose(4, (3,), (2,), 'SAME', W_std=1.2, "
                  "b_std=0.1, parameterization='standard')", _R, _GAP, _D),
         shape=(2, 5, 2), n2=2),
    dict(name='conv_local_flatten',
         net=_net(_c(4, (3, 3), padding='SAME'), _R,
                  "stax.ConvLocal(4, (2, 2), W_std=1.2, b_std=0.3)", _R, _FL,
                  _D), shape=_I2, n2=2),
    dict(name='conv_local_gap',
         net=_net(_c(4, (3, 3), padding='SAME'), _R,
                  "stax.ConvLocal(4, (3, 3), padding='SAME', W_std=1.2, "
                  "b_std=0.3)", _R, _GAP, _D), shape=_I2, n2=2),
    dict(name='conv_local_standard_full',
         net=_net(_c(4, (3,), padding='SAME'), _R,
                  "stax.ConvLocal(4, (2,), W_std=1.2, b_std=0.3, "
                  "parameterization='standard')", _R, _c(3, (2,)), _GAP, _D),
         shape=_I1, n2=2),
    # Normalisation and dense layers on spatial activations.
    dict(name='layernorm_spatial_gap',
         net=_net(_c(4, (3, 3), padding='SAME'),
                  'stax.LayerNorm(axis=(1, 2, 3))', _R,
                  _c(4, (3, 3), padding='SAME'), _R, _GAP, _D),
         shape=_I2, n2=2),
    dict(name='layernorm_channel_flatten',
         net=_net(_c(4, (3, 3), padding='SAME'), 'stax.LayerNorm()', _R,
                  _c(4, (2, 2)), _FL, _D), shape=_I2, n2=2),
    dict(name='dense_between_convs',
         net=_net(_c(4, (3, 3), padding='SAME'), _R,
                  'stax.Dense(6, 1.2, 0.1)', 'stax.Erf()',
                  _c(4, (2, 2)), _GAP, _D), shape=_I2, n2=2),
]
