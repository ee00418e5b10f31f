"""`nt_gp.predict` equals neural-tangents 0.6.5's `predict` in float64.

Closed-form results (`gradient_descent_mse`, `gradient_descent_mse_ensemble`,
`gp_inference`, `max_learning_rate`) must agree to `tolerances.PREDICT`
(1e-11 relative error; worst measured 3.7e-13).
`gradient_descent` solves an ODE in both libraries with adaptive
Dormand-Prince at rtol = atol = 1.4e-8 (JAX's `odeint` defaults, used by
neural-tangents); results are compared at `predict_cases.ODE_RTOL` = 1e-5
(largest difference seen: 3e-6, momentum case). That our solver is accurate
to its tolerance is checked against closed forms in test_predict.py.

Against golden results (tools/make_golden_predict.py) and live against the
reference env (a skip only off CI when the env is missing).
"""
import collections
import functools
import types

import numpy as np
import pytest
import tensorflow as tf

from nt_gp import predict
from nt_gp import stax
from tests.parity import harness
from tests.parity import live
from tests.parity import predict_cases as pc
from tests.parity import tolerances

CASES = pc.CASES
IDS = [c['name'] for c in CASES]

TF_API = types.SimpleNamespace(
    predict=predict, stax=stax,
    kernels=collections.namedtuple('Kernel', ['nngp', 'ntk']),
    losses={
        'mse': lambda fx, y: 0.5 * tf.reduce_mean((fx - y)**2),
        'xent': lambda fx, y: -tf.reduce_mean(tf.nn.log_softmax(fx) * y),
    })


@functools.lru_cache(maxsize=None)
def _golden():
  with np.load(harness.GOLDEN / 'predict.npz') as f:
    return {k: f[k] for k in f.files}


@functools.lru_cache(maxsize=None)
def _live():
  return pc.run_reference(harness.reference_python())


@functools.lru_cache(maxsize=None)
def _ours(name, golden_inputs=False):
  """Our results for a case, from the golden file's inputs or regenerated
  ones (the regenerated kernels come from BLAS products whose last bits
  depend on the CPU, so the golden check must use the stored inputs)."""
  case = next(c for c in CASES if c['name'] == name)
  if golden_inputs:
    inputs = pc.case_inputs({'name': 'inputs/' + name}, _golden())
  else:
    inputs = pc.make_inputs(case)
  return pc.run_case(case, inputs, TF_API)


def _rtol(case):
  return pc.ODE_RTOL if case['kind'] == 'ode' else tolerances.PREDICT


def _check(case, ours, reference):
  name = case['name']
  if f'{name}/error' in reference:
    raise AssertionError(f'reference failed:\n{reference[f"{name}/error"]}')
  ref_keys = {k[len(name) + 1:] for k in reference if k.startswith(name + '/')}
  assert ref_keys == set(ours), ('outputs differ', ref_keys ^ set(ours))
  harness.assert_matches(case, ours, reference, rtol=_rtol(case))


@pytest.mark.parametrize('case', CASES, ids=IDS)
def test_golden(case):
  golden = _golden()
  regenerated = pc.make_inputs(case)
  stored = pc.case_inputs({'name': 'inputs/' + case['name']}, golden)
  assert set(stored) == set(regenerated)
  for k, v in regenerated.items():   # same case definition as the golden's
    np.testing.assert_allclose(stored[k], v, rtol=1e-12, atol=1e-14,
                               err_msg=k)
  _check(case, _ours(case['name'], golden_inputs=True), golden)


@pytest.mark.parametrize('case', CASES, ids=IDS)
def test_live(case):
  live.require_reference()
  _check(case, _ours(case['name']), _live())


def test_comparison_can_fail():
  """A perturbed result of 1e-5 relative is caught by the comparison."""
  case = next(c for c in CASES if c['name'] == 'mse_basic')
  ours = dict(_ours('mse_basic', golden_inputs=True))
  key = 'call1/1'
  ours[key] = ours[key] * (1 + 1e-5)
  with pytest.raises(AssertionError):
    _check(case, ours, _golden())
