"""Gradients of analytic kernels w.r.t. hyperparameters match finite differences.

`W_std`/`b_std` are given as `tf.Variable`s (or as tensors watched by the
tape); `tf.GradientTape` derivatives of every NNGP/NTK entry (float64) are
compared with central finite differences

  (K(t - 2h) - 8 K(t - h) + 8 K(t + h) - K(t + 2h)) / (12 h),   h = 2e-3.

The step is not tiny on purpose: entries with cos = 1 (the diagonal,
duplicated inputs) compute theta = arccos(c) from a c that is 1 only up to
rounding, so theta carries noise ~ sqrt(eps) ~ 1.5e-8 and the ReLU NTK factor
(pi - theta) / (2 pi) relative noise ~ 5e-9 per layer (inherent to the
formula, as in neural-tangents). Divided by the step, this noise is ~5e-6
relative at h = 2e-3, while the fourth-order truncation error O(h^4) is
~1e-11. The tolerance `rtol = 2e-5` (absolute floor 1e-6 of the largest
derivative) has a margin over both and still catches any wrong derivative
formula, which is off by O(1).

Covered: diagonal entries (`x2=None`, where ReLU's arccos has an infinite
derivative in c at c = 1), duplicated inputs (off-diagonal c = 1), an input
row that is exactly zero, cross kernels, a small conv net, and the gradient
of a GP log marginal likelihood, which a naive ReLU kernel makes NaN.
"""
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp

from nt_gp import stax

tfd = tfp.distributions

H = 2e-3
RTOL = 2e-5


# ----------------------------------------------------------------------------
# Architectures: functions of (W_std, b_std) returning the stax triple.
# ----------------------------------------------------------------------------
def dense(W, b):
  return stax.Dense(1, W, b)


def relu_mlp(W, b):
  return stax.serial(stax.Dense(8, W, b), stax.Relu(), stax.Dense(8, W, b),
                     stax.Relu(), stax.Dense(1, W, b))


def erf_mlp(W, b):
  return stax.serial(stax.Dense(8, W, b), stax.Erf(), stax.Dense(1, W, b))


def abs_relu_mixed(W, b):
  return stax.serial(stax.Dense(8, W, b), stax.Abs(), stax.Dense(8, W),
                     stax.Relu(), stax.Dense(1, W, b))


def conv_flatten(W, b):
  return stax.serial(
      stax.Conv(4, (2, 2), padding='SAME', W_std=W, b_std=b), stax.Relu(),
      stax.AvgPool((2, 2)), stax.Flatten(), stax.Dense(1, W, b))


def conv_global_pool(W, b):
  return stax.serial(
      stax.Conv(4, (2, 2), padding='SAME', W_std=W, b_std=b), stax.Relu(),
      stax.Conv(4, (2, 2), W_std=W, b_std=b), stax.Erf(),
      stax.GlobalAvgPool(), stax.Dense(1, W, b))


DENSE_ARCHS = [dense, relu_mlp, erf_mlp, abs_relu_mixed]
CONV_ARCHS = [conv_flatten, conv_global_pool]


def dense_inputs():
  rng = np.random.RandomState(0)
  x = rng.randn(5, 3)
  x[2] = 0.                   # a row that is exactly zero
  x[4] = x[0]                 # a duplicated row: off-diagonal cos = 1
  x2 = rng.randn(2, 3)
  x2[1] = 0.
  return x, x2


def conv_inputs():
  rng = np.random.RandomState(1)
  x = rng.randn(3, 4, 4, 2)
  x[1] = 0.
  x2 = rng.randn(2, 4, 4, 2)
  return x, x2


# ----------------------------------------------------------------------------
# Helpers.
# ----------------------------------------------------------------------------
def kernels(kernel_fn, x1, x2):
  k = kernel_fn(x1, x2, ('nngp', 'ntk'))
  return {'nngp': k.nngp, 'ntk': k.ntk}


