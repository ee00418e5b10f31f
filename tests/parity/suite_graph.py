"""Graph networks (`Aggregate`) and constant contractions (`DotGeneral`)
compared with neural-tangents (float64).

Each graph case draws one graph per input example (`pattern`, see
harness.py): dense weighted adjacency tensors for `'DENSE'` and edge lists
(with padding edges) for `'SPARSE'`.
"""
_S1 = (3, 5, 2)          # N graphs, V vertices, C channels
_S2 = (3, 3, 4, 2)       # N, H, W, C

_D = 'stax.Dense(4, W_std=1.2, b_std=0.1)'
_OUT = 'stax.Dense(1, W_std=1.1, b_std=0.1)'

# Weighted adjacency (N, V, V), about 40% of the edges present.
_ADJ1 = ('(rng.rand(shape[0], shape[1], shape[1]) < 0.4) * '
         'rng.rand(shape[0], shape[1], shape[1])')
# (N, H, W, H, W) adjacency between pixels.
_ADJ2 = ('(rng.rand(shape[0], *shape[1:3], *shape[1:3]) < 0.3) * '
         'rng.randn(shape[0], *shape[1:3], *shape[1:3])')
# Edge lists (N, E, 2) over one axis; -1 heads are padding, -1 tails stand
# for the last vertex.
_EDGES1 = 'rng.randint(-1, shape[1], size=(shape[0], 8, 2))'
# Edge lists (N, E, K=2, 2) over (H, W).
_EDGES2 = ('np.stack([rng.randint(-1, shape[1], size=(shape[0], 10, 2)), '
           'rng.randint(0, shape[2], size=(shape[0], 10, 2))], 2)')
# Integer edge counts as a dense (N, H, W, H, W) adjacency: the same graphs
# given to SPARSE by `test_sparse_equals_dense_reference`.
_COUNTS2 = ('(lambda e, a: [np.add.at(a, (np.arange(e.shape[0])[:, None], '
            'e[..., 0, 0], e[..., 1, 0], e[..., 0, 1], e[..., 1, 1]), 1.), '
            'a][1])(np.stack([rng.randint(0, shape[1], size=(shape[0], 10, '
            '2)), rng.randint(0, shape[2], size=(shape[0], 10, 2))], 2), '
            'np.zeros((shape[0],) + shape[1:3] * 2))')

_MASKED = 'np.where(rng.rand(*shape[:-1], 1) < 0.3, -7., rng.randn(*shape))'


def _net(*layers):
  return 'stax.serial(' + ', '.join(layers) + ')'


