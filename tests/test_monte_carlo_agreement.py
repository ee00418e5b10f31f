"""Analytic kernels agree with Monte Carlo estimates from finite networks.

For each architecture we draw `S` independent initialisations with `init_fn`,
evaluate the finite network with `apply_fn` (float64 activations) and form
per-seed empirical kernels

  NNGP_s = f_s f_s^T / n_out,      NTK_s = sum_params J_s J_s^T / n_out

(`f_s` of shape (N, n_out); the NTK contracts the output axis and divides by
its width, i.e. neural-tangents' `trace_axes=(-1,)`). The `S` per-seed kernels
are i.i.d., so the Monte Carlo mean has the per-entry standard error
`SE = std_s / sqrt(S)` computed from the samples themselves. We assert

  |mean - analytic| <= Z * SE + bias

with Z = 5 (a false alarm on any of the few dozen entries has probability
< 1e-5) and `bias` the finite-width allowance:

* Networks with a single hidden affine layer between the input and the first
  nonlinearity (and only affine / pooling / readout layers after it) have
  pre-activations that are *exactly* Gaussian at any width, and the readout
  is linear in their features, so the expectation of the per-seed kernel is
  exactly the analytic kernel: `bias = 0`.
* Each further hidden nonlinearity sees pre-activations that are Gaussian
  only given the empirical covariance `q_hat` of the previous layer, whose
  entries fluctuate with variance O(q^2 / width). The kernel map is smooth
  in `q` away from the diagonal (and linear on it for ReLU), so the mean
  shifts by O(q / width) (Yaida 2020; Roberts, Yaida & Hanin 2022). We
  allow `BIAS_C * scale / width` per extra hidden layer, with `scale` the
  largest analytic variance and `BIAS_C = 3`, a generous constant: at
  width 512 this is 0.6% of the scale, well below the statistical band
  (~5%).

Every test also checks that the band has power: a kernel mis-scaled by a few
percent (or a wrong nonlinearity) falls outside it.
"""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import stax

Z = 5.
BIAS_C = 3.


# ----------------------------------------------------------------------------
# Monte Carlo machinery.
# ----------------------------------------------------------------------------
def _key(seed):
  return tf.constant([20240607, seed], tf.int64)


def mc_nngp_samples(init_fn, apply_fn, x, n_seeds):
  """Per-seed empirical NNGPs `f f^T / n_out`, shape (S, N, N)."""
  x = tf.constant(x, tf.float64)

  @tf.function(autograph=False)
  def sample(key):
    _, params = init_fn(key, tuple(x.shape))
    f = apply_fn(params, x)
    return tf.matmul(f, f, transpose_b=True) / f.shape[-1]

  return np.stack([sample(_key(s)).numpy() for s in range(n_seeds)])


def mc_ntk_samples(init_fn, apply_fn, x, n_seeds):
  """Per-seed empirical NTKs `sum_p J_p J_p^T / n_out`, shape (S, N, N).

  Jacobians of `apply_fn` w.r.t. every parameter tensor by `tf.GradientTape`,
  contracted over the output axis (trace_axes=(-1,)) and divided by its size.
  """
  x = tf.constant(x, tf.float64)

  @tf.function(autograph=False)
  def sample(key):
    _, params = init_fn(key, tuple(x.shape))
    flat = [tf.cast(p, tf.float64) for p in tf.nest.flatten(params)]
    with tf.GradientTape() as tape:
      tape.watch(flat)
      f = apply_fn(tf.nest.pack_sequence_as(params, flat), x)   # (N, n_out)
    jacs = tape.jacobian(f, flat, experimental_use_pfor=True)
    n, n_out = f.shape
    ntk = tf.zeros((n, n), tf.float64)
    for j in jacs:
      j = tf.reshape(j, (n, n_out, -1))
      ntk += tf.einsum('iap,jap->ij', j, j)
    return ntk / n_out

  return np.stack([sample(_key(s)).numpy() for s in range(n_seeds)])


