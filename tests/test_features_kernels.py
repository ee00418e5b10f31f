"""Feature maps against nt_gp's exact kernels, layer family by layer family.

For every family, `phi(x1) · phi(x2)` estimates `kernel_fn(x1, x2)`:

* **unbiasedness** (networks with one random nonlinear layer on every path,
  where the estimator is exactly unbiased): over 64 fixed seeds, every entry
  of the mean estimate is within 4.5 standard errors of the exact kernel
  (about 40 entries per test: the chance of a false alarm per test is below
  1e-3 for a Gaussian mean, and the seeds are fixed, so the test is
  deterministic);
* **convergence**: the relative Frobenius error (mean over 5 seeds) falls
  like `feature_dim ** -1/2` (fitted log-log slope in [-0.8, -0.3]) and is
  below a stated bound at `feature_dim = 2048` — also for deep networks,
  whose estimator has an `O(1 / feature_dim)` bias;
* **exact layers** (Dense, pooling, Flatten, Conv with short patches, FanIn
  layers) reproduce the kernel to rounding without randomness.
"""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import features, stax

D = stax.Dense
RS = np.random.RandomState(0)
X_VEC = RS.randn(6, 5)
X_IMG = RS.randn(3, 6, 6, 2)


def _relu_net(act, parameterization='ntk', W_std=1.3):
  return stax.serial(
      D(3, W_std=W_std, b_std=0.4, parameterization=parameterization), act,
      D(2, W_std=0.8, b_std=0.2, parameterization=parameterization))


# Hermite features at pre-activation variances up to ~2.3, where 32 degrees
# leave less than the default tolerance (1e-3) of E[σ'²] untruncated.
HERMITE = dict(activation_method='hermite', hermite_degree=32)


# name: (network, inputs); one random nonlinear layer on every path.
UNBIASED = {
    'relu': (_relu_net(stax.Relu()), X_VEC),
    'relu_standard': (_relu_net(stax.Relu(), 'standard'), X_VEC),
    'abrelu': (_relu_net(stax.ABRelu(-0.3, 1.2)), X_VEC),
    'leaky_relu': (_relu_net(stax.LeakyRelu(0.1)), X_VEC),
    'abs': (_relu_net(stax.Abs()), X_VEC),
    'erf': (_relu_net(stax.Erf()), X_VEC),
    'gelu': (_relu_net(stax.Gelu()), X_VEC),
    # nt_gp's (and neural-tangents') 25-node quadrature of E[sech⁴] is 14%
    # off at variance 4.7 (scipy.integrate: 0.2377, 25 nodes: 0.2713); at
    # variances up to ~2.3 and 50 nodes it is accurate.
    'numerical_tanh': (_relu_net(stax.ElementwiseNumerical(tf.tanh, 50),
                                 W_std=0.9), X_VEC),
    'erf_hermite': (_relu_net(stax.Erf(), W_std=0.9), X_VEC, HERMITE),
    'gelu_hermite': (_relu_net(stax.Gelu(), W_std=0.9), X_VEC, HERMITE),
    'sin_hermite': (_relu_net(stax.Sin(), W_std=0.9), X_VEC, HERMITE),
    'cos_hermite': (_relu_net(stax.Cos(a=0.8, b=0.9, c=0.1), W_std=0.9),
                    X_VEC, HERMITE),
    'sigmoid_like_hermite': (_relu_net(stax.Sigmoid_like(), W_std=0.9),
                             X_VEC, HERMITE),
    'numerical_tanh_hermite': (_relu_net(
        stax.ElementwiseNumerical(tf.tanh, 25), W_std=0.9), X_VEC, HERMITE),
    'conv_same_strided_gap': (stax.serial(
        stax.Conv(4, (3, 3), padding='SAME', b_std=0.2), stax.Relu(),
        stax.Conv(4, (3, 3), (2, 2), padding='SAME', W_std=1.2),
        stax.GlobalAvgPool(), D(1)), X_IMG),
    'conv_valid_flatten': (stax.serial(
        stax.Conv(4, (3, 3), b_std=0.2), stax.Relu(), stax.Flatten(), D(1)),
                           X_IMG),
    'conv_circular_standard': (stax.serial(
        stax.Conv(4, (3, 2), padding='CIRCULAR', b_std=0.2,
                  parameterization='standard'), stax.Erf(),
        stax.Conv(3, (2, 2), parameterization='standard', b_std=0.1),
        stax.Flatten(), D(1, parameterization='standard')), X_IMG),
    'pooling': (stax.serial(
        stax.Conv(4, (3, 3), padding='SAME'), stax.Relu(),
        stax.AvgPool((2, 2), (2, 2)), stax.SumPool((2, 2), padding='SAME'),
        stax.AvgPool((3, 3), padding='SAME', normalize_edges=True),
        stax.GlobalAvgPool(), D(1)), X_IMG),
    'fan_in_sum': (stax.serial(
        stax.FanOut(3), stax.parallel(
            stax.serial(D(3, b_std=0.1), stax.Relu(), D(3)), D(3),
            stax.serial(D(3), stax.Erf(), D(3))),
        stax.FanInSum(), D(1)), X_VEC),
    'fan_in_concat': (stax.serial(
        stax.FanOut(2),
        stax.parallel(stax.serial(D(3, b_std=0.1), stax.Relu(), D(3)), D(5)),
        stax.FanInConcat(), D(2, parameterization='standard')), X_VEC),
}

