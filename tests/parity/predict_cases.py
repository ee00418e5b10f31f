"""Cases comparing `nt_gp.predict` with `neural_tangents.predict` (0.6.5).

Imports only numpy: it is loaded both by the tests (TensorFlow) and by
`nt_predict_runner.py` in the reference env (JAX). Every case is run by
`run_case(case, inputs, api)` with `api` giving one library's `predict`,
`stax`, losses and a `(nngp, ntk)` namedtuple; both sides therefore make the
same calls on the same inputs.

Kernel-based cases get random positive definite kernels (identical arrays for
both libraries); `ensemble` cases compute kernels with each library's `stax`
from a network whose kernels already agree (see suite_fc.py).

A case: name, kind ('mse', 'gp', 'ode', 'lr', 'ensemble'), data (input
sizes), kwargs (of the constructor) and calls (arguments of `predict_fn`;
'@name' strings name inputs).
"""
import os
import pathlib
import shutil
import subprocess
import tempfile
import zlib

import numpy as np

RUNNER = pathlib.Path(__file__).with_name('nt_predict_runner.py')

# Parity of ODE results: both solvers run at rtol = atol = 1.4e-8, so they
# agree only to about that tolerance times the growth of errors along the flow.
ODE_RTOL = 1e-5


# ----------------------------------------------------------------------------
# Inputs.
# ----------------------------------------------------------------------------
def _zip(k, r):
  """`(A, *R, B, *R)` -> zipped `(A, B, R1, R1, R2, R2, ...)`."""
  perm = [0, r + 1]
  for i in range(r):
    perm += [1 + i, r + 2 + i]
  return k.transpose(perm)


def _joint_kernel(rng, n_total, rest):
  """Random positive definite kernel over `n_total` points, zipped layout."""
  rows = n_total * int(np.prod(rest, dtype=np.int64))
  feats = rng.randn(rows, rows + 3)
  k = feats @ feats.T / (rows + 3) + 0.1 * np.eye(rows)
  return _zip(k.reshape((n_total,) + rest + (n_total,) + rest), len(rest))


def _nontrace_rest(y_shape, trace_axes):
  nd = len(y_shape)
  axes = {a % nd for a in trace_axes}
  return tuple(d for i, d in enumerate(y_shape) if i not in axes and i != 0)


def _targets(rng, shape, kind):
  if kind == 'onehot':
    labels = rng.randint(0, shape[-1], size=shape[:-1])
    return np.eye(shape[-1])[labels]
  return rng.randn(*shape)


def make_inputs(case):
  """Deterministic float64 inputs of a case: {name: array}."""
  rng = np.random.RandomState(zlib.crc32(case['name'].encode()) % (2**31))
  data = case['data']
  y_shape = tuple(data['y_shape'])
  n_train, n_test = y_shape[0], data.get('n_test', 3)
  test_shape = (n_test,) + y_shape[1:]
  out = {'y': _targets(rng, y_shape, data.get('y', 'normal')),
         'fx_train_0': 0.3 * rng.randn(*y_shape),
         'fx_test_0': 0.3 * rng.randn(*test_shape)}
  if case['kind'] == 'ensemble':
    x_dim = data.get('x_dim', 4)
    out['x_train'] = rng.randn(n_train, x_dim)
    out['x_test'] = rng.randn(n_test, x_dim)
    return out
  rest = _nontrace_rest(y_shape, case['kwargs'].get('trace_axes', (-1,)))
  nngp = _joint_kernel(rng, n_train + n_test, rest)
  ntk = nngp + _joint_kernel(rng, n_train + n_test, rest)
  for tag, k in (('nngp', nngp), ('ntk', ntk)):
    out[f'{tag}_dd'] = k[:n_train, :n_train]
    out[f'{tag}_td'] = k[n_train:, :n_train]
    out[f'{tag}_tt'] = k[n_train:, n_train:]
  return out


def all_inputs(cases):
  return {f'{c["name"]}/{k}': v for c in cases
          for k, v in make_inputs(c).items()}


