"""Bivariate Gauss–Hermite expectations (`nt_gp.ops.gauss_hermite`).

Values and derivatives up to second order are compared with closed forms:
for a centred Gaussian pair with variances q11, q22 and covariance q12,
E[z1² z2²] = q11 q22 + 2 q12² (integrated exactly by the rule) and
E[sin z1 sin z2] = exp(-(q11 + q22) / 2) sinh(q12). The loop runs inside an
XLA cluster as in the kernel rules. The memory bound of `ElementwiseNumerical`
is checked on the peak resident set of fresh processes.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from nt_gp.ops import compile as compile_ops
from nt_gp.ops import gauss_hermite

_Q12 = np.array([[0.9, -0.3, 0.0], [0.2, 0.5, -0.7]])
_Q11 = np.array([[1.1], [0.8]])
_Q22 = np.array([[1.3, 0.6, 0.9]])


def _sin_closed_form(q12, q11, q22):
  return tf.exp(-(q11 + q22) / 2) * tf.sinh(q12)


def _square_closed_form(q12, q11, q22):
  return q11 * q22 + 2 * tf.square(q12)


_CASES = {'sin': (tf.sin, _sin_closed_form, 30),
          'square': (tf.square, _square_closed_form, 3)}


def _derivatives(expectation, dtype):
  """Value, gradient and Hessian diagonal blocks of sum(u * E) in
  (q12, q11, q22), in one compiled graph."""
  q12, q11, q22 = (tf.constant(v, dtype) for v in (_Q12, _Q11, _Q22))
  u = tf.constant(np.random.RandomState(0).randn(*_Q12.shape), dtype)

  @tf.function(autograph=False)
  def run():
    qs = [q12, q11, q22]
    with tf.GradientTape(persistent=True) as outer:
      outer.watch(qs)
      with tf.GradientTape() as inner:
        inner.watch(qs)
        total = tf.reduce_sum(u * expectation(*qs))
      grads = inner.gradient(total, qs,
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)
      sums = [tf.reduce_sum(g * w) for g, w in zip(grads, [u, 1., 1.])]
    zero = tf.UnconnectedGradients.ZERO
    return total, grads, [outer.gradient(s, qs, unconnected_gradients=zero)
                          for s in sums]
  return run()


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
@pytest.mark.parametrize('name', sorted(_CASES))
def test_values_and_derivatives_match_closed_forms(name, dtype):
  fn, closed_form, deg = _CASES[name]
  compiled = compile_ops.xla(
      lambda a, b, c: gauss_hermite.expectations([fn], a, b, c, deg)[0],
      share=False)
  got = _derivatives(compiled, dtype)
  want = _derivatives(closed_form, dtype)
  rtol = 1e-4 if dtype == tf.float32 else 1e-9
  for g, w in zip(tf.nest.flatten(got), tf.nest.flatten(want)):
    assert g.dtype == dtype
    np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=rtol, atol=rtol)


def test_several_functions_share_the_nodes():
  """An activation and its derivative in one call equal separate calls (and
  the closed forms of sin and cos: E[cos z1 cos z2] = e^{-(q11+q22)/2}
  cosh(q12))."""
  q = [tf.constant(v, tf.float64) for v in (_Q12, _Q11, _Q22)]
  both = gauss_hermite.expectations([tf.sin, tf.cos], *q, 30)
  np.testing.assert_allclose(both[0], _sin_closed_form(*q), rtol=1e-10,
                             atol=1e-14)
  np.testing.assert_allclose(
      both[1], tf.exp(-(q[1] + q[2]) / 2) * tf.cosh(q[0]), rtol=1e-10)


def _sin_and_cos(z):
  return [tf.sin(z), tf.cos(z)]


@pytest.mark.parametrize('dtype', [tf.float32, tf.float64])
def test_evaluate_together_matches_closed_forms(dtype):
  """Functions evaluated together (`evaluate`) give the closed forms of
  E[sin z1 sin z2] and E[cos z1 cos z2], and their first and second
  derivatives, as separate functions do."""
  def cos_closed_form(q12, q11, q22):
    return tf.exp(-(q11 + q22) / 2) * tf.cosh(q12)
  for k, closed_form in enumerate([_sin_closed_form, cos_closed_form]):
    compiled = compile_ops.xla(
        lambda a, b, c, k=k: gauss_hermite.expectations(
            [tf.sin, tf.cos], a, b, c, 30, evaluate=_sin_and_cos)[k],
        share=False)
    got = _derivatives(compiled, dtype)
    want = _derivatives(closed_form, dtype)
    rtol = 1e-4 if dtype == tf.float32 else 1e-9
    for g, w in zip(tf.nest.flatten(got), tf.nest.flatten(want)):
      np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=rtol, atol=rtol)


def _loop_body_ops(fn, *specs):
  """Op types of the while loop's body in the graph of `fn(*specs)`."""
  graph = tf.function(fn, autograph=False).get_concrete_function(
      *specs).graph.as_graph_def()
  bodies = [f for f in graph.library.function
            if 'while_body' in f.signature.name]
  assert len(bodies) == 1
  return [node.op for node in bodies[0].node_def]


