"""kernel_fn with several inputs (lists/tuples of arrays), against closed forms.

For `parallel(Dense(1, W_std=1, b_std=0), Dense(1, W_std=1, b_std=0))`
followed by `FanInSum`, the NNGP is sum_i <x1_i, x2_i> / d_i and the NTK of
this one-layer readout equals it (NTK parameterization, the default).
"""
import numpy as np
import pytest

from nt_gp import stax


def _closed_form(xs1, xs2):
  return sum(a @ b.T / a.shape[1] for a, b in zip(xs1, xs2))


@pytest.mark.parametrize('container', [list, tuple])
@pytest.mark.parametrize('with_x2', [False, True])
def test_parallel_inputs_closed_form(container, with_x2):
  rng = np.random.RandomState(0)
  xs1 = container([rng.randn(3, 4), rng.randn(3, 5)])
  xs2 = container([rng.randn(2, 4), rng.randn(2, 5)]) if with_x2 else None
  _, _, kernel_fn = stax.serial(
      stax.parallel(stax.Dense(1, 1., 0.), stax.Dense(1, 1., 0.)),
      stax.FanInSum())
  k = kernel_fn(xs1, xs2, ('nngp', 'ntk'))
  expected = _closed_form(xs1, xs1 if xs2 is None else xs2)
  np.testing.assert_allclose(k.nngp.numpy(), expected, rtol=1e-12)
  np.testing.assert_allclose(k.ntk.numpy(), expected, rtol=1e-12)
