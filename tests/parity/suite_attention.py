"""Self-attention networks compared with neural-tangents (float64).

Every attention mechanism, with and without positional embeddings (SUM and
CONCAT, embeddings in the values or not, identity and distance-decaying
covariances), linear and square-root scaling, on 1-D sequences and 2-D
images, with GlobalAvgPool / Flatten readouts, with and without masked
inputs. `APPLY_SUITE` compares the finite-width `apply_fn`s with the same
parameters (see apply_harness.py).
"""
_S1 = (3, 4, 2)        # N, L, C
_S2 = (3, 3, 2, 2)     # N, H, W, C

# About a third of the positions (all channels) equal the mask constant.
_MASKED = 'np.where(rng.rand(*shape[:-1], 1) < 0.35, -7., rng.randn(*shape))'
_MASKED_NAN = ('np.where(rng.rand(*shape[:-1], 1) < 0.35, np.nan, '
               'rng.randn(*shape))')
_MK = dict(mask_constant=-7.)

_D = 'stax.Dense(4, W_std=1.2, b_std=0.1)'
_OUT = 'stax.Dense(1, W_std=1.1, b_std=0.1)'
_GAP = 'stax.GlobalAvgPool()'
_FL = 'stax.Flatten()'
_CONV2 = "stax.Conv(4, (2, 2), padding='SAME', W_std=1.2, b_std=0.1)"


def _att(*args, **kw):
  params = [repr(a) for a in (4, 3, 3, 2) + args]
  params += [f'{k}={v!r}' if not k.endswith('_fn') else f'{k}={v}'
             for k, v in kw.items()]
  return 'stax.GlobalSelfAttention(' + ', '.join(params) + ')'


def _net(*layers):
  return 'stax.serial(' + ', '.join(layers) + ')'


_EXP = 'lambda d: ops.exp(-d / 2.)'
_POW = 'lambda d: 1. / (1. + d)'

SUITE = [
    # --- linear scaling, no positional embeddings -------------------------
    dict(name='softmax_1d_gap',
         net=_net(_D, _att(b_std=0.2), _GAP, _OUT), shape=_S1, n2=2),
    dict(name='softmax_1d_relu_flatten',
         net=_net(_D, _att(W_key_std=1.5, W_query_std=0.8, W_value_std=1.3,
                           W_out_std=0.9), 'stax.Relu()', _FL, _OUT),
         shape=_S1, n2=2),
    dict(name='identity_1d_gap',
         net=_net(_D, _att(attention_mechanism='IDENTITY', b_std=0.1), _GAP,
                  _OUT), shape=_S1, n2=2),
    dict(name='abs_2d_flatten',
         net=_net(_CONV2, 'stax.Relu()',
                  _att(attention_mechanism='ABS', W_key_std=0.7), _FL, _OUT),
         shape=_S2, n2=2),
    dict(name='relu_2d_gap',
         net=_net(_CONV2, _att(attention_mechanism='RELU', b_std=0.3),
                  'stax.Erf()', _GAP, _OUT), shape=_S2, n2=2),
    # --- square-root scaling (identity mechanism only) --------------------
    dict(name='identity_sqrt_1d_gap',
         net=_net(_D, _att(linear_scaling=False,
                           attention_mechanism='IDENTITY', b_std=0.2), _GAP,
                  _OUT), shape=_S1, n2=2),
    dict(name='identity_sqrt_sum_2d_flatten',
         net=_net(_CONV2, _att(linear_scaling=False,
                               attention_mechanism='IDENTITY',
                               pos_emb_type='SUM', W_pos_emb_std=0.8),
                  'stax.Relu()', _FL, _OUT), shape=_S2, n2=2),
    dict(name='identity_sqrt_concat_val_1d_gap',
         net=_net(_D, _att(linear_scaling=False,
                           attention_mechanism='IDENTITY',
                           pos_emb_type='CONCAT', n_chan_pos_emb=2,
                           val_pos_emb=True, pos_emb_decay_fn=_EXP), _GAP,
                  _OUT), shape=_S1, n2=2),
    # --- positional embeddings with linear scaling -------------------------
    dict(name='softmax_sum_1d_gap',
         net=_net(_D, _att(pos_emb_type='SUM'), _GAP, _OUT),
         shape=_S1, n2=2),
    dict(name='softmax_sum_val_decay_2d_flatten',
         net=_net(_CONV2, 'stax.Relu()',
                  _att(pos_emb_type='SUM', val_pos_emb=True,
                       pos_emb_decay_fn=_EXP, W_pos_emb_std=1.3), _FL, _OUT),
         shape=_S2, n2=2),
    dict(name='relu_concat_val_p1_1d_flatten',
         net=_net(_D, _att(attention_mechanism='RELU', pos_emb_type='CONCAT',
                           n_chan_pos_emb=3, val_pos_emb=True,
                           pos_emb_p_norm=1, pos_emb_decay_fn=_POW, b_std=0.1),
                  _FL, _OUT), shape=_S1, n2=2),
    dict(name='abs_concat_2d_gap',
         net=_net(_CONV2, _att(attention_mechanism='ABS',
                               pos_emb_type='CONCAT', pos_emb_decay_fn=_POW),
                  'stax.Relu()', _GAP, _OUT), shape=_S2, n2=2),
    dict(name='identity_sum_val_1d_full_batch',
         net=_net(_D, _att(attention_mechanism='IDENTITY', pos_emb_type='SUM',
                           val_pos_emb=True), _GAP, _OUT),
         shape=_S1, n2=2, get=('nngp', 'ntk', 'cov1'),
         kernel_kwargs=dict(diagonal_batch=False)),
    # A transformer block: attention + residual + LayerNorm, twice.
    dict(name='transformer_1d_gap',
         net=_net(_D, 'stax.repeat(stax.serial(stax.FanOut(2), '
                  'stax.parallel(stax.Identity(), ' +
                  _att(pos_emb_type='SUM', b_std=0.1) + '), stax.FanInSum(), '
                  'stax.LayerNorm(), stax.Dense(4, 1.3, 0.1), stax.Relu(), '
                  'stax.Dense(4, 1.1, 0.1)), 2)', _GAP, _OUT),
         shape=_S1, n2=2),
    # Channels first.
    dict(name='softmax_channels_first_gap',
         net=_net('stax.Dense(4, 1.2, 0.1, channel_axis=1)',
                  'stax.GlobalSelfAttention(4, 3, 3, 2, channel_axis=1, '
                  'pos_emb_type="CONCAT")',
                  'stax.GlobalAvgPool(channel_axis=1)', _OUT),
         shape=(3, 2, 4), n2=2),
    # --- masked inputs ------------------------------------------------------
    dict(name='masked_softmax_1d_gap',
         net=_net(_D, _att(b_std=0.2), _GAP, _OUT), shape=(3, 5, 2), n2=2,
         inputs=_MASKED, kernel_kwargs=_MK),
    dict(name='masked_relu_sum_val_1d_flatten',
         net=_net(_D, _att(attention_mechanism='RELU', pos_emb_type='SUM',
                           val_pos_emb=True), 'stax.Relu()', _FL, _OUT),
         shape=(3, 5, 2), n2=2, inputs=_MASKED, kernel_kwargs=_MK),
    dict(name='masked_identity_sqrt_concat_2d_gap',
         net=_net(_D, _att(linear_scaling=False,
                           attention_mechanism='IDENTITY',
                           pos_emb_type='CONCAT', n_chan_pos_emb=3,
                           b_std=0.3), _GAP, _OUT),
         shape=_S2, n2=2, inputs=_MASKED, kernel_kwargs=_MK),
    dict(name='masked_abs_concat_decay_2d_conv_gap',
         net=_net(_CONV2, 'stax.Relu()',
                  _att(attention_mechanism='ABS', pos_emb_type='CONCAT',
                       pos_emb_decay_fn=_EXP), 'stax.Erf()', _GAP, _OUT),
         shape=_S2, n2=2, inputs=_MASKED, kernel_kwargs=_MK),
    dict(name='masked_softmax_sum_layernorm_pool_flatten',
         net=_net("stax.Conv(4, (2,), (2,), 'SAME', W_std=1.2, b_std=0.1)",
                  'stax.Relu()',
                  _att(pos_emb_type='SUM', pos_emb_p_norm=1,
                       pos_emb_decay_fn=_POW), 'stax.LayerNorm()',
                  'stax.Relu()', "stax.AvgPool((2,), padding='SAME')", _FL,
                  _OUT),
         shape=(3, 6, 2), n2=2, inputs=_MASKED, kernel_kwargs=_MK),
    dict(name='masked_nan_softmax_concat_val_1d_gap',
         net=_net(_D, _att(pos_emb_type='CONCAT', val_pos_emb=True), _GAP,
                  _OUT), shape=(3, 5, 2), n2=2, inputs=_MASKED_NAN,
         kernel_kwargs=dict(mask_constant=float('nan'))),
]