def test_loop_evaluates_each_function_once_per_step():
  """A loop step evaluates the functions once for its whole group of inner
  nodes and once for its outer node: 2 `Tanh` ops with `evaluate` sharing
  tanh between tanh and its derivative (not one per node and function: each
  op in the graph costs trace and XLA compile time)."""
  def tanh_and_derivative(z):
    t = tf.tanh(z)
    return [t, 1 - t * t]
  spec = tf.TensorSpec([4, 6, 6], tf.float32)
  ops = _loop_body_ops(
      lambda a, b, c: gauss_hermite.expectations(
          [tf.tanh, lambda z: 1 - tf.tanh(z) ** 2], a, b, c, 25,
          evaluate=tanh_and_derivative),
      spec, tf.TensorSpec([4, 6, 1]), tf.TensorSpec([4, 1, 6]))
  assert ops.count('Tanh') == 2, ops


@pytest.mark.parametrize('shapes', [
    ((), (), ()),                         # one pair
    ((7,), (7,), (1,)),                   # a vector of pairs
    ((3, 4, 5), (3, 4, 1), (3, 1, 5)),    # packed blocks
    ((2, 3, 4, 4), (2, 3, 1, 1), (1,)),   # spatial axes, a shared variance
])
def test_matches_the_vectorised_form_for_every_rank(shapes):
  """The loop (its node axis inserted after the first axis) and the
  vectorised form agree for covariances of rank 0 to 4, with variances
  broadcasting from lower ranks."""
  rng = np.random.RandomState(2)
  s12, s11, s22 = shapes
  q11 = 0.5 + rng.rand(*s11)
  q22 = 0.5 + rng.rand(*s22)
  q12 = np.sqrt(q11 * q22) * rng.uniform(-0.95, 0.95, s12)
  q = [tf.constant(np.asarray(v, np.float64)) for v in (q12, q11, q22)]
  fns = [tf.tanh, tf.sin]
  loop = gauss_hermite.expectations(fns, *q, 11)
  ref = gauss_hermite.reference_expectations(fns, *q, 11)
  for got, want in zip(loop, ref):
    assert got.shape == np.shape(q12)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_variances_of_higher_rank_than_the_covariances_are_refused():
  q = tf.constant(_Q12)
  with pytest.raises(ValueError, match='`q22` must have rank at most'):
    gauss_hermite.expectations([tf.sin], q, tf.constant(_Q11),
                               tf.ones([1, 2, 3], tf.float64), 5)