def check_agreement(samples, analytic, bias=0., wrong=None):
  """|mean - analytic| <= Z SE + bias entrywise; `wrong` must be rejected."""
  analytic = np.asarray(analytic)
  mean = samples.mean(0)
  se = samples.std(0, ddof=1) / np.sqrt(samples.shape[0])
  assert np.all(se > 0), 'degenerate Monte Carlo samples'
  band = Z * se + bias
  err = np.abs(mean - analytic)
  worst = np.unravel_index(np.argmax(err / band), err.shape)
  assert np.all(err <= band), (
      f'Monte Carlo disagrees at {worst}: MC {mean[worst]:.6g} +- '
      f'{se[worst]:.3g} (SE), analytic {analytic[worst]:.6g}, '
      f'|diff| {err[worst]:.3g} > band {band[worst]:.3g}')
  # The band is tight enough to tell a wrong kernel apart.
  if wrong is not None:
    assert np.any(np.abs(mean - np.asarray(wrong)) > band), (
        'tolerance band too wide to reject a wrong kernel')
  return np.max(err / np.maximum(np.abs(analytic).max(), 1e-300))


def _inputs(shape, seed=0):
  rng = np.random.RandomState(seed)
  x = rng.randn(*shape)
  # Rows of different norms and one row almost parallel to another.
  x[1] = 0.9 * x[0] + 0.1 * x[1]
  x[-1] *= 2.
  return x


# ----------------------------------------------------------------------------
# NNGP.
# ----------------------------------------------------------------------------
WIDTH = 1024
N_OUT = 256


def _mlp(parameterization, depth, W_std=1.5, b_std=0.2, act=stax.Relu,
         width=WIDTH):
  layers = []
  for _ in range(depth):
    layers += [stax.Dense(width, W_std, b_std,
                          parameterization=parameterization), act()]
  layers += [stax.Dense(N_OUT, W_std, b_std, parameterization=parameterization)]
  return stax.serial(*layers)


@pytest.mark.parametrize('parameterization,depth', [
    ('ntk', 1), ('standard', 1), ('ntk', 2)])
def test_relu_mlp_nngp(parameterization, depth):
  x = _inputs((5, 3))
  width = WIDTH if depth == 1 else WIDTH // 2   # keeps the cost down
  init_fn, apply_fn, kernel_fn = _mlp(parameterization, depth, width=width)
  analytic = kernel_fn(x, None, 'nngp').numpy()
  samples = mc_nngp_samples(init_fn, apply_fn, x, n_seeds=160)
  scale = np.abs(np.diag(analytic)).max()
  bias = BIAS_C * scale / width * (depth - 1)
  # Per-seed relative spread is ~13% (readout chi-square and hidden-feature
  # averages), so the 5-SE band is ~5%: a kernel 10% too large is rejected.
  wrong = 1.1 * analytic
  check_agreement(samples, analytic, bias, wrong)


def test_erf_mlp_nngp():
  x = _inputs((5, 3), seed=1)
  width = WIDTH // 2
  init_fn, apply_fn, kernel_fn = _mlp('ntk', 2, W_std=1.7, b_std=0.3,
                                      act=stax.Erf, width=width)
  analytic = kernel_fn(x, None, 'nngp').numpy()
  samples = mc_nngp_samples(init_fn, apply_fn, x, n_seeds=120)
  bias = BIAS_C * np.diag(analytic).max() / width
  wrong = _mlp('ntk', 2, W_std=1.7, b_std=0.3, act=stax.Relu)[2](
      x, None, 'nngp')
  check_agreement(samples, analytic, bias, wrong)
  # Cross-kernel (x2 given) uses the same MC samples' off-diagonal block.
  k12 = kernel_fn(x[:2], x[2:], 'nngp').numpy()
  np.testing.assert_allclose(k12, analytic[:2, 2:], rtol=1e-12, atol=1e-14)


CHANNELS = 256


