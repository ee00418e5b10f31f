"""A covariance map's two outputs leave its compiled function as one complex
tensor when small (`nt_gp.stax.compiled_map._values_only`).

The joined and the separate outputs must be the same kernels (real part
nngp', imaginary part ntk', never swapped or conjugated), in both dtypes,
for the ReLU family and for a map given as a Python function of its own;
the joined form must really be taken for small maps and not for maps over
`JOIN_MAX_ENTRIES`; the gradients (which recompute the map with its two
outputs) stay those of the separate form.
"""
import numpy as np
import pytest
import tensorflow as tf

from nt_gp import stax
from nt_gp.stax import compiled_map
from tests import finite_differences


def _network():
  return stax.serial(stax.Dense(16, W_std=1.3, b_std=0.2), stax.Relu(),
                     stax.Dense(16, W_std=1.1, b_std=0.1), stax.Erf(),
                     stax.Dense(1, W_std=0.9))[2]


def _kernels(x, join_max, monkeypatch, seen=None):
  # Fresh compiled maps and a fresh kernel_fn, so nothing traced under the
  # other setting is reused.
  monkeypatch.setattr(compiled_map, '_COMPILED', {})
  monkeypatch.setattr(compiled_map, 'JOIN_MAX_ENTRIES', join_max)
  split = compiled_map._split_values  # pylint: disable=protected-access

  def spy(values, *args):
    out = values(*args)
    if seen is not None:
      seen.append((out[0].dtype, out[0].shape.num_elements()))
    return split(lambda *a: out, *args)
  monkeypatch.setattr(compiled_map, '_split_values', spy)
  k = _network()(x, None, ('nngp', 'ntk'))
  return k.nngp.numpy(), k.ntk.numpy()


@pytest.mark.parametrize('dtype,tol', [(np.float32, 2e-6), (np.float64, 1e-13)])
def test_joined_outputs_are_the_separate_ones(dtype, tol, monkeypatch):
  x = np.random.default_rng(0).normal(size=(7, 5)).astype(dtype)
  seen = []
  nngp, ntk = _kernels(x, 2 ** 22, monkeypatch, seen)
  assert seen and all(d.is_complex for d, _ in seen), seen
  seen = []
  nngp2, ntk2 = _kernels(x, 0, monkeypatch, seen)
  assert seen and not any(d.is_complex for d, _ in seen), seen
  assert nngp.dtype == dtype and ntk.dtype == dtype
  np.testing.assert_allclose(nngp, nngp2, rtol=tol, atol=0)
  np.testing.assert_allclose(ntk, ntk2, rtol=tol, atol=0)
  # nngp and ntk differ, so a swap would show.
  assert not np.allclose(nngp, ntk, rtol=1e-2)


def test_only_maps_up_to_the_limit_are_joined(monkeypatch):
  x = np.random.default_rng(1).normal(size=(6, 3))
  seen = []
  _kernels(x, 2 ** 22, monkeypatch, seen)
  entries = max(n for _, n in seen)    # the covariance as computed (padded)
  seen = []
  _kernels(x, entries, monkeypatch, seen)
  assert any(d.is_complex and n == entries for d, n in seen), seen
  seen = []
  _kernels(x, entries - 1, monkeypatch, seen)
  assert seen and not any(d.is_complex for d, n in seen if n >= entries), seen


def test_gradient_through_joined_map_matches_finite_differences(monkeypatch):
  monkeypatch.setattr(compiled_map, '_COMPILED', {})
  x = np.random.default_rng(2).normal(size=(5, 4))

  def total(w):
    kernel_fn = stax.serial(stax.Dense(8, W_std=w, b_std=0.1), stax.Relu(),
                            stax.Dense(1, W_std=1.2))[2]
    k = kernel_fn(x, None, ('nngp', 'ntk'))
    return tf.reduce_sum(k.nngp) + 0.5 * tf.reduce_sum(k.ntk)
  g, fd = finite_differences.scalar_gradient_and_difference(total, 1.3)
  assert g == pytest.approx(fd, rel=1e-7)
