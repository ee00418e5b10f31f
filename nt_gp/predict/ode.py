"""`gradient_descent`: function-space gradient descent for any loss (ODE)."""
import numpy as np
import tensorflow as tf

from nt_gp.predict import _dopri
from nt_gp.predict import _utils
from nt_gp.predict.records import ODEState

__all__ = ['gradient_descent']

_FIELDS = ('fx_train', 'fx_test', 'qx_train', 'qx_test')


def gradient_descent(loss, k_train_train, y_train, learning_rate=1.,
                     momentum=None, trace_axes=(-1,), *, rtol=1.4e-8,
                     atol=1.4e-8, max_num_steps=100_000):
  r"""Outputs during continuous-time (momentum) gradient descent on any loss.

  Integrates the function-space ODE `df/dt = -K grad_f loss(f, y_train)` (train
  outputs; test outputs use `k_test_train`) with an adaptive Dormand-Prince
  5(4) solver, compiled with `tf.function` (its Butcher tableau is exact in
  float64, unlike `tfp.math.ode.DormandPrince`'s; see `_dopri.py`). Times are in units of
  `learning_rate`. With `momentum`, the ODE of gradient descent with (heavy
  ball, not Nesterov) momentum is solved: `f'' = -K grad_f loss +
  (momentum - 1) / sqrt(learning_rate) * f'`, in units of
  `sqrt(learning_rate)` (`absolute_time = learning_rate**0.5 * t`).

  Args:
    loss: `loss(fx_train, y_train) -> scalar`, written with TensorFlow ops
      (differentiated with `tf.GradientTape`). It should treat batch and
      output axes symmetrically.
    k_train_train: train-train NTK, shape of `y_train` without `trace_axes`
      zipped with itself (e.g. `(N_train, N_train)`); float32 or float64.
    y_train: targets, e.g. `(N_train, K)`.
    learning_rate: non-negative learning rate.
    momentum: None for plain gradient descent, else the momentum (e.g. 0.9).
    trace_axes: axes of `y_train` that the kernel lacks.
    rtol, atol: relative and absolute tolerances of the ODE solver (the
      defaults are those of `jax.experimental.ode.odeint`, used by
      neural-tangents).
    max_num_steps: the solver's step budget per call; exceeding it raises a
      `ValueError` (e.g. for stiff problems or huge times).

  Returns:
    `predict_fn(t=None, fx_train_or_state_0=0., fx_test_0=None,
    k_test_train=None)`:

    * `t`: a scalar or array of non-negative, strictly increasing times
      (outputs get leading axes `t.shape`). `t=None` (infinite time) is not
      supported by the ODE solver and raises a `ValueError`.
    * `fx_train_or_state_0`: train outputs at `t=0` (broadcastable to
      `y_train.shape`; None: start from 0 and return only test outputs), or a
      full `ODEState` (then an `ODEState` is returned).
    * `fx_test_0`: test outputs at `t=0`, or None.
    * `k_test_train`: test-train NTK, e.g. `(N_test, N_train)`.

    It returns `fx_train_t`, `fx_test_t`, `(fx_train_t, fx_test_t)` or an
    `ODEState`, with the kernel's dtype.

  Example:
    >>> import numpy as np
    >>> import tensorflow as tf
    >>> from nt_gp import predict
    >>> k = np.array([[1., 0.], [0., 2.]])
    >>> y = np.array([[1.], [1.]])
    >>> mse = lambda fx, y: 0.5 * tf.reduce_mean((fx - y)**2)
    >>> predict_fn = predict.gradient_descent(mse, k, y)
    >>> np.round(predict_fn(2., 0.).numpy(), 4)  # 1 - exp(-k t / 2)
    array([[0.6321],
           [0.8647]])
  """
  if not callable(loss):
    raise TypeError(f'`loss` must be callable, got {type(loss).__name__}.')
  k = _utils.to_tensor(k_train_train, 'k_train_train')
  dtype = k.dtype
  y = _utils.check_finite(_utils.to_tensor(y_train, 'y_train', dtype),
                          'y_train')
  layout = _utils.Layout.of(y.shape, trace_axes)
  train_shape = layout.nontrace_shape
  _utils.check_kernel(k, 'k_train_train', train_shape, train_shape)
  k2d = _utils.make_2d(k)
  _utils.check_symmetric(k2d, 'k_train_train')
  _utils.check_scalar(learning_rate, 'learning_rate')
  if momentum is not None:
    _utils.check_scalar(momentum, 'momentum')
  for name, tol in (('rtol', rtol), ('atol', atol)):
    _utils.check_scalar(tol, name)
    if not isinstance(tol, (int, float, np.number)):
      raise TypeError(f'`{name}` must be a Python number, got {tol!r}.')
  if (isinstance(max_num_steps, bool) or
      not isinstance(max_num_steps, (int, np.integer)) or max_num_steps <= 0):
    raise ValueError(f'`max_num_steps` must be a positive integer, got '
                     f'{max_num_steps!r}.')
  y_shape = tuple(y.shape)

  lr = _utils.scalar_as(learning_rate, dtype)
  if momentum is not None:
    lr = tf.sqrt(lr)
    friction = (_utils.scalar_as(momentum, dtype) - 1.) / lr

  def grad_loss(fx_train):
    with tf.GradientTape() as tape:
      tape.watch(fx_train)
      value = loss(fx_train, y)
    value = tf.convert_to_tensor(value)
    if value.shape.rank != 0:
      raise ValueError(f'`loss` must return a scalar, got shape '
                       f'{tuple(value.shape)}.')
    grad = tape.gradient(value, fx_train)
    if grad is None:
      raise ValueError('`loss(fx_train, y_train)` does not depend on '
                       '`fx_train` (its gradient is None).')
    return grad

  def apply_kernel(k_2d, grad, rows):
    """`-(K ⊗ I) grad` with outputs of non-trace shape `rows`."""
    out = -tf.matmul(k_2d, layout.flatten(grad))
    return layout.unflatten(out, (), rows)

  def derivative(k_td2d, test_shape, names):
    def ode_fn(unused_t, values):
      state = dict(zip(names, values))
      grad = grad_loss(state['fx_train'])
      d = {'fx_train': apply_kernel(k2d, grad, train_shape)}
      if 'fx_test' in state:
        d['fx_test'] = apply_kernel(k_td2d, grad, test_shape)
      if momentum is not None:
        d = {'fx_train': state['qx_train'],
             'qx_train': d['fx_train'] + friction * state['qx_train'],
             **({'fx_test': state['qx_test'],
                 'qx_test': d['fx_test'] + friction * state['qx_test']}
                if 'fx_test' in state else {})}
      return [d[name] for name in names]
    return ode_fn

  def solve(times, state_0, k_td2d):
    names = sorted(state_0)
    test_shape = (None if k_td2d is None else
                  _nontrace(layout, state_0['fx_test'].shape))
    values, ok = _dopri.odeint(
        derivative(k_td2d, test_shape, names), [state_0[n] for n in names],
        times, rtol, atol, max_num_steps)
    return dict(zip(names, values)), ok

  compiled = tf.function(solve, autograph=False, reduce_retracing=True)

  def predict_fn(t=None, fx_train_or_state_0=0., fx_test_0=None,
                 k_test_train=None):
    """Train [and test] outputs at time[s] `t`; see `gradient_descent`."""
    is_state = isinstance(fx_train_or_state_0, ODEState)
    if is_state:
      if fx_test_0 is not None:
        raise ValueError('`fx_test_0` is part of the `ODEState` and must be '
                         'None.')
      state = fx_train_or_state_0
      fx_train_0, fx_test_0 = state.fx_train, state.fx_test
      qx_train_0, qx_test_0 = state.qx_train, state.qx_test
    else:
      fx_train_0, qx_train_0, qx_test_0 = fx_train_or_state_0, None, None
    _utils.check_predict_inputs(fx_train_0, fx_test_0, k_test_train)
    if t is None:
      raise ValueError('`t=None` (infinite time) cannot be reached by the ODE '
                       'solver; pass finite times (or use '
                       '`gradient_descent_mse` for MSE).')
    times = _utils.as_times(t, dtype)
    t_shape = tuple(times.shape)
    times = tf.reshape(times, (-1,))
    values = _utils.static_value(times)
    if values is not None and (np.any(values < 0) or
                               np.any(np.diff(values) <= 0)):
      raise ValueError(f'`t` must be non-negative and strictly increasing, '
                       f'got {np.reshape(values, t_shape)}.')
    times = times * lr

    state_0 = {}
    state_0['fx_train'] = (
        tf.zeros(y_shape, dtype) if fx_train_0 is None else
        _utils.broadcast_exact(
            _utils.to_tensor(fx_train_0, 'fx_train_0', dtype), y_shape,
            'fx_train_0'))
    k_td2d = None
    if fx_test_0 is not None:
      k_td = _utils.to_tensor(k_test_train, 'k_test_train', dtype)
      _utils.check_kernel(k_td, 'k_test_train', cols=train_shape)
      test_shape = layout.targets_shape(_utils.kernel_sides(k_td)[0])
      k_td2d = _utils.make_2d(k_td)
      state_0['fx_test'] = _utils.broadcast_exact(
          _utils.to_tensor(fx_test_0, 'fx_test_0', dtype), test_shape,
          'fx_test_0')
    if momentum is None:
      if qx_train_0 is not None or qx_test_0 is not None:
        raise ValueError('Got momentum state variables (`qx_train`, '
                         '`qx_test`) while `momentum is None`.')
    else:
      state_0['qx_train'] = (
          tf.zeros(y_shape, dtype) if qx_train_0 is None else
          _utils.broadcast_exact(
              _utils.to_tensor(qx_train_0, 'qx_train', dtype), y_shape,
              'qx_train'))
      if fx_test_0 is not None:
        state_0['qx_test'] = (
            tf.zeros(test_shape, dtype) if qx_test_0 is None else
            _utils.broadcast_exact(
                _utils.to_tensor(qx_test_0, 'qx_test', dtype), test_shape,
                'qx_test'))

    states, ok = compiled(times, state_0, k_td2d)
    message = (f'The ODE solver did not reach the last time within '
               f'{max_num_steps} steps (or its step size underflowed); the '
               f'problem may be stiff or diverging: shorten `t`, loosen '
               f'`rtol`/`atol` or raise `max_num_steps`.')
    ok_value = _utils.static_value(ok)
    if ok_value is None:
      with tf.control_dependencies([tf.debugging.Assert(ok, [message])]):
        states = {k: tf.identity(v) for k, v in states.items()}
    elif not ok_value:
      raise ValueError(message)
    states = {name: tf.reshape(v, t_shape + tuple(v.shape[1:]))
              for name, v in states.items()}

    if is_state:
      return ODEState(**{f: states.get(f) for f in _FIELDS})
    fx_train_t, fx_test_t = states['fx_train'], states.get('fx_test')
    if fx_train_0 is not None and fx_test_0 is None:
      return fx_train_t
    if fx_test_0 is not None and fx_train_0 is None:
      return fx_test_t
    return fx_train_t, fx_test_t

  return predict_fn


def _nontrace(layout, shape):
  """Non-trace part of a target shape."""
  shape = tuple(int(d) for d in shape)
  pos = {a % len(shape) for a in layout.trace_axes}
  return tuple(d for i, d in enumerate(shape) if i not in pos)
