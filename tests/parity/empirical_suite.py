"""Networks whose empirical NNGP/NTK are compared with neural-tangents 0.6.5.

Each case: `name`, `net` (an expression over `stax`, evaluated with
neural-tangents' stax in the reference process and nt_gp's here), `shape`
(of `x1`; `x2` has `n2` rows) and `options`: pairs `(option, tags)` with
`option` a name from `OPTIONS` (the `(trace_axes, diagonal_axes)` to compare)
and `tags` among `'sym'` (`x2=None`) and `'cross'` (`x2` given). Parameters are drawn by
`empirical_harness.make_params` from the shapes of nt_gp's `init_fn` and
handed to both libraries (same pytree layout: Dense `(W, b)` with `W` of shape
`(in, out)`, Conv `(W, b)` with `W` in HWIO).
"""
OPTIONS = {
    'traced': ((-1,), ()),
    'full': ((), ()),
    'diag_last': ((), (-1,)),
    'diag_batch': ((-1,), (0,)),   # with x2 = None (needs N1 == N2)
}

_SYM, _CROSS, _BOTH = ('sym',), ('cross',), ('sym', 'cross')
_ALL = (('traced', _BOTH), ('full', _CROSS), ('diag_last', _CROSS),
        ('diag_batch', _SYM))

SUITE = [
    dict(name='dense_relu',
         net='stax.serial(stax.Dense(16, 1.5, 0.1), stax.Relu(), '
             'stax.Dense(3, 1.2, 0.2))',
         shape=(4, 5), options=_ALL),
    dict(name='dense_erf_standard',
         net="stax.serial(stax.Dense(8, 1.3, 0.2, parameterization='standard'),"
             " stax.Erf(), stax.Dense(2, 0.9, 0.3, "
             "parameterization='standard'))",
         shape=(3, 4), options=(('full', _CROSS),)),
    dict(name='dense_deep_no_bias',
         net='stax.serial(stax.Dense(8, 1.1), stax.Relu(), stax.Dense(8, 1.2), '
             'stax.Erf(), stax.Dense(2))',
         shape=(3, 4), options=(('diag_batch', _SYM),)),
    dict(name='dense_on_sequence',
         net='stax.serial(stax.Dense(6, 1.2, 0.3), stax.Relu(), '
             'stax.Dense(2, 0.8, 0.1))',
         shape=(3, 4, 5), options=(('diag_last', _CROSS),)),
    dict(name='residual',
         net='stax.serial(stax.Dense(8, 1.3, 0.1), stax.FanOut(2), '
             'stax.parallel(stax.serial(stax.Relu(), stax.Dense(8, 1.2, 0.1)), '
             'stax.Identity()), stax.FanInSum(), stax.Relu(), '
             'stax.Dense(2, 1., 0.1))',
         shape=(3, 4), options=(('traced', _CROSS),)),
    dict(name='conv_avgpool_flatten',
         net="stax.serial(stax.Conv(4, (3, 3), padding='SAME', W_std=1.3, "
             "b_std=0.1), stax.Relu(), stax.AvgPool((2, 2)), stax.Flatten(), "
             "stax.Dense(2, 1.1, 0.05))",
         shape=(3, 6, 6, 2),
         options=(('traced', _CROSS), ('full', _SYM), ('diag_batch', _SYM))),
    dict(name='conv_strided_valid',
         net="stax.serial(stax.Conv(3, (2, 2), strides=(2, 1), "
             "padding='VALID', W_std=1.2, b_std=0.2), stax.Erf(), "
             "stax.Conv(2, (3, 3), padding='SAME', W_std=0.9), "
             "stax.GlobalAvgPool(), stax.Dense(2, 1.2))",
         shape=(2, 7, 6, 2), options=(('full', _CROSS),)),
    dict(name='conv_spatial_output',
         net="stax.serial(stax.Conv(3, (3, 3), padding='SAME', W_std=1.4, "
             "b_std=0.1), stax.Relu(), stax.Conv(2, (2, 2), W_std=1.1))",
         shape=(2, 4, 4, 2), options=(('diag_last', _SYM),)),
]