def tape_jacobians(kernel_fn, x1, x2, params, watch=False):
  """{(quantity, param index): d kernel / d param} by GradientTape, entry by
  entry with a fresh (non-persistent) tape each: the common usage."""
  values = {n: k.numpy() for n, k in kernels(kernel_fn, x1, x2).items()}
  out = {(n, i): np.zeros_like(values[n]) for n in values
         for i in range(len(params))}
  for name in values:
    for idx in np.ndindex(*values[name].shape):
      with tf.GradientTape() as tape:
        if watch:
          tape.watch(params)
        entry = kernels(kernel_fn, x1, x2)[name][idx]
      grads = tape.gradient(entry, params)
      for i, g in enumerate(grads):
        assert g is not None, f'no gradient path to parameter {i}'
        out[name, i][idx] = g.numpy()
  return out, values


def fd_jacobians(kernel_fn, x1, x2, variables):
  """Fourth-order central finite differences by re-assigning variables."""
  out = {}
  for i, v in enumerate(variables):
    v0 = v.numpy()
    vals = []
    for step in (-2, -1, 1, 2):
      v.assign(v0 + step * H)
      vals.append({n: k.numpy() for n, k in kernels(kernel_fn, x1, x2).items()})
    v.assign(v0)
    for name in vals[0]:
      out[name, i] = fd_stencil(*(d[name] for d in vals))
  return out


def fd_stencil(fm2, fm1, fp1, fp2):
  return (fm2 - 8 * fm1 + 8 * fp1 - fp2) / (12 * H)


def fd_scalar(f, t):
  return fd_stencil(*(f(t + step * H) for step in (-2, -1, 1, 2)))


def assert_grads_match(got, want, label=''):
  for key in want:
    g, w = got[key], want[key]
    assert g.shape == w.shape, (label, key, g.shape, w.shape)
    assert np.all(np.isfinite(g)), (
        f'{label} {key}: non-finite gradient entries at '
        f'{np.argwhere(~np.isfinite(g)).tolist()}')
    atol = 1e-6 * max(np.abs(w).max(), 1e-3)
    np.testing.assert_allclose(g, w, rtol=RTOL, atol=atol,
                               err_msg=f'{label} {key}')


# ----------------------------------------------------------------------------
# Variables.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('arch', DENSE_ARCHS + CONV_ARCHS,
                         ids=lambda f: f.__name__)
def test_variable_gradients_match_finite_differences(arch):
  x, x2 = conv_inputs() if arch in CONV_ARCHS else dense_inputs()
  W = tf.Variable(1.3, dtype=tf.float64)
  b = tf.Variable(0.4, dtype=tf.float64)
  kernel_fn = arch(W, b)[2]
  # (Conv nets: the symmetric case only; each new input shape costs seconds
  # of XLA compilation of the forward and backward covariance maps.)
  cases = ((x, None),) if arch in CONV_ARCHS else ((x, None), (x, x2))
  for args in cases:
    got, values = tape_jacobians(kernel_fn, *args, [W, b])
    want = fd_jacobians(kernel_fn, *args, [W, b])
    assert_grads_match(got, want, f'{arch.__name__} x2={args[1] is not None}')
    # The FD derivative is non-trivial (the test can fail): W changes every
    # nonzero entry.
    assert np.abs(want['nngp', 0]).max() > 1e-2
  # Variables and Python numbers give the same kernel.
  ref = arch(1.3, 0.4)[2](*args, ('nngp', 'ntk'))
  np.testing.assert_allclose(values['nngp'], ref.nngp.numpy(), rtol=1e-12)
  np.testing.assert_allclose(values['ntk'], ref.ntk.numpy(), rtol=1e-12)


@pytest.mark.parametrize('arch', [relu_mlp, conv_flatten],
                         ids=lambda f: f.__name__)