def test_gradient_reaches_captured_variables():
  """d/da E[a sin z1 · a sin z2] = 2 a E[sin z1 sin z2]; a function over a
  variable is differentiated in the variable as well as the covariances."""
  a = tf.Variable(1.3, dtype=tf.float64)
  q = [tf.constant(v, tf.float64) for v in (_Q12, _Q11, _Q22)]
  with tf.GradientTape() as tape:
    e, = gauss_hermite.expectations([lambda z: a * tf.sin(z)], *q, 30)
    total = tf.reduce_sum(e)
  np.testing.assert_allclose(
      tape.gradient(total, a).numpy(),
      2 * 1.3 * tf.reduce_sum(_sin_closed_form(*q)).numpy(), rtol=1e-10)


def test_matches_the_vectorised_form():
  """The loop and the vectorised (differentiable) form sum the same terms."""
  rng = np.random.RandomState(1)
  a = rng.randn(40, 5)
  cov = a @ a.T / 5
  var = np.diag(cov)
  q = [tf.constant(v) for v in (cov, var[:, None], var[None, :])]
  fns = [tf.tanh, lambda z: 1 / (1 + tf.exp(-z))]
  loop = gauss_hermite.expectations(fns, *q, 17)
  ref = gauss_hermite.reference_expectations(fns, *q, 17)
  for got, want in zip(loop, ref):
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


_PEAK = """
import json, sys
import numpy as np, tensorflow as tf
from nt_gp import stax
n, numerical = int(sys.argv[1]), sys.argv[2] == 'numerical'
act = stax.ElementwiseNumerical(tf.tanh, deg=25) if numerical else stax.Erf()
_, _, kernel_fn = stax.serial(stax.Dense(64, 1.5, 0.1), act, stax.Dense(1))
x = np.random.RandomState(0).randn(n, 8).astype(np.float32)
k = kernel_fn(x, None, ('nngp', 'ntk'))
print(json.dumps([float(np.max(np.abs(v))) for v in k]))
# VmHWM: ru_maxrss would carry the peak of the pytest process across exec.
print([int(l.split()[1]) * 1024 for l in open('/proc/self/status')
       if l.startswith('VmHWM:')][0])
"""


def _peak_bytes(n, kind):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  out = subprocess.run([sys.executable, '-c', _PEAK, str(n), kind],
                       capture_output=True, text=True, env=env, check=True)
  values, peak = out.stdout.strip().splitlines()[-2:]
  assert all(np.isfinite(json.loads(values)))
  return int(peak)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists('/proc/self/status'),
                    reason='needs Linux /proc for the peak resident set')
def test_numerical_kernel_memory_is_a_few_kernels():
  """NNGP and NTK of a tanh MLP by quadrature (deg 25) at N=1200 need at
  most 100 kernel sizes more than the same network with a closed-form
  activation (measured: ~45; the vectorised quadrature needed ~2.2 GB more,
  ~380 kernel sizes)."""
  n = 1200
  excess = _peak_bytes(n, 'numerical') - _peak_bytes(n, 'erf')
  assert excess <= 100 * n * n * 4, f'{excess / 1e6:.0f} MB above Erf'


def test_layers_with_one_activation_share_one_compiled_map():
  """Two ElementwiseNumerical(tanh) layers compile one covariance map (the
  maps' closures hold only static values), not one per layer."""
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  from nt_gp.stax import compiled_map  # pylint: disable=g-import-not-at-top
  before = len(compiled_map._COMPILED)  # pylint: disable=protected-access
  _, _, kernel_fn = stax.serial(
      stax.Dense(8), stax.ElementwiseNumerical(tf.tanh, deg=7),
      stax.Dense(8), stax.ElementwiseNumerical(tf.tanh, deg=7), stax.Dense(1))
  k = kernel_fn(np.random.RandomState(0).randn(6, 3), None, ('nngp', 'ntk'))
  assert np.all(np.isfinite(k.ntk))
  assert len(compiled_map._COMPILED) == before + 1  # pylint: disable=protected-access
