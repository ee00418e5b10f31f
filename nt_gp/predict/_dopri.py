"""Adaptive Dormand-Prince 5(4) integration of an ODE in TensorFlow.

`tfp.math.ode.DormandPrince` casts its Butcher tableau from Python floats via
float32 (`tf.cast(0.2, tf.float64) - 0.2 == 3e-9`), so its float64 solutions
stop improving at ~1e-8 relative error whatever `rtol`/`atol` ask for. This
solver keeps the coefficients exact in the state's dtype and steps exactly onto
each requested output time (no dense-output interpolation). Error control
follows the usual mixed tolerance `atol + rtol * max(|y0|, |y1|)` with an RMS
norm over all state entries, as in `jax.experimental.ode.odeint`.
"""
import numpy as np
import tensorflow as tf

# Dormand & Prince (1980): nodes, stage weights, 5th-order and 4th-order
# solution weights.
_NODES = (0., 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1., 1.)
_STAGES = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0., 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_SOL5 = (35 / 384, 0., 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.)
_SOL4 = (5179 / 57600, 0., 7571 / 16695, 393 / 640, -92097 / 339200,
         187 / 2100, 1 / 40)
_ERR = tuple(a - b for a, b in zip(_SOL5, _SOL4))

_SAFETY, _MIN_FACTOR, _MAX_FACTOR = 0.9, 0.2, 10.


def _c(x, dtype):
  return tf.constant(np.float64(x), dtype)


def _combine(weights, ks, dtype):
  """`sum_j w_j k_j` over state lists, skipping zero weights."""
  terms = [(w, k) for w, k in zip(weights, ks) if w != 0.]
  return [tf.add_n([_c(w, dtype) * k[i] for w, k in terms])
          for i in range(len(ks[0]))]


def _rms(parts):
  total = tf.add_n([tf.reduce_sum(tf.square(p)) for p in parts])
  count = sum(int(np.prod(p.shape)) for p in parts)
  return tf.sqrt(total / max(count, 1))


def odeint(fn, y0, times, rtol, atol, max_num_steps):
  """Solves `dy/dt = fn(t, y)` from `t = 0`; returns states at `times`.

  Args:
    fn: `fn(t, y) -> dy/dt`, `y` a list of tensors.
    y0: list of tensors (the state at `t = 0`), one floating dtype.
    times: `(T,)` non-negative, strictly increasing output times.
    rtol, atol: tolerances (Python floats).
    max_num_steps: maximal number of (accepted or rejected) steps.

  Returns:
    `(states, ok)`: a list of `(T, *y.shape)` tensors and a boolean scalar,
    False if the solver stopped before the last time (step budget exhausted
    or step size underflow).
  """
  dtype = y0[0].dtype
  rtol, atol = _c(rtol, dtype), _c(atol, dtype)
  n_times = tf.shape(times)[0]
  zero = tf.zeros((), dtype)

  def scale(y_a, y_b):
    return [atol + rtol * tf.maximum(tf.abs(a), tf.abs(b))
            for a, b in zip(y_a, y_b)]

  f0 = fn(zero, y0)
  # Initial step (Hairer, Norsett & Wanner, Solving ODEs I, II.4).
  sc = scale(y0, y0)
  d0 = _rms([y / s for y, s in zip(y0, sc)])
  d1 = _rms([f / s for f, s in zip(f0, sc)])
  tiny = _c(1e-5, dtype)
  h0 = tf.where((d0 < tiny) | (d1 < tiny), _c(1e-6, dtype),
                _c(0.01, dtype) * d0 / tf.maximum(d1, tiny))
  y1 = [y + h0 * f for y, f in zip(y0, f0)]
  f1 = fn(h0, y1)
  d2 = _rms([(a - b) / s for a, b, s in zip(f1, f0, sc)]) / h0
  dmax = tf.maximum(d1, d2)
  h1 = tf.where(dmax <= _c(1e-15, dtype),
                tf.maximum(_c(1e-6, dtype), h0 * _c(1e-3, dtype)),
                tf.pow(_c(0.01, dtype) / tf.maximum(dmax, _c(1e-300, dtype)),
                       _c(1 / 5, dtype)))
  dt0 = tf.minimum(_c(100., dtype) * h0, h1)

  def step(t, y, f, h):
    ks = [f]
    for node, weights in zip(_NODES[1:], _STAGES[1:]):
      inc = _combine(weights, ks, dtype)
      ks.append(fn(t + _c(node, dtype) * h, [a + h * b for a, b in
                                             zip(y, inc)]))
    # The last stage is evaluated at the 5th-order solution (FSAL).
    y_new = [a + h * b for a, b in zip(y, _combine(_SOL5[:6], ks[:6], dtype))]
    err = [h * e for e in _combine(_ERR, ks, dtype)]
    ratio = _rms([e / s for e, s in zip(err, scale(y, y_new))])
    return y_new, ks[-1], ratio

  outs = [tf.TensorArray(dtype, size=n_times, element_shape=y.shape)
          for y in y0]

  def cond(i, t, y, f, dt, n, ok, outs):
    del t, y, f, dt, outs
    return (i < n_times) & (n < max_num_steps) & ok

  def body(i, t, y, f, dt, n, ok, outs):
    target = times[tf.minimum(i, n_times - 1)]

    def record():
      return (i + 1, t, y, f, dt, n, ok,
              [o.write(i, v) for o, v in zip(outs, y)])

    def advance():
      remaining = target - t
      clipped = dt >= remaining
      h = tf.minimum(dt, remaining)
      y_new, f_new, ratio = step(t, y, f, h)
      ratio = tf.where(tf.math.is_finite(ratio), ratio,
                       tf.constant(np.inf, dtype))
      accept = ratio <= 1.
      factor = tf.where(
          ratio > 0., _c(_SAFETY, dtype) * tf.pow(
              tf.maximum(ratio, _c(1e-300, dtype)), _c(-1 / 5, dtype)),
          _c(_MAX_FACTOR, dtype))
      factor = tf.clip_by_value(factor, _c(_MIN_FACTOR, dtype),
                                _c(_MAX_FACTOR, dtype))
      dt_new = h * factor
      dt_new = tf.where(accept & clipped, tf.maximum(dt, dt_new), dt_new)
      t_new = tf.where(accept, tf.where(clipped, target, t + h), t)
      y_out = [tf.where(accept, a, b) for a, b in zip(y_new, y)]
      f_out = [tf.where(accept, a, b) for a, b in zip(f_new, f)]
      ok_new = dt_new > _c(np.finfo(dtype.as_numpy_dtype).eps, dtype) * (
          tf.abs(t) + 1.)
      return i, t_new, y_out, f_out, dt_new, n + 1, ok_new, outs

    return tf.cond(t >= target, record, advance)

  i, _, _, _, _, _, _, outs = tf.while_loop(
      cond, body,
      (tf.constant(0), zero, list(y0), list(f0), dt0, tf.constant(0),
       tf.constant(True), outs))
  return [o.stack() for o in outs], i >= n_times
