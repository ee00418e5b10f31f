"""The shared argument checks (nt_gp.validation) as users meet them.

Each public entry point that takes `get`, a size or a parameterization
answers a bad value with the same kind of error and message.
"""
import numpy as np
import pytest

import nt_gp
from nt_gp import stax
from nt_gp import validation

X = np.random.RandomState(0).randn(3, 2)


def _stax_kernel(get):
  return stax.Dense(1)[2](X, None, get)


def _empirical_kernel(get):
  init_fn, apply_fn, _ = stax.Dense(4)
  _, params = init_fn(0, X.shape)
  return nt_gp.empirical_kernel_fn(apply_fn)(X, None, get, params)


@pytest.mark.parametrize('kernel', [_stax_kernel, _empirical_kernel])
@pytest.mark.parametrize('get, error, match', [
    (('nngp', 'NNGP'), ValueError, 'must be unique'),
    ((), ValueError, 'must not be empty'),
    (3, TypeError, '`get` must be None, a string'),
    ('foo', ValueError, "`get='foo'` is not available here; choose from"),
])
def test_bad_get_is_answered_alike(kernel, get, error, match):
  with pytest.raises(error, match=match):
    kernel(get)


@pytest.mark.parametrize('kernel', [_stax_kernel, _empirical_kernel])
def test_get_names_ignore_case(kernel):
  np.testing.assert_allclose(kernel('NTK'), kernel('ntk'))


@pytest.mark.parametrize('make, name', [
    (lambda v: stax.Dense(v), 'out_dim'),
    (lambda v: stax.Conv(v, (2,)), 'out_chan'),
    (lambda v: stax.FanOut(v), 'num'),
    (lambda v: stax.GlobalSelfAttention(4, 4, 4, v), 'n_heads'),
    (lambda v: stax.ElementwiseNumerical(np.sin, v), 'deg'),
])
def test_sizes_are_positive_ints(make, name):
  with pytest.raises(ValueError, match=f'`{name}` must be a positive int'):
    make(0)
  for bad in (True, 2.5, '3'):
    with pytest.raises(TypeError, match=f'`{name}` must be an int'):
      make(bad)


@pytest.mark.parametrize('make', [
    lambda p: stax.Dense(1, parameterization=p),
    lambda p: stax.Conv(1, (2,), parameterization=p),
])
def test_parameterization(make):
  with pytest.raises(ValueError, match='"ntk" or "standard"'):
    make('ntkk')
  make('Standard')   # any case


def test_positive_int_sequences():
  with pytest.raises(TypeError, match='`filter_shape` must be a sequence'):
    stax.Conv(1, 3)
  with pytest.raises(ValueError, match='`strides` must have 2 entries'):
    stax.AvgPool((2, 2), (1,))
  with pytest.raises(ValueError, match='`window_shape` entries must be '
                     'positive'):
    stax.AvgPool((0, 2))


def test_is_number():
  assert validation.is_number(1) and validation.is_number(np.float32(2))
  assert not validation.is_number(True) and not validation.is_number('1')
  assert not validation.is_number(np.ones(1))