DEEP = {
    'mlp3_relu': (stax.serial(*[l for _ in range(3) for l in (
        D(3, W_std=1.4, b_std=0.1), stax.Relu())], D(1)), X_VEC),
    'repeat_erf': (stax.serial(D(3), stax.repeat(
        stax.serial(stax.Erf(), D(3, b_std=0.2)), 2)), X_VEC),
    'repeat_erf_hermite': (stax.serial(D(3, W_std=0.9), stax.repeat(
        stax.serial(stax.Erf(), D(3, W_std=0.9, b_std=0.2)), 2)), X_VEC,
                           HERMITE),
    'cnn_relu_gelu': (stax.serial(
        stax.Conv(4, (3, 3), padding='SAME'), stax.Relu(),
        stax.Conv(4, (3, 3), padding='SAME'), stax.Gelu(),
        stax.AvgPool((2, 2), (2, 2)), stax.Flatten(), D(1)), X_IMG),
}

EXACT = {
    'dense_ntk': (stax.serial(D(3, W_std=1.3, b_std=0.4),
                              D(2, W_std=0.7, b_std=0.2)), X_VEC),
    'dense_standard': (stax.serial(
        D(3, W_std=1.3, b_std=0.4, parameterization='standard', s=(2, 3)),
        D(2, W_std=0.7, parameterization='standard', s=(3, 1))), X_VEC),
    'conv_pool_flatten': (stax.serial(
        stax.Conv(4, (2, 2), (1, 2), b_std=0.3), stax.AvgPool((2, 1)),
        stax.Identity(), stax.Flatten(), D(1)), X_IMG),
    'conv_gap_fan_in': (stax.serial(
        stax.Conv(3, (2, 2), padding='SAME'), stax.FanOut(2),
        stax.parallel(stax.Conv(3, (1, 1)), stax.Identity()),
        stax.FanInConcat(), stax.GlobalSumPool(), D(1)), X_IMG),
}


def _flat(t):
  t = t.numpy()
  return t.reshape(t.shape[0], -1)


def _exact(net, x):
  k = net[2](x, None, ('nngp', 'ntk'))
  return k.nngp.numpy(), k.ntk.numpy()


def _estimates(net, x, feature_dim, seed, **kwargs):
  phi = features.features_fn(net, feature_dim, seed=seed, **kwargs)
  a, b = phi(x)
  a, b = _flat(a), _flat(b)
  return a @ a.T, b @ b.T