def test_conv_relu_avgpool_flatten_nngp():
  x = _inputs((3, 6, 6, 2), seed=2)
  init_fn, apply_fn, kernel_fn = stax.serial(
      stax.Conv(CHANNELS, (3, 3), padding='SAME', W_std=1.4, b_std=0.1),
      stax.Relu(), stax.AvgPool((2, 2), (2, 2)), stax.Flatten(),
      stax.Dense(N_OUT, W_std=1.2, b_std=0.05))
  analytic = kernel_fn(x, None, 'nngp').numpy()
  samples = mc_nngp_samples(init_fn, apply_fn, x, n_seeds=100)
  # One conv layer before the only nonlinearity: exact expectation.
  wrong = stax.serial(
      stax.Conv(1, (3, 3), padding='SAME', W_std=1.4, b_std=0.1),
      stax.Relu(), stax.Flatten(),  # no pooling: a different kernel
      stax.Dense(1, W_std=1.2, b_std=0.05))[2](x, None, 'nngp')
  check_agreement(samples, analytic, 0., wrong)


def test_conv_relu_global_avgpool_nngp():
  x = _inputs((3, 5, 5, 2), seed=3)
  width = 192
  init_fn, apply_fn, kernel_fn = stax.serial(
      stax.Conv(width, (3, 3), padding='SAME', W_std=1.3, b_std=0.1),
      stax.Relu(),
      stax.Conv(width, (2, 2), padding='VALID', W_std=1.3, b_std=0.1),
      stax.Relu(), stax.GlobalAvgPool(),
      stax.Dense(N_OUT, W_std=1.1))
  analytic = kernel_fn(x, None, 'nngp').numpy()
  samples = mc_nngp_samples(init_fn, apply_fn, x, n_seeds=100)
  bias = BIAS_C * np.diag(analytic).max() / width
  # Flatten instead of global pooling ignores the covariance between
  # positions: rejected.
  wrong = stax.serial(
      stax.Conv(1, (3, 3), padding='SAME', W_std=1.3, b_std=0.1),
      stax.Relu(),
      stax.Conv(1, (2, 2), padding='VALID', W_std=1.3, b_std=0.1),
      stax.Relu(), stax.Flatten(),
      stax.Dense(1, W_std=1.1))[2](x, None, 'nngp')
  check_agreement(samples, analytic, bias, wrong)


def test_fanout_parallel_faninsum_nngp():
  x = _inputs((5, 3), seed=4)
  width = WIDTH // 2
  init_fn, apply_fn, kernel_fn = stax.serial(
      stax.FanOut(2),
      stax.parallel(
          stax.serial(stax.Dense(width, 1.4, 0.1), stax.Relu(),
                      stax.Dense(width, 1.2, 0.2)),
          stax.Dense(width, 0.8, 0.3)),
      stax.FanInSum(), stax.Relu(), stax.Dense(N_OUT, 1.3, 0.1))
  analytic = kernel_fn(x, None, 'nngp').numpy()
  samples = mc_nngp_samples(init_fn, apply_fn, x, n_seeds=120)
  bias = BIAS_C * np.diag(analytic).max() / width
  # Dropping the skip branch gives a different kernel.
  wrong = stax.serial(stax.Dense(width, 1.4, 0.1), stax.Relu(),
                      stax.Dense(width, 1.2, 0.2), stax.Relu(),
                      stax.Dense(N_OUT, 1.3, 0.1))[2](x, None, 'nngp')
  check_agreement(samples, analytic, bias, wrong)


# ----------------------------------------------------------------------------
# NTK.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('parameterization,act', [
    ('ntk', stax.Relu), ('standard', stax.Relu), ('ntk', stax.Erf)])
def test_one_hidden_layer_ntk(parameterization, act):
  """E[empirical NTK] equals the analytic NTK exactly at any width for one
  hidden layer: the readout weights are independent of the (exactly
  Gaussian) hidden pre-activations and E[W2_j^2] is known."""
  width, n_out = 256, 4
  x = _inputs((4, 3), seed=5)
  net = stax.serial(
      stax.Dense(width, 1.5, 0.2, parameterization=parameterization), act(),
      stax.Dense(n_out, 1.2, 0.3, parameterization=parameterization))
  init_fn, apply_fn, kernel_fn = net
  analytic = kernel_fn(x, None, 'ntk').numpy()
  samples = mc_ntk_samples(init_fn, apply_fn, x, n_seeds=200)
  # Per-seed relative spread ~18%: the band is ~6%, a 10% error is rejected.
  wrong = 1.1 * analytic
  check_agreement(samples, analytic, 0., wrong)
