"""The quantities of cases.py computed with nt_gp (float64).

The full path is the stax `kernel_fn` (what `NeuralKernel.matrix` and GPflow's
`K` compute); the paired and diagonal paths are the TFP adapter's `apply`
(vectorised 1x1 kernels, GPflow's `K_diag` too). Second derivatives are
nested `tf.GradientTape`s, run eagerly or (`mode`) in a `tf.function`, with
or without `jit_compile=True`.
"""
import numpy as np
import tensorflow as tf

from nt_gp import stax
from nt_gp.tfp import NeuralKernel


def architecture(net_expr):
  """The case's network as a function of `(W_std, b_std)`."""
  def arch(W_std, b_std):
    env = {'stax': stax, 'np': np, 'ops': tf.math, 'W': W_std, 'b': b_std}
    return eval(net_expr, env)  # pylint: disable=eval-used
  return arch


def _hessians(values, theta, outer):
  """d²v/dθ² for each scalar `v` of `values` (tapes recorded by `outer`)."""
  return [tf.stack([tf.stack([outer.gradient(g, t) for t in theta])
                    for g in grads]) for grads in values]


def _rows(grad):
  """The entries of `grad`, sliced (under the recording tapes) for `_mixed`."""
  flat = tf.reshape(grad, [-1])
  return grad.shape, [flat[i] for i in range(flat.shape[0])]


def _mixed(rows, c, outer):
  """d grad / dc, shape grad.shape + c.shape, from `_rows(grad)`: one reverse
  pass per entry of `grad` (cheaper here than `tape.jacobian`'s
  vectorisation of the whole backward graph)."""
  shape, rows = rows
  out = tf.stack([outer.gradient(r, c) for r in rows])
  return tf.reshape(out, shape.concatenate(c.shape))


def _variables(theta_values):
  return [tf.Variable(v, dtype=tf.float64) for v in theta_values]


def _run(compute, mode):
  if mode == 'function':
    compute = tf.function(compute, autograph=False)
  elif mode == 'xla':
    compute = tf.function(compute, autograph=False, jit_compile=True)
  return {k: v.numpy() for k, v in compute().items()}


def full_quantities(case, gets, arrays, theta_values, sym=True, mixed=True,
                    mode='eager'):
  """`{'<get>/full/<quantity>': array}` from one stax `kernel_fn` call."""
  theta = _variables(theta_values)
  kernel_fn = architecture(case['net'])(*theta)[2]
  x1, x2 = tf.constant(arrays['x1']), tf.constant(arrays['x2'])
  U, U_sym = tf.constant(arrays['U']), tf.constant(arrays['U_sym'])

  def compute():
    out = {}
    with tf.GradientTape(persistent=True) as outer:
      outer.watch(x2)
      with tf.GradientTape(persistent=True) as inner:
        inner.watch(x1)
        ks = kernel_fn(x1, x2, gets)
        values = [tf.reduce_sum(U * k) for k in ks]
        if sym:
          ks_sym = kernel_fn(x1, None, gets)
          values_sym = [tf.reduce_sum(U_sym * k) for k in ks_sym]
      dx = [_rows(inner.gradient(v, x1)) for v in values]
      dtheta = [inner.gradient(v, theta) for v in values]
      if sym:
        dtheta_sym = [inner.gradient(v, theta) for v in values_sym]
    for i, get in enumerate(gets):
      if mixed:
        out[f'{get}/full/mixed'] = _mixed(dx[i], x2, outer)
    for get, h in zip(gets, _hessians(dtheta, theta, outer)):
      out[f'{get}/full/hess_cross'] = h
    if sym:
      for get, h in zip(gets, _hessians(dtheta_sym, theta, outer)):
        out[f'{get}/full/hess_sym'] = h
    del inner, outer
    return out
  return _run(compute, mode)


def paired_quantities(case, get, arrays, theta_values, diagonal=True,
                      mixed=True, mode='eager'):
  """`{'<get>/pairs/<q>', '<get>/diag/<q>': array}` by `NeuralKernel.apply`."""
  theta = _variables(theta_values)
  kernel = NeuralKernel(architecture(case['net']), get=get,
                        feature_ndims=len(case['shape']) - 1, W_std=theta[0],
                        b_std=theta[1])
  x1, x2 = tf.constant(arrays['x1']), tf.constant(arrays['x2'])
  w = tf.constant(arrays['w'])

  def compute():
    out = {}
    with tf.GradientTape(persistent=True) as outer:
      outer.watch([x1, x2])
      with tf.GradientTape(persistent=True) as inner:
        inner.watch(x1)
        pairs = tf.reduce_sum(w * kernel.apply(x1, x2))
        if diagonal:
          diag = tf.reduce_sum(w * kernel.apply(x1, x1))
      dx = _rows(inner.gradient(pairs, x1))
      dtheta = inner.gradient(pairs, theta)
      if diagonal:
        dx_diag = _rows(inner.gradient(diag, x1))
        dtheta_diag = inner.gradient(diag, theta)
    if mixed:
      out[f'{get}/pairs/mixed'] = _mixed(dx, x2, outer)
    out[f'{get}/pairs/hess'] = _hessians([dtheta], theta, outer)[0]
    if diagonal:
      out[f'{get}/diag/hess'] = _hessians([dtheta_diag], theta, outer)[0]
      if mixed:
        out[f'{get}/diag/hess_x'] = _mixed(dx_diag, x1, outer)
    del inner, outer
    return out
  return _run(compute, mode)
