"""Second derivatives of kernels against neural-tangents (`jax.hessian`,
`jax.jacfwd(jax.grad(...))`, float64).

For the networks of tests/second_order/cases.py (ReLU, ABRelu with a negative
slope, LeakyRelu, Erf, Gelu, a smooth activation by quadrature, LayerNorm, a
CNN with AvgPool and GlobalAvgPool, attention): mixed input derivatives
d²k/dx dx' and Hessians with respect to `W_std`/`b_std` of weighted kernel
sums, through the full path (`kernel_fn`, `NeuralKernel.matrix`) and the
paired and diagonal paths (`NeuralKernel.apply`, GPflow's `K_diag`).

Reference values are in tests/golden/second_derivatives.npz, made by
tools/make_golden_second_derivatives.py; `test_golden_matches_live_reference`
recomputes them with neural-tangents when its env exists (required on CI).
Second-order graphs take seconds to build, so the larger networks are marked
slow.
"""
import functools

import numpy as np
import pytest

from tests.parity import harness
from tests.second_order import cases
from tests.second_order import ours
from tests.second_order import reference

GOLDEN = harness.GOLDEN / 'second_derivatives.npz'
RTOL = 1e-7
SLOW = ('numerical_tanh', 'cnn_pools', 'attention')
# The paired path of some cases, and which kernels (each is its own graph,
# and second-order graphs of vectorised pairs take long to build; a pair is
# the full path on 1x1 inputs, which all cases check).
PAIRED = {'relu': ('nngp', 'ntk'), 'abrelu': ('ntk',), 'layernorm': ('ntk',),
          'cnn_pools': ('ntk',), 'attention': ('nngp',)}
CASES = {c['name']: c for c in cases.SUITE}
# Each test builds second-order graphs (up to a GB that TensorFlow keeps
# until its process ends): each runs in its own process.
pytestmark = pytest.mark.isolated


def _param(name):
  return pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name


@functools.lru_cache(maxsize=None)
def golden():
  with np.load(GOLDEN) as f:
    return {k: f[k] for k in f.files}


def assert_close(name, got, reference, rtol=RTOL):
  """Entrywise relative error, with a floor of 1e-3 of the largest entry.

  A quantity that is identically zero (after LayerNorm, k(x, x) does not
  depend on x) is rounding noise in both libraries: it must be below 1e-10
  of the case's Hessian w.r.t. the hyperparameters.
  """
  assert f'{name}/error' not in reference, reference.get(f'{name}/error')
  for key, value in got.items():
    ref = reference[f'{name}/{key}']
    assert value.shape == ref.shape, (name, key, value.shape, ref.shape)
    get = key.split('/')[0]
    zero = 1e-10 * np.max(np.abs(reference[f'{name}/{get}/full/hess_cross']))
    scale = np.max(np.abs(ref))
    if scale < zero:
      assert np.max(np.abs(value)) < zero, (name, key, value)
      continue
    rel = np.max(np.abs(value - ref) / np.maximum(np.abs(ref), 1e-3 * scale))
    assert rel <= rtol, f'{name} {key}: relative error {rel:.3g} > {rtol:g}'


def test_golden_inputs_are_the_cases_inputs():
  g = golden()
  for case in cases.SUITE:
    for k, v in cases.case_inputs(case).items():
      np.testing.assert_array_equal(g[f'{case["name"]}/{k}'], v)


def test_golden_matches_live_reference():
  reference.require_live()
  live = reference.tool().run_reference()
  g = golden()
  for key, value in live.items():
    assert not key.endswith('/error'), value
    np.testing.assert_allclose(value, g[key], rtol=1e-9, atol=1e-12,
                               err_msg=key)


@pytest.mark.parametrize('name', [_param(n) for n in CASES])
def test_full_path(name):
  case = CASES[name]
  got = ours.full_quantities(case, cases.GETS, cases.case_inputs(case),
                             cases.THETA)
  assert_close(name, got, golden())


@pytest.mark.parametrize('name', [_param(n) for n in PAIRED])
def test_paired_and_diagonal_paths(name):
  case = CASES[name]
  for get in PAIRED[name]:
    got = ours.paired_quantities(case, get, cases.case_inputs(case),
                                 cases.THETA)
    assert_close(name, got, golden())


@pytest.mark.parametrize('mode', ['function', 'xla'])
def test_compiled_modes(mode):
  """In a `tf.function`, with and without `jit_compile=True` (Hessians with
  respect to the hyperparameters; the eager tests cover input
  derivatives)."""
  case = CASES['relu']
  arrays = cases.case_inputs(case)
  got = ours.full_quantities(case, ('ntk',), arrays, cases.THETA,
                             mixed=False, mode=mode)
  got.update(ours.paired_quantities(case, 'ntk', arrays, cases.THETA,
                                    mixed=False, mode=mode))
  assert len(got) == 4
  assert_close('relu', got, golden())
