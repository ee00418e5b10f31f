"""Benchmark workloads shared by nt_gp and neural-tangents runs.

Each workload's `net` is an expression over `stax`, evaluated with either
library's `stax`, so both compute exactly the same kernel.
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