APPLY_SUITE = [
    dict(name='apply_softmax_relu_gap',
         net=_net('stax.Dense(5, 1.2, 0.1)',
                  'stax.GlobalSelfAttention(4, 3, 2, 2, b_std=0.2)',
                  'stax.Relu()', _GAP, 'stax.Dense(1)'), shape=(3, 5, 2)),
    dict(name='apply_abs_sqrt_concat_decay_2d',
         net=_net('stax.Dense(5, 1.2, 0.1)',
                  "stax.GlobalSelfAttention(4, 3, 2, 2, linear_scaling=False, "
                  "attention_mechanism='ABS', pos_emb_type='CONCAT', "
                  "n_chan_pos_emb=3, pos_emb_decay_fn=lambda d: ops.exp(-d))",
                  _GAP), shape=(3, 3, 2, 2)),
    dict(name='apply_masked_sum_val_layernorm',
         net=_net('stax.Dense(5, 1.2, 0.1)',
                  "stax.GlobalSelfAttention(4, 3, 2, 2, pos_emb_type='SUM', "
                  "val_pos_emb=True, W_pos_emb_std=0.7)", 'stax.LayerNorm()',
                  _GAP), shape=(3, 5, 2), inputs=_MASKED,
         apply_kwargs=_MK),
    dict(name='apply_masked_relu_concat_conv',
         net=_net("stax.Conv(5, (2,), padding='SAME')", 'stax.Relu()',
                  "stax.GlobalSelfAttention(4, 3, 2, 2, attention_mechanism="
                  "'RELU', pos_emb_type='CONCAT')"), shape=(3, 5, 2),
         inputs=_MASKED, apply_kwargs=_MK),
    dict(name='apply_masked_identity_2d',
         net=_net(_CONV2, "stax.GlobalSelfAttention(4, 3, 2, 3, "
                  "attention_mechanism='IDENTITY', b_std=0.5)", _FL),
         shape=_S2, inputs=_MASKED, apply_kwargs=_MK),
]
