"""Hessians of GP training losses through `NeuralKernel`, and an optimiser
that differentiates twice (GPflow's `NaturalGradient`).

Hessians by nested `tf.GradientTape`s are compared with central finite
differences of the (first-order) gradients; the natural-gradient SVGP is
compared with the closed-form GPR marginal likelihood, which one natural
step of size 1 reaches exactly when the inducing points are the data.
"""
import dataclasses

import gpflow
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
import tf_keras

from nt_gp import stax
import nt_gp.gpflow
import nt_gp.tfp

H = 1e-5
RTOL = 1e-5


def relu_net(W_std, b_std):
  return stax.serial(stax.Dense(1, W_std, b_std), stax.Relu(),
                     stax.Dense(1, W_std, b_std), stax.Relu(),
                     stax.Dense(1, W_std, b_std))


# Second-order graphs of whole GP losses: each test in its own process.
pytestmark = pytest.mark.isolated


@pytest.fixture(scope='module')
def data():
  rng = np.random.RandomState(0)
  x = rng.randn(8, 3)
  y = np.sin(x.sum(-1, keepdims=True)) + 0.1 * rng.randn(8, 1)
  return x, y


def hessian_and_fd(loss, variables):
  """(Hessian by nested tapes, Hessian by central differences of the
  gradient), both (n, n) over the scalar entries of `variables`."""
  def grad():
    with tf.GradientTape() as tape:
      value = loss()
    return tf.stack([tf.reshape(g, []) for g in
                     tape.gradient(value, variables)])

  with tf.GradientTape(persistent=True) as outer:
    g = grad()
    rows = [g[i] for i in range(len(variables))]
  hess = np.array([[float(tf.reshape(outer.gradient(r, v), []))
                    for v in variables] for r in rows])
  del outer
  fd = np.zeros_like(hess)
  for j, v in enumerate(variables):
    v0 = v.numpy()
    v.assign(v0 + H)
    up = grad().numpy()
    v.assign(v0 - H)
    down = grad().numpy()
    v.assign(v0)
    fd[:, j] = (up - down) / (2 * H)
  return hess, fd


def assert_hessian(hess, fd):
  assert np.all(np.isfinite(hess))
  np.testing.assert_allclose(hess, fd, rtol=RTOL,
                             atol=RTOL * np.max(np.abs(fd)))
  assert np.max(np.abs(fd)) > 1e-2       # a non-trivial curvature


@pytest.mark.parametrize('get', ['nngp', 'ntk'])
def test_gpr_loss_hessian(data, get):
  kernel = nt_gp.gpflow.NeuralKernel(relu_net, get=get, W_std=1.3, b_std=0.3)
  model = gpflow.models.GPR(data, kernel, noise_variance=0.1)
  variables = [p.unconstrained_variable for p in model.trainable_parameters]
  assert len(variables) == 3
  assert_hessian(*hessian_and_fd(model.training_loss, variables))


def test_svgp_loss_hessian(data):
  """The ELBO uses `K_diag` (the paired path) and `K(Z, X)`."""
  x, y = data
  kernel = nt_gp.gpflow.NeuralKernel(relu_net, get='ntk', W_std=1.3,
                                     b_std=0.3)
  model = gpflow.models.SVGP(kernel, gpflow.likelihoods.Gaussian(0.1),
                             x[::2].copy(), num_data=len(x))
  model.q_mu.assign(np.random.RandomState(1).randn(4, 1) * 0.3)
  variables = [kernel.W_std.unconstrained_variable,
               kernel.b_std.unconstrained_variable]
  assert_hessian(*hessian_and_fd(lambda: model.training_loss(data),
                                 variables))


def test_tfp_log_prob_hessian(data):
  x, y = data
  W = tf.Variable(1.3, dtype=tf.float64)
  b = tf.Variable(0.3, dtype=tf.float64)
  kernel = nt_gp.tfp.NeuralKernel(relu_net, get='nngp', W_std=W, b_std=b)

  def loss():
    gp = tfp.distributions.GaussianProcess(
        kernel, index_points=x, observation_noise_variance=np.float64(0.1))
    return -gp.log_prob(y[:, 0])
  assert_hessian(*hessian_and_fd(loss, [W, b]))


@pytest.fixture
def small_jitter():
  """GPflow adds `jitter` to K(Z, Z) in SVGP but not in GPR; 1e-10 makes the
  two agree to ~1e-9."""
  config = dataclasses.replace(gpflow.config.config(), jitter=1e-10)
  with gpflow.config.as_context(config):
    yield


def test_natural_gradient_svgp(data, small_jitter):  # pylint: disable=unused-argument
  """SVGP with inducing points at the data: one natural-gradient step of size
  1 gives the exact posterior, whose ELBO is GPR's log marginal likelihood;
  then natural gradients and Adam train the kernel too."""
  x, y = data
  kernel = nt_gp.gpflow.NeuralKernel(relu_net, get='ntk', W_std=1.3,
                                     b_std=0.3)
  likelihood = gpflow.likelihoods.Gaussian(0.1)
  model = gpflow.models.SVGP(kernel, likelihood, x.copy(), num_data=len(x))
  gpflow.set_trainable(model.inducing_variable, False)
  gpflow.set_trainable(model.q_mu, False)
  gpflow.set_trainable(model.q_sqrt, False)
  natgrad = gpflow.optimizers.NaturalGradient(gamma=1.0)
  loss = model.training_loss_closure(data)
  natgrad.minimize(loss, [(model.q_mu, model.q_sqrt)])
  gpr = gpflow.models.GPR(data, kernel, noise_variance=0.1)
  np.testing.assert_allclose(model.elbo(data).numpy(),
                             gpr.log_marginal_likelihood().numpy(), rtol=1e-8)

  natgrad = gpflow.optimizers.NaturalGradient(gamma=0.5)
  adam = tf_keras.optimizers.Adam(0.02)

  @tf.function
  def step():
    natgrad.minimize(loss, [(model.q_mu, model.q_sqrt)])
    adam.minimize(loss, model.trainable_variables)
    return loss()

  start = float(loss())
  losses = [float(step()) for _ in range(30)]
  assert np.all(np.isfinite(losses))
  assert losses[-1] < start - 0.05
  # Converged: the variational posterior is again exact for the trained
  # kernel (the natural steps keep up with Adam's).
  for _ in range(5):
    natgrad.minimize(loss, [(model.q_mu, model.q_sqrt)])
  trained = gpflow.models.GPR(data, kernel,
                              noise_variance=likelihood.variance.numpy())
  np.testing.assert_allclose(model.elbo(data).numpy(),
                             trained.log_marginal_likelihood().numpy(),
                             rtol=1e-4)