def _relative_errors(net, x, feature_dim, seeds, **kwargs):
  exact = _exact(net, x)
  errs = []
  for s in seeds:
    est = _estimates(net, x, feature_dim, s, **kwargs)
    errs.append([np.linalg.norm(e - k) / np.linalg.norm(k)
                 for e, k in zip(est, exact)])
  return np.mean(errs, 0)


@pytest.mark.parametrize('name', sorted(EXACT))
def test_exact_layers_reproduce_the_kernel(name):
  net, x = EXACT[name]
  # Patches and flattened images are shorter than 4096: no projection.
  for est, k in zip(_estimates(net, x, 4096, seed=0), _exact(net, x)):
    np.testing.assert_allclose(est, k, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('name', sorted(UNBIASED))
def test_mean_over_seeds_matches_the_exact_kernel(name):
  net, x, *kwargs = UNBIASED[name]
  kwargs = kwargs[0] if kwargs else {}
  samples = np.array([_estimates(net, x, 128, seed=s, **kwargs)
                      for s in range(64)])
  mean = samples.mean(0)
  se = samples.std(0, ddof=1) / np.sqrt(len(samples))
  exact = np.array(_exact(net, x))
  z = np.abs(mean - exact) / np.maximum(se, 1e-12 * np.abs(exact).max())
  worst = np.unravel_index(np.argmax(z), z.shape)
  assert z.max() < 4.5, (
      f'{("nngp", "ntk")[worst[0]]} entry {worst[1:]}: mean {mean[worst]:.6g}'
      f' vs exact {exact[worst]:.6g}, {z.max():.2f} standard errors')


# Relative Frobenius error bound at the largest feature_dim (2048 unless
# stated; measured means over 3 seeds are at most half of it).
_BOUND = 0.12


def _check_convergence(net, x, dims=(128, 512, 2048), bound=_BOUND,
                       seeds=5, **kwargs):
  dims = np.array(dims)
  errs = np.array([_relative_errors(net, x, m, range(seeds), **kwargs)
                   for m in dims])                       # (dims, 2)
  for j, kind in enumerate(('nngp', 'ntk')):
    slope = np.polyfit(np.log(dims), np.log(errs[:, j]), 1)[0]
    assert -0.8 < slope < -0.3, (kind, slope, errs[:, j])
    assert errs[-1, j] < bound, (kind, errs[:, j])


@pytest.mark.parametrize('name', ['relu', 'erf', 'erf_hermite', 'gelu_hermite',
                                  'conv_valid_flatten', 'pooling',
                                  'fan_in_concat'])
def test_error_falls_like_inverse_sqrt_feature_dim(name):
  net, x, *kwargs = UNBIASED[name]
  _check_convergence(net, x, **(kwargs[0] if kwargs else {}))


@pytest.mark.parametrize('name', [
    'mlp3_relu', 'repeat_erf',
    pytest.param('repeat_erf_hermite', marks=pytest.mark.slow)])
def test_deep_networks_converge(name):
  net, x, *kwargs = DEEP[name]
  _check_convergence(net, x, **(kwargs[0] if kwargs else {}))


def test_deep_cnn_converges():
  # Convolutions of long patches draw (3, 3, m, m) Gaussian filters: smaller m.
  # Three images give few kernel entries: average over more seeds.
  _check_convergence(*DEEP['cnn_relu_gelu'], dims=(64, 256, 1024),
                     bound=0.15, seeds=8)


def test_hermite_method_for_relu():
  # The ReLU dual kernel by its Hermite series: not smooth, so the series
  # decays slowly; with a loose tolerance it still approaches the
  # arc-cosine kernel.
  net = _relu_net(stax.Relu(), W_std=0.9)
  errs = _relative_errors(net, X_VEC, 2048, range(3),
                          activation_method='hermite', hermite_degree=48,
                          hermite_tolerance=0.05)
  assert errs.max() < 0.15, errs
