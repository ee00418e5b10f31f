"""Benchmark workloads shared by nt_gp and neural-tangents runs.

Each workload's `net` is an expression over `stax` (and `tanh`: the
library's elementwise tanh), evaluated with either library's `stax`, so both
compute exactly the same kernel.
"""
WORKLOADS = {
    # Foundation issue: depth-5 ReLU MLP on N=4000, D=784.
    'mlp5': dict(
        net='stax.serial(*[stax.Dense(512, W_std=1.5, b_std=0.05), '
            'stax.Relu()] * 5, stax.Dense(1, W_std=1.5, b_std=0.05))',
        shape=(4000, 784)),
    # 3 x (3x3 SAME conv + ReLU) + Flatten + Dense on 256 images 32x32x3.
    'cnn3_flatten': dict(
        net='stax.serial(*[stax.Conv(1, (3, 3), padding="SAME", '
            'W_std=2 ** 0.5, b_std=0.1), stax.Relu()] * 3, stax.Flatten(), '
            'stax.Dense(1, W_std=2 ** 0.5, b_std=0.1))',
        shape=(256, 32, 32, 3)),
    # Myrtle-5: 3x3 SAME convs, ReLU, two 2x2 average pools, GAP, Dense;
    # 32 images 16x16x3.
    'myrtle5': dict(
        net='stax.serial('
            'stax.Conv(1, (3, 3), padding="SAME", W_std=2 ** 0.5, b_std=0.),'
            ' stax.Relu(),'
            ' stax.Conv(1, (3, 3), padding="SAME", W_std=2 ** 0.5, b_std=0.),'
            ' stax.Relu(), stax.AvgPool((2, 2), (2, 2)),'
            ' stax.Conv(1, (3, 3), padding="SAME", W_std=2 ** 0.5, b_std=0.),'
            ' stax.Relu(), stax.AvgPool((2, 2), (2, 2)),'
            ' stax.Conv(1, (3, 3), padding="SAME", W_std=2 ** 0.5, b_std=0.),'
            ' stax.Relu(), stax.GlobalAvgPool(),'
            ' stax.Dense(10, W_std=2 ** 0.5, b_std=0.))',
        shape=(32, 16, 16, 3)),
}

# Small workloads, where the first call (trace + compile) is most of what a
# user waits for; `compare.py` measures them beside `WORKLOADS`.
FIRST_CALL_WORKLOADS = {
    # A depth-3 ReLU MLP on 1000 x 256 inputs.
    'mlp3_n1000': dict(
        net='stax.serial(*[stax.Dense(512, W_std=1.5, b_std=0.05), '
            'stax.Relu()] * 3, stax.Dense(1, W_std=1.5, b_std=0.05))',
        shape=(1000, 256)),
    # A transformer block (softmax self-attention with a residual, LayerNorm,
    # ReLU MLP) on 64 sequences of 16 tokens x 8 features, GAP readout.
    'attention': dict(
        net='stax.serial(stax.Dense(16, W_std=1.2, b_std=0.1), '
            'stax.FanOut(2), stax.parallel(stax.Identity(), '
            'stax.GlobalSelfAttention(16, 4, 4, 2, W_key_std=1.1, '
            'W_value_std=1.2, W_query_std=0.9, W_out_std=1.0, b_std=0.1)), '
            'stax.FanInSum(), stax.LayerNorm(), '
            'stax.Dense(16, W_std=1.3, b_std=0.1), stax.Relu(), '
            'stax.GlobalAvgPool(), stax.Dense(1, W_std=1.0, b_std=0.1))',
        shape=(64, 16, 8)),
    # Any activation by Gauss-Hermite quadrature (tanh, degree 25) on
    # 500 x 16 inputs.
    'numerical_n500': dict(
        net='stax.serial(stax.Dense(512, W_std=1.5, b_std=0.1), '
            'stax.ElementwiseNumerical(tanh, deg=25), stax.Dense(1))',
        shape=(500, 16)),
}

ALL_WORKLOADS = {**WORKLOADS, **FIRST_CALL_WORKLOADS}
