"""Compiled covariance maps are shared between equal layers of different
networks (TensorFlow never frees XLA executables, so one per layer instance
would grow without bound), and sharing never mixes up hyperparameters."""
import numpy as np
import pytest

import nt_gp
from nt_gp import stax
from nt_gp.ops import compile as compile_ops
from nt_gp.stax import compiled_map


@pytest.fixture(autouse=True)
def _compile_on_first_call():
  """Small inputs would otherwise run their first call without XLA."""
  old = nt_gp.config.graph_first_call_max_entries
  nt_gp.config.graph_first_call_max_entries = 0
  yield
  nt_gp.config.graph_first_call_max_entries = old


def _net(a, w_std):
  return stax.serial(stax.Conv(1, (3, 3), W_std=w_std, padding='SAME'),
                     stax.ABRelu(a, 1.), stax.AvgPool((2, 2)), stax.Flatten(),
                     stax.Dense(1, W_std=w_std))[2]


def test_new_networks_reuse_compiled_maps():
  x = np.random.RandomState(0).randn(3, 6, 6, 2)
  _net(0.1, 1.5)(x, None, ('nngp', 'ntk'))
  counts = len(compile_ops._SHARED), len(compiled_map._COMPILED)  # pylint: disable=protected-access
  for a, w in ((0.2, 1.1), (-0.5, 2.0), (0.1, 1.5)):
    _net(a, w)(x, None, ('nngp', 'ntk'))
  assert (len(compile_ops._SHARED), len(compiled_map._COMPILED)) == counts  # pylint: disable=protected-access


@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_shared_maps_use_each_networks_hyperparameters(dtype):
  """Every network's kernel equals its kernel computed without XLA (where
  nothing is shared), even though all of them run the same compiled maps."""
  x = np.random.RandomState(1).randn(4, 6, 6, 2).astype(dtype)
  configs = [(0.1, 1.5), (0.7, 0.9), (-1.0, 2.0)]
  compiled = [_net(a, w)(x, None, ('nngp', 'ntk')) for a, w in configs]
  with nt_gp.compilation(jit_compile=False):
    plain = [_net(a, w)(x, None, ('nngp', 'ntk')) for a, w in configs]
  rtol = 1e-5 if dtype == np.float32 else 1e-12
  for got, want in zip(compiled, plain):
    np.testing.assert_allclose(got.nngp.numpy(), want.nngp.numpy(), rtol=rtol)
    np.testing.assert_allclose(got.ntk.numpy(), want.ntk.numpy(), rtol=rtol)
  # And the configurations really differ from one another.
  assert not np.allclose(compiled[0].nngp.numpy(), compiled[1].nngp.numpy())
