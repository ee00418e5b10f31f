"""`Index` and `ImageResize` inside networks, compared with neural-tangents."""
_I2 = (4, 6, 6, 2)      # NHWC
_I1 = (3, 8, 2)         # NWC


def _c(ch, f, *args, **kw):
  extra = ''.join(f', {a!r}' for a in args) + ''.join(
      f', {k}={v!r}' for k, v in kw.items())
  return f'stax.Conv({ch}, {f!r}{extra}, W_std=1.3, b_std=0.2)'


def _net(*layers):
  return 'stax.serial(' + ', '.join(layers) + ')'


def _ix(idx, **kw):
  extra = ''.join(f', {k}={v!r}' for k, v in kw.items())
  return f'stax.Index(stax.Slice[{idx}]{extra})'


def _rs(shape, method, **kw):
  extra = ''.join(f', {k}={v!r}' for k, v in kw.items())
  return f'stax.ImageResize({shape!r}, {method!r}{extra})'


_R = 'stax.Relu()'
_D = 'stax.Dense(1, W_std=1.1, b_std=0.1)'
_GAP = 'stax.GlobalAvgPool()'
_FL = 'stax.Flatten()'
_SAME3 = _c(3, (3, 3), padding='SAME')

# Inputs whose channels are all equal to 10 (the mask constant) at ~30% of
# the positions.
_MASKED = ('(lambda a, m: np.where(m, 10., a))(rng.randn(*shape), '
           'rng.rand(*shape[:-1], 1) < 0.3)')

SUITE = [
    # ---------------------------------------------------------------- Index
    dict(name='index_batch_step_flatten',
         net=_net(_SAME3, _R, _ix('::2'), _c(3, (2, 2)), _R, _FL, _D),
         shape=_I2, n2=3),
    dict(name='index_spatial_negative_step_gap',
         net=_net(_SAME3, _R, _ix(':, -1:0:-2, 4::-1'), _c(3, (2, 2)), _R,
                  _GAP, _D), shape=_I2, n2=2),
    dict(name='index_int_row_to_1d_gap',
         net=_net(_SAME3, _R, _ix(':, 2, ...'), _c(3, (2,)), _R, _GAP, _D),
         shape=_I2, n2=2),
    dict(name='index_int_col_to_1d_flatten',
         net=_net(_SAME3, _R, _ix('1:, :, -2'), _c(3, (3,), padding='SAME'),
                  _R, _FL, _D), shape=_I2, n2=3),
    dict(name='index_ellipsis_crop_flatten',
         net=_net(_SAME3, _R, _ix('-3:, ..., -4:, :'), _SAME3, _R, _FL, _D),
         shape=_I2, n2=4),
    dict(name='index_nchw_int_spatial',
         net=_net("stax.Conv(3, (3, 3), padding='SAME', W_std=1.3, b_std=0.2,"
                  " dimension_numbers=('NCHW', 'OIHW', 'NCHW'))", _R,
                  _ix('::2, :, 1:, 3', channel_axis=1),
                  'stax.GlobalAvgPool(channel_axis=1)', _D),
         shape=(4, 2, 5, 6), n2=3),
    dict(name='index_masked_1d_gap',
         net=_net(_c(3, (3,), padding='SAME'), _R, _ix('1:, 1::2'),
                  _c(3, (2,), padding='SAME'), _R, _GAP, _D),
         shape=(3, 9, 2), n2=3, inputs=_MASKED,
         kernel_kwargs=dict(mask_constant=10.)),
    # ---------------------------------------------------------- ImageResize
    # (2-D resizes come first or after an even number of convolutions: in
    # neural-tangents 0.6.5 the resized axes are swapped when the kernel's
    # spatial axes are stored reversed, i.e. after an odd number of them.)
    dict(name='resize_linear_up_2d_input_gap',
         net=_net(_rs((-1, 9, 7, -1), 'linear'), _SAME3, _R, _SAME3, _R,
                  _GAP, _D), shape=_I2, n2=2),
    dict(name='resize_linear_down_antialias_flatten',
         net=_net(_SAME3, _R, _SAME3, _R, _rs((-1, 4, 3, -1), 'linear'),
                  _SAME3, _R, _FL, _D), shape=_I2, n2=2),
    dict(name='resize_linear_down_no_antialias_gap',
         net=_net(_rs((-1, 4, 3, -1), 'bilinear', antialias=False), _SAME3,
                  _R, _GAP, _D), shape=_I2, n2=2),
    # The 1x1 convolution (W_std=1, no bias) keeps the NNGP and makes the
    # number of convolutions before the resize even.
    dict(name='resize_linear_mixed_same_size_gap',
         net=_net(_SAME3, _R, 'stax.Conv(3, (1, 1))',
                  _rs((-1, 6, 4, -1), 'triangle'),
                  _SAME3, _R, _GAP, _D), shape=_I2, n2=2),
    # 10 -> 25 rounds output 2 (at exactly 2.5 * 10 / 25 = 1) down to 0.
    dict(name='resize_nearest_up_1d_gap',
         net=_net(_c(3, (3,), padding='SAME'), _R,
                  _rs((-1, 25, -1), 'nearest'), _c(3, (3,)), _R, _GAP, _D),
         shape=(3, 10, 2), n2=2),
    dict(name='resize_trilinear_3d_input_gap',
         net=_net(_rs((-1, 5, 3, 4, -1), 'trilinear'),
                  _c(3, (2, 2, 2)), _R, _GAP, _D),
         shape=(2, 4, 4, 3, 2), n2=2),
    dict(name='resize_batch_linear_gap',
         net=_net(_SAME3, _R, _rs((3, -1, -1, -1), 'linear'), _SAME3, _R,
                  _GAP, _D), shape=_I2, n2=2),
    dict(name='resize_batch_and_spatial_nearest_flatten',
         net=_net(_rs((6, 3, 8, -1), 'nearest'), _SAME3, _R, _FL, _D),
         shape=_I2, n2=3),
    dict(name='resize_batch_dense',
         net=_net('stax.Dense(4, 1.2, 0.1)', _R,
                  _rs((2, -1), 'linear'), 'stax.Dense(3, 1.1, 0.1)'),
         shape=(5, 3), n2=4),
    dict(name='resize_masked_1d_linear_gap',
         net=_net(_c(3, (3,), padding='SAME'), _R,
                  _rs((-1, 11, -1), 'linear'), _c(3, (3,), padding='SAME'),
                  _R, _GAP, _D), shape=(3, 8, 2), n2=3, inputs=_MASKED,
         kernel_kwargs=dict(mask_constant=10.)),
    dict(name='resize_then_index_gap',
         net=_net(_rs((-1, 8, 5, -1), 'linear'), _ix(':, 1::2'), _SAME3, _R,
                  _GAP, _D), shape=_I2, n2=2),
]