SUITE = [
    # --- Aggregate, DENSE ---------------------------------------------------
    dict(name='dense_1d_gcn_sumpool',
         net=_net(_D, 'stax.Relu()', 'stax.Aggregate()', _D, 'stax.Erf()',
                  'stax.Aggregate()', 'stax.GlobalSumPool()', _OUT),
         shape=_S1, n2=2, pattern=_ADJ1),
    dict(name='dense_2d_all_axes_gap',
         net=_net(_D, 'stax.Relu()', 'stax.Aggregate(aggregate_axis=(1, 2))',
                  _D, 'stax.Relu()', 'stax.GlobalAvgPool()', _OUT),
         shape=_S2, n2=2, pattern=_ADJ2),
    dict(name='dense_2d_one_axis_conv_flatten',
         net=_net("stax.Conv(4, (2, 2), padding='SAME', W_std=1.2, "
                  "b_std=0.1)", 'stax.Relu()', 'stax.Aggregate(aggregate_axis=2)',
                  'stax.Flatten()', _OUT),
         shape=_S2, n2=2, pattern='rng.randn(shape[0], shape[2], shape[2])'),
    dict(name='dense_to_dense_channels_first',
         net=_net('stax.Dense(4, 1.2, 0.1, channel_axis=1)', 'stax.Relu()',
                  'stax.Aggregate(aggregate_axis=2, channel_axis=1, '
                  'to_dense=lambda p: 2. * p - 1.)',
                  'stax.GlobalAvgPool(channel_axis=1)', _OUT),
         shape=(3, 2, 5), n2=2, pattern='rng.rand(shape[0], 5, 5)'),
    dict(name='dense_2d_counts_conv_gap',
         net=_net("stax.Conv(4, (2, 2), padding='SAME', W_std=1.2, "
                  "b_std=0.1)", 'stax.Relu()',
                  'stax.Aggregate(aggregate_axis=(1, 2))', _D, 'stax.Relu()',
                  'stax.GlobalAvgPool()', _OUT),
         shape=_S2, n2=2, pattern=_COUNTS2),
    dict(name='dense_masked_1d_gap',
         net=_net(_D, 'stax.Relu()', 'stax.Aggregate()', _D, 'stax.Relu()',
                  'stax.GlobalAvgPool()', _OUT),
         shape=_S1, n2=2, pattern=_ADJ1, inputs=_MASKED,
         kernel_kwargs=dict(mask_constant=-7.)),
    # --- Aggregate, SPARSE --------------------------------------------------
    dict(name='sparse_1d_padded_gap',
         net=_net(_D, 'stax.Relu()', "stax.Aggregate(implementation='SPARSE')",
                  _D, 'stax.Relu()', "stax.Aggregate(implementation='SPARSE')",
                  'stax.GlobalAvgPool()', _OUT),
         shape=_S1, n2=2, pattern=_EDGES1),
    # Axes given out of order (neural-tangents sorts them). After `Dense`
    # only: neural-tangents' SPARSE kernel ignores the axis order of its
    # convolution outputs (see `test_sparse_equals_dense_reference`).
    dict(name='sparse_2d_two_axes_flatten',
         net=_net(_D, 'stax.Erf()',
                  "stax.Aggregate(aggregate_axis=(2, 1), "
                  "implementation='SPARSE')", 'stax.Flatten()', _OUT),
         shape=_S2, n2=2, pattern=_EDGES2),
    dict(name='sparse_masked_1d_sumpool',
         net=_net(_D, 'stax.Relu()', "stax.Aggregate(implementation='SPARSE')",
                  'stax.GlobalSumPool()', _OUT),
         shape=_S1, n2=2, pattern=_EDGES1, inputs=_MASKED,
         kernel_kwargs=dict(mask_constant=-7.)),
    # --- DotGeneral ---------------------------------------------------------
    dict(name='dot_rhs_scalar_dense',
         net=_net('stax.Dense(3, 1.3, 0.2)', 'stax.Relu()',
                  'stax.DotGeneral(rhs=2.)', _OUT), shape=(3, 4), n2=2),
    dict(name='dot_rhs_difference_of_rows_gap',
         net=_net("stax.Conv(4, (1, 2), W_std=1.3, b_std=0.1)", 'stax.Relu()',
                  'stax.DotGeneral(rhs=np.array([1., -1.]), '
                  'dimension_numbers=(((1,), (0,)), ((), ())))',
                  'stax.GlobalAvgPool()', _OUT), shape=(3, 2, 4, 2), n2=2),
    # A constant lhs puts its free axes first: the batch axis moves to 1.
    dict(name='dot_lhs_mix_rows_relu_gap',
         net=_net("stax.Conv(4, (1, 2), W_std=1.3, b_std=0.1)",
                  'stax.DotGeneral(lhs=np.array([[0., 1.], [1., 0.5]]), '
                  'dimension_numbers=(((1,), (1,)), ((), ())))', 'stax.Relu()',
                  'stax.GlobalAvgPool(batch_axis=1)', _OUT),
         shape=(3, 2, 4, 2), n2=2),
    dict(name='dot_lhs_1d_new_axis_flatten',
         net=_net("stax.Conv(3, (2,), W_std=1.1, b_std=0.2)", 'stax.Relu()',
                  'stax.DotGeneral(lhs=np.arange(6.).reshape(2, 3) / 5. - .4, '
                  'dimension_numbers=(((1,), (1,)), ((), ())))',
                  'stax.Flatten(batch_axis=1)', _OUT), shape=(3, 4, 2), n2=2),
    dict(name='dot_rhs_free_axis_diagonal_flatten',
         net=_net("stax.Conv(3, (2,), W_std=1.1, b_std=0.2)", 'stax.Relu()',
                  'stax.DotGeneral(rhs=np.arange(12.).reshape(3, 4) / 5.)',
                  'stax.Flatten()', _OUT), shape=(3, 4, 2), n2=2),
    dict(name='dot_masked_lhs_gap',
         net=_net("stax.Conv(4, (1, 2), padding='SAME', W_std=1.3, b_std=0.1)",
                  'stax.DotGeneral(lhs=np.array([[0., 1.], [0., 0.5]]), '
                  'dimension_numbers=(((1,), (1,)), ((), ())))', 'stax.Relu()',
                  'stax.GlobalAvgPool(batch_axis=1)', _OUT),
         shape=(3, 2, 4, 2), n2=2, inputs=_MASKED, kernel_kwargs=dict(mask_constant=-7.)),
]

APPLY_SUITE = [
    dict(name='apply_dense_1d',
         net=_net('stax.Dense(4)', 'stax.Aggregate()'), shape=(3, 5, 2),
         pattern='rng.randn(shape[0], shape[1], shape[1])'),
    dict(name='apply_sparse_2d_unsorted_axes',
         net=_net('stax.Dense(4)', "stax.Aggregate(aggregate_axis=(2, 1), "
                  "implementation='SPARSE')"), shape=(3, 3, 4, 2),
         pattern=('np.stack([rng.randint(-1, 3, size=(shape[0], 9, 2)), '
                  'rng.randint(-1, 4, size=(shape[0], 9, 2))], 2)')),
    dict(name='apply_sparse_masked_1d',
         net=_net('stax.Dense(4)', "stax.Aggregate(implementation='SPARSE')",
                  'stax.GlobalAvgPool()'), shape=(3, 5, 2),
         pattern='rng.randint(-1, 5, size=(3, 8, 2))', inputs=_MASKED,
         apply_kwargs=dict(mask_constant=-7.)),
    dict(name='apply_dot_lhs_masked',
         net=_net('stax.Conv(3, (1, 2))',
                  'stax.DotGeneral(lhs=np.array([[0., 1.], [0., 0.5]]), '
                  'dimension_numbers=(((1,), (1,)), ((), ())))'),
         shape=(3, 2, 4, 2), inputs=_MASKED,
         apply_kwargs=dict(mask_constant=-7.)),
    dict(name='apply_dot_rhs_batch_pair',
         net=_net('stax.Dense(3)',
                  'stax.DotGeneral(rhs=np.arange(12.).reshape(3, 4), '
                  'dimension_numbers=(((), ()), ((0,), (0,))))'),
         shape=(3, 5, 2)),
]