def case_inputs(case, flat):
  prefix = case['name'] + '/'
  return {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}


def run_reference(python, cases=None, timeout=1800):
  """Runs all cases under neural-tangents (`python`: the reference env)."""
  cases = CASES if cases is None else cases
  tmp = tempfile.mkdtemp(prefix='nt_predict_')
  try:
    inp, out = os.path.join(tmp, 'inputs.npz'), os.path.join(tmp, 'out.npz')
    np.savez(inp, **all_inputs(cases))
    env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
    proc = subprocess.run([python, str(RUNNER), inp, out], capture_output=True,
                          text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
      raise RuntimeError(f'reference runner failed:\n{proc.stderr[-4000:]}')
    with np.load(out) as f:
      return {k: f[k] for k in f.files}
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


# ----------------------------------------------------------------------------
# Running a case with one library.
# ----------------------------------------------------------------------------
def _resolve(value, inputs, api):
  """'@name' is an input; '@K:<tag>' the (nngp, ntk) namedtuple of a tag."""
  if isinstance(value, str) and value.startswith('@'):
    value = value[1:]
    if value.startswith('K:'):
      tag = value[2:]
      return api.kernels(inputs[f'nngp_{tag}'], inputs[f'ntk_{tag}'])
    return inputs[value]
  return value


def _flatten(prefix, value, out):
  if value is None:
    return
  if hasattr(value, 'qx_train'):  # ODEState
    for f in ('fx_train', 'fx_test', 'qx_train', 'qx_test'):
      _flatten(f'{prefix}/{f}', getattr(value, f), out)
  elif hasattr(value, '_fields'):
    for f in value._fields:
      _flatten(f'{prefix}/{f}', getattr(value, f), out)
  elif isinstance(value, tuple):
    for i, v in enumerate(value):
      _flatten(f'{prefix}/{i}', v, out)
  else:
    out[prefix] = np.asarray(value)


def run_case(case, inputs, api):
  """Runs a case; returns {'call<i>/...': array}."""
  kind, kwargs = case['kind'], dict(case.get('kwargs', {}))
  r = lambda v: _resolve(v, inputs, api)
  out = {}
  if kind == 'lr':
    for i, call in enumerate(case['calls']):
      value = api.predict.max_learning_rate(inputs['ntk_dd'], **call)
      out[f'call{i}'] = np.asarray(value)
    return out

  if kind == 'mse':
    predict_fn = api.predict.gradient_descent_mse(
        r(case.get('k', '@ntk_dd')), inputs['y'], **kwargs)
  elif kind == 'ode':
    loss = api.losses[case['loss']]
    predict_fn = api.predict.gradient_descent(
        loss, r(case.get('k', '@ntk_dd')), inputs['y'], **kwargs)
  elif kind == 'gp':
    predict_fn = api.predict.gp_inference(r(case.get('k', '@K:dd')),
                                          inputs['y'], **kwargs)
  elif kind == 'ensemble':
    kernel_fn = eval(case['net'], {'stax': api.stax})[2]  # pylint: disable=eval-used
    predict_fn = api.predict.gradient_descent_mse_ensemble(
        kernel_fn, inputs['x_train'], inputs['y'], **kwargs)
  else:
    raise ValueError(kind)

  for i, call in enumerate(case['calls']):
    call = {k: r(v) for k, v in call.items()}
    if kind == 'ode' and call.pop('as_state', False):
      call['fx_train_or_state_0'] = api.predict.ODEState(
          call.pop('fx_train_or_state_0'), call.pop('fx_test_0'))
    _flatten(f'call{i}', predict_fn(**call), out)
  return out


# ----------------------------------------------------------------------------
# The cases.
# ----------------------------------------------------------------------------
_T_ARRAY = np.array([[0., 0.5], [2., 10.]])
_T_INC = np.array([0., 0.5, 1., 3.])

_MSE_CALLS = [
    dict(t=0., fx_train_0='@fx_train_0', fx_test_0='@fx_test_0',
         k_test_train='@ntk_td'),
    dict(t=1.5, fx_train_0='@fx_train_0', fx_test_0='@fx_test_0',
         k_test_train='@ntk_td'),
    dict(t=_T_ARRAY, fx_train_0='@fx_train_0', fx_test_0='@fx_test_0',
         k_test_train='@ntk_td'),
    dict(t=None, fx_train_0='@fx_train_0', fx_test_0='@fx_test_0',
         k_test_train='@ntk_td'),
    dict(t=1e3, fx_train_0='@fx_train_0', fx_test_0='@fx_test_0',
         k_test_train='@ntk_td'),
    dict(t=_T_ARRAY),  # default fx_train_0=0., train only
    dict(t=None),
    dict(t=2., fx_train_0=None, fx_test_0='@fx_test_0', k_test_train='@ntk_td'),
    dict(t=None, fx_train_0=None, fx_test_0='@fx_test_0',
         k_test_train='@ntk_td'),
    dict(t=_T_ARRAY, fx_test_0='@fx_test_0', k_test_train='@ntk_td'),
    dict(t=None, fx_test_0=0., k_test_train='@ntk_td'),
]

_GP_CALLS = [
    dict(get=None, k_test_train='@K:td', k_test_test='@K:tt'),
    dict(get='nngp', k_test_train='@K:td', k_test_test='@K:tt'),
    dict(get='ntk', k_test_train='@K:td', k_test_test='@K:tt'),
    dict(get='ntkgp', k_test_train='@K:td', k_test_test='@K:tt'),
    dict(get=('ntk', 'nngp'), k_test_train='@K:td'),
    dict(get='ntkgp', k_test_train='@K:td'),
    dict(get=None),
    dict(get=('nngp', 'ntk'), k_test_test=True),
]

_FC = ('stax.serial(stax.Dense(512, W_std=1.5, b_std=0.1), stax.Relu(), '
       'stax.Dense(1, W_std=1.2, b_std=0.2))')

_ENSEMBLE_CALLS = [
    dict(t=None, x_test='@x_test', get=None, compute_cov=True),
    dict(t=None, x_test='@x_test', get='ntk'),
    dict(t=None, x_test=None, get=('ntk', 'nngp'), compute_cov=True),
    dict(t=1.5, x_test='@x_test', get=None, compute_cov=True),
    dict(t=_T_ARRAY, x_test='@x_test', get='ntk', compute_cov=True),
    dict(t=_T_ARRAY, x_test='@x_test', get='nngp', compute_cov=True),
    dict(t=_T_ARRAY, x_test=None, get=None, compute_cov=True),
    dict(t=0., x_test=None, get='ntk', compute_cov=True),
    dict(t=3., x_test='@x_test', get=('nngp',)),
]

_ODE_CALLS = [
    dict(t=_T_INC, fx_train_or_state_0='@fx_train_0', fx_test_0='@fx_test_0',
         k_test_train='@ntk_td'),
    dict(t=2.),
    dict(t=_T_INC[1:], fx_train_or_state_0=None, fx_test_0='@fx_test_0',
         k_test_train='@ntk_td'),
]

CASES = [
    # gradient_descent_mse
    dict(name='mse_basic', kind='mse', data=dict(y_shape=(6, 3)),
         kwargs=dict(), calls=_MSE_CALLS),
    dict(name='mse_reg_lr', kind='mse', data=dict(y_shape=(6, 3)),
         kwargs=dict(learning_rate=2., diag_reg=1e-2), calls=_MSE_CALLS),
    dict(name='mse_reg_abs', kind='mse', data=dict(y_shape=(5, 2)),
         kwargs=dict(diag_reg=0.3, diag_reg_absolute_scale=True),
         calls=_MSE_CALLS),
    dict(name='mse_no_trace', kind='mse', data=dict(y_shape=(4, 2)),
         kwargs=dict(trace_axes=()), calls=_MSE_CALLS),
    dict(name='mse_trace_middle', kind='mse', data=dict(y_shape=(4, 3, 2)),
         kwargs=dict(trace_axes=(1,), diag_reg=1e-3), calls=_MSE_CALLS),
    dict(name='mse_nngp', kind='mse', data=dict(y_shape=(6, 1)),
         k='@nngp_dd', kwargs=dict(learning_rate=0.5),
         calls=[dict(t=_T_ARRAY, fx_train_0='@fx_train_0',
                     fx_test_0='@fx_test_0', k_test_train='@nngp_td')]),
    # gp_inference
    dict(name='gp_basic', kind='gp', data=dict(y_shape=(6, 3)),
         kwargs=dict(), calls=_GP_CALLS),
    dict(name='gp_reg', kind='gp', data=dict(y_shape=(6, 2)),
         kwargs=dict(diag_reg=1e-2), calls=_GP_CALLS),
    dict(name='gp_reg_abs', kind='gp', data=dict(y_shape=(5, 2)),
         kwargs=dict(diag_reg=0.5, diag_reg_absolute_scale=True),
         calls=_GP_CALLS),
    dict(name='gp_no_trace', kind='gp', data=dict(y_shape=(4, 2)),
         kwargs=dict(trace_axes=()), calls=_GP_CALLS),
    dict(name='gp_trace_middle', kind='gp', data=dict(y_shape=(4, 3, 2)),
         kwargs=dict(trace_axes=(-2,), diag_reg=1e-3), calls=_GP_CALLS),
    dict(name='gp_array', kind='gp', data=dict(y_shape=(6, 2)),
         k='@nngp_dd', kwargs=dict(diag_reg=1e-3),
         calls=[dict(get='nngp', k_test_train='@nngp_td',
                     k_test_test='@nngp_tt'),
                dict(get=('nngp', 'ntkgp'), k_test_train='@nngp_td')]),
    # max_learning_rate
    dict(name='lr', kind='lr', data=dict(y_shape=(6, 3)), kwargs=dict(),
         calls=[dict(), dict(y_train_size=18), dict(momentum=0.9),
                dict(y_train_size=18, momentum=0.5, eps=0.1)]),
    dict(name='lr_zipped', kind='lr', data=dict(y_shape=(4, 2)),
         kwargs=dict(trace_axes=()), calls=[dict(), dict(momentum=0.9)]),
    # gradient_descent_mse_ensemble
    dict(name='ensemble_basic', kind='ensemble', net=_FC,
         data=dict(y_shape=(6, 2)), kwargs=dict(), calls=_ENSEMBLE_CALLS),
    dict(name='ensemble_reg_lr', kind='ensemble', net=_FC,
         data=dict(y_shape=(6, 2)),
         kwargs=dict(learning_rate=0.5, diag_reg=1e-2),
         calls=_ENSEMBLE_CALLS),
    dict(name='ensemble_two_trace_axes', kind='ensemble', net=_FC,
         data=dict(y_shape=(5, 2, 3)),
         kwargs=dict(trace_axes=(-2, -1), diag_reg=0.1,
                     diag_reg_absolute_scale=True),
         calls=_ENSEMBLE_CALLS),
    # gradient_descent (ODE)
    dict(name='ode_mse', kind='ode', loss='mse', data=dict(y_shape=(6, 3)),
         kwargs=dict(), calls=_ODE_CALLS),
    dict(name='ode_mse_trace_middle', kind='ode', loss='mse',
         data=dict(y_shape=(4, 3, 2)), kwargs=dict(trace_axes=(1,)),
         calls=_ODE_CALLS),
    dict(name='ode_xent', kind='ode', loss='xent',
         data=dict(y_shape=(6, 3), y='onehot'),
         kwargs=dict(learning_rate=2.), calls=_ODE_CALLS),
    dict(name='ode_xent_momentum', kind='ode', loss='xent',
         data=dict(y_shape=(6, 3), y='onehot'),
         kwargs=dict(learning_rate=0.5, momentum=0.9),
         calls=_ODE_CALLS + [
             dict(t=_T_INC, fx_train_or_state_0='@fx_train_0',
                  fx_test_0='@fx_test_0', k_test_train='@ntk_td',
                  as_state=True)]),
]
