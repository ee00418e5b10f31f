"""Small self-covariance maps run outside the compiled map
(`nt_gp.stax.compiled_map._forward_values`).

A convolution's full spatial `cov1` (a pooled readout needs it) is mapped
by the whole nonlinearity; up to `UNFUSED_SELF_MAX_ENTRIES` entries that
map runs as TensorFlow ops of the caller instead of a compiled loop of its
own. Both forms must give the same kernels (and through them the same
later layers), in both dtypes, with and without a second batch (`cov2`),
and the same gradients.
"""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import stax
from nt_gp.stax import compiled_map
from tests import finite_differences


def _network():
  return stax.serial(
      stax.Conv(4, (2,), padding='SAME', W_std=1.3, b_std=0.2), stax.Relu(),
      stax.Conv(4, (2,), padding='SAME', W_std=1.1, b_std=0.1), stax.Gelu(),
      stax.GlobalAvgPool(), stax.Dense(1, W_std=0.9))[2]


def _kernels(x1, x2, limit, monkeypatch, unfused=None):
  monkeypatch.setattr(compiled_map, '_COMPILED', {})
  monkeypatch.setattr(compiled_map, 'UNFUSED_SELF_MAX_ENTRIES', limit)
  impl_calls = []
  forward = compiled_map._forward_values  # pylint: disable=protected-access

  def spy(values, impl, *args):
    def counted(*a):
      impl_calls.append(len(a))
      return impl(*a)
    return forward(values, counted, *args)
  monkeypatch.setattr(compiled_map, '_forward_values', spy)
  k = _network()(x1, x2, ('nngp', 'ntk'))
  if unfused is not None:
    unfused.extend(impl_calls)
  return k.nngp.numpy(), k.ntk.numpy()


@pytest.mark.parametrize('dtype,tol', [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize('second_batch', [False, True])
def test_unfused_self_maps_give_the_compiled_kernels(dtype, tol, second_batch,
                                                     monkeypatch):
  rng = np.random.default_rng(0)
  x1 = rng.normal(size=(3, 6, 2)).astype(dtype)
  x2 = rng.normal(size=(4, 6, 2)).astype(dtype) if second_batch else None
  unfused = []
  nngp, ntk = _kernels(x1, x2, 2 ** 16, monkeypatch, unfused)
  # cov1 (and cov2) of both nonlinearities, each 6 x 6 x batch entries.
  assert len(unfused) == (4 if second_batch else 2), unfused
  compiled = []
  nngp2, ntk2 = _kernels(x1, x2, 0, monkeypatch, compiled)
  assert not compiled
  assert nngp.dtype == dtype
  np.testing.assert_allclose(nngp, nngp2, rtol=tol, atol=0)
  np.testing.assert_allclose(ntk, ntk2, rtol=tol, atol=0)


def test_gradient_with_unfused_self_maps_matches_finite_differences():
  x = np.random.default_rng(1).normal(size=(3, 5, 2))

  def total(w):
    kernel_fn = stax.serial(
        stax.Conv(4, (2,), padding='SAME', W_std=w, b_std=0.1), stax.Relu(),
        stax.Conv(4, (2,), padding='SAME', W_std=1.2), stax.Relu(),
        stax.GlobalAvgPool(), stax.Dense(1))[2]
    k = kernel_fn(x, None, ('nngp', 'ntk'))
    return tf.reduce_sum(k.nngp) + 0.5 * tf.reduce_sum(k.ntk)
  g, fd = finite_differences.scalar_gradient_and_difference(total, 1.3)
  assert g == pytest.approx(fd, rel=1e-7)


def _gradients(x, a0, limit, monkeypatch, calls):
  """d(sum NNGP + sum NTK / 2)/d(a, x) of a network whose ABRelu slope `a`
  is a tensor (a lifted argument of the shared map), recording which
  arguments each covariance-map gradient (`_map_vjp`) was given."""
  monkeypatch.setattr(compiled_map, '_COMPILED', {})
  monkeypatch.setattr(compiled_map, 'UNFUSED_SELF_MAX_ENTRIES', limit)
  real = compiled_map._map_vjp  # pylint: disable=protected-access

  def spy(impl, mask, args, dys):
    calls.append(tuple(t is not None for t in args[:-1]))
    return real(impl, mask, args, dys)
  monkeypatch.setattr(compiled_map, '_map_vjp', spy)

  def total(a, x):
    kernel_fn = stax.serial(
        stax.Conv(4, (2,), padding='SAME', W_std=1.3, b_std=0.2),
        stax.ABRelu(a, 1.0),
        stax.Conv(4, (2,), padding='SAME', W_std=1.1, b_std=0.1),
        stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1, W_std=0.9))[2]
    k = kernel_fn(x, None, ('nngp', 'ntk'))
    return tf.reduce_sum(k.nngp) + 0.5 * tf.reduce_sum(k.ntk)
  a, x = tf.constant(a0, x.dtype), tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch([a, x])
    value = total(a, x)
  da, dx = tape.gradient(value, [a, x])
  return float(da), dx.numpy(), lambda a: float(total(tf.constant(a, x.dtype),
                                                     x))


@pytest.mark.parametrize('dtype,tol', [(np.float32, 1e-5), (np.float64, 1e-12)])
def test_unfused_self_maps_are_differentiated_outside_the_compiled_gradient(
    dtype, tol, monkeypatch):
  """Where the forward pass runs a small self map unfused, its gradient is
  TensorFlow ops too (`_vjp_values`): the compiled gradient gets the map
  without it, a second gradient only it, and together they equal the
  gradient of the map compiled whole (with respect to the inputs and the
  map's own hyperparameter), which matches finite differences."""
  x = np.random.default_rng(2).normal(size=(3, 5, 2)).astype(dtype)
  split, whole = [], []
  da, dx, total = _gradients(x, 0.3, 2 ** 16, monkeypatch, split)
  da2, dx2, _ = _gradients(x, 0.3, 0, monkeypatch, whole)
  # Slots 0 and 4 of the map's arguments: the NNGP and the self-covariance
  # cov1. Compiled whole, every gradient call has both; split, the compiled
  # one has the NNGP without cov1 and the unfused one cov1 alone.
  assert whole and all(c[0] and c[4] for c in whole), whole
  assert any(c[0] and not c[4] for c in split), split
  assert any(c[4] and not c[0] for c in split), split
  assert da == pytest.approx(da2, rel=tol)
  np.testing.assert_allclose(dx, dx2, rtol=tol, atol=tol * np.abs(dx).max())
  if dtype == np.float64:
    h = 1e-5
    assert da == pytest.approx((total(0.3 + h) - total(0.3 - h)) / (2 * h),
                               rel=1e-7)