def test_watched_tensor_gradients_match_finite_differences(arch):
  """Hyperparameters as plain tensors, watched by the tape."""
  x, _ = conv_inputs() if arch in CONV_ARCHS else dense_inputs()
  W = tf.constant(1.3, tf.float64)
  b = tf.constant(0.4, tf.float64)
  got, _ = tape_jacobians(arch(W, b)[2], x, None, [W, b], watch=True)
  Wv = tf.Variable(1.3, dtype=tf.float64)
  bv = tf.Variable(0.4, dtype=tf.float64)
  want = fd_jacobians(arch(Wv, bv)[2], x, None, [Wv, bv])
  assert_grads_match(got, want, arch.__name__)


def test_diagonal_gradients_closed_form():
  """d/dW of the ReLU NNGP diagonal by hand: for Dense(W, b) -> ReLU ->
  Dense(W, b), K(x, x) = W^2 (W^2 |x|^2 / d + b^2) / 2 + b^2, so
  dK/dW = 2 W^3 |x|^2 / d + W b^2 and dK/db = W^2 b + 2 b."""
  x, _ = dense_inputs()
  W = tf.Variable(1.3, dtype=tf.float64)
  b = tf.Variable(0.4, dtype=tf.float64)
  kernel_fn = stax.serial(stax.Dense(8, W, b), stax.Relu(),
                          stax.Dense(1, W, b))[2]
  sq = (x**2).sum(-1) / x.shape[1]
  Wn, bn = 1.3, 0.4
  for i in range(len(x)):
    with tf.GradientTape() as tape:
      entry = kernel_fn(x, None, 'nngp')[i, i]
    gW, gb = tape.gradient(entry, [W, b])
    np.testing.assert_allclose(gW.numpy(), 2 * Wn**3 * sq[i] + Wn * bn**2,
                               rtol=1e-12)
    np.testing.assert_allclose(gb.numpy(), Wn**2 * bn + 2 * bn, rtol=1e-12)


def test_float32_variable_with_float64_inputs():
  """A float32 variable receives a float32 gradient matching FD (float64)."""
  x, _ = dense_inputs()
  W32 = tf.Variable(1.3, dtype=tf.float32)
  kernel_fn = relu_mlp(W32, 0.4)[2]
  with tf.GradientTape() as tape:
    s = tf.reduce_sum(kernel_fn(x, None, 'nngp'))
  g = tape.gradient(s, W32)
  assert g.dtype == tf.float32
  W64 = tf.Variable(1.3, dtype=tf.float64)
  f64 = relu_mlp(W64, 0.4)[2]
  def f(w):
    W64.assign(w)
    return f64(x, None, 'nngp').numpy().sum()
  np.testing.assert_allclose(g.numpy(), fd_scalar(f, 1.3), rtol=1e-5)


def test_zero_input_without_bias_gradients_finite():
  x, _ = dense_inputs()
  W = tf.Variable(1.3, dtype=tf.float64)
  kernel_fn = stax.serial(stax.Dense(8, W), stax.Relu(), stax.Dense(1, W))[2]
  got, values = tape_jacobians(kernel_fn, x, None, [W])
  # The zero row's kernel entries vanish for every W: derivative 0.
  assert np.all(values['nngp'][2] == 0)
  want = fd_jacobians(kernel_fn, x, None, [W])
  assert_grads_match(got, want, 'relu no bias')


def test_persistent_tape_gradients_finite():
  x, _ = dense_inputs()
  W = tf.Variable(1.3, dtype=tf.float64)
  kernel_fn = stax.serial(stax.Dense(1, W, 0.4), stax.Relu())[2]
  with tf.GradientTape(persistent=True) as tape:
    k = kernel_fn(x, None, 'nngp')
  g = tape.gradient(k, W)
  with tf.GradientTape() as tape:
    k = kernel_fn(x, None, 'nngp')
  want = tape.gradient(k, W)
  assert np.isfinite(want.numpy())
  np.testing.assert_allclose(g.numpy(), want.numpy(), rtol=1e-10)


# ----------------------------------------------------------------------------
# GP marginal likelihood.
# ----------------------------------------------------------------------------
def np_log_marginal_likelihood(K, y, noise):
  """Gaussian log density of y ~ N(0, K + noise I), by numpy Cholesky."""
  L = np.linalg.cholesky(K + noise * np.eye(len(y)))
  z = np.linalg.solve(L, y)
  return (-0.5 * z @ z - np.log(np.diag(L)).sum() -
          0.5 * len(y) * np.log(2 * np.pi))


@pytest.mark.parametrize('get', ['nngp', 'ntk'])
def test_gp_log_marginal_likelihood_gradient(get):
  rng = np.random.RandomState(3)
  x = rng.randn(10, 3)
  x[3] = x[7]               # duplicate inputs: cos = 1 off the diagonal
  x[5] = 0.
  y = np.sin(x.sum(-1)) + 0.1 * rng.randn(10)
  noise = 0.05
  W = tf.Variable(1.2, dtype=tf.float64)
  b = tf.Variable(0.3, dtype=tf.float64)
  kernel_fn = relu_mlp(W, b)[2]

  with tf.GradientTape() as tape:
    K = kernel_fn(x, None, get)
    L = tf.linalg.cholesky(K + noise * tf.eye(10, dtype=tf.float64))
    lml = tfd.MultivariateNormalTriL(
        loc=tf.zeros(10, tf.float64), scale_tril=L).log_prob(y)
  gW, gb = tape.gradient(lml, [W, b])
  assert np.isfinite(gW.numpy()) and np.isfinite(gb.numpy())

  # The TFP value equals the numpy Cholesky value.
  np.testing.assert_allclose(
      lml.numpy(), np_log_marginal_likelihood(K.numpy(), y, noise), rtol=1e-10)

  def f(Wn, bn):
    W.assign(Wn)
    b.assign(bn)
    return np_log_marginal_likelihood(kernel_fn(x, None, get).numpy(), y,
                                      noise)
  fd_W = fd_scalar(lambda t: f(t, 0.3), 1.2)
  fd_b = fd_scalar(lambda t: f(1.2, t), 0.3)
  np.testing.assert_allclose(gW.numpy(), fd_W, rtol=RTOL)
  np.testing.assert_allclose(gb.numpy(), fd_b, rtol=RTOL)
  assert abs(fd_W) > 1e-2


@pytest.mark.parametrize('n_spatial,diagonal_spatial', [(0, True), (1, True),
                                                        (1, False)])
def test_unpack_gradient_sums_every_copy_of_a_packed_entry(n_spatial,
                                                            diagonal_spatial):
  """The gradient of the symmetric unpacking (`nt_gp.ops.packing`) sends
  each packed entry the sum of the upstream gradient over all the places the
  unpacking copies it to (found by unpacking the entries' own indices)."""
  from nt_gp.ops import packing  # pylint: disable=g-import-not-at-top
  blocks, b, h = 4, 3, 2
  spatial = {(0, True): (), (1, True): (h,), (1, False): (h, h)}[
      (n_spatial, diagonal_spatial)]
  shape = spatial + (blocks * (blocks + 1) // 2, b, b)
  rng = np.random.RandomState(0)
  p = tf.constant(rng.randn(*shape))
  n = blocks * b
  g = rng.randn(*(spatial + (n, n)))
  index = packing.unpack(tf.constant(np.arange(p.shape.num_elements(),
                                               dtype=np.float64)
                                     .reshape(shape)), blocks, n_spatial,
                         diagonal_spatial).numpy().astype(int)
  expected = np.bincount(index.ravel(), weights=g.ravel(),
                         minlength=p.shape.num_elements()).reshape(shape)
  with tf.GradientTape() as tape:
    tape.watch(p)
    out = tf.reduce_sum(packing.unpack(p, blocks, n_spatial,
                                       diagonal_spatial) * g)
  np.testing.assert_allclose(tape.gradient(out, p).numpy(), expected,
                             rtol=1e-12, atol=1e-12)
