"""Second derivatives of neural-tangents 0.6.5 kernels (runs in its venv).

Usage: python nt_runner.py CASES_FILE INPUTS_NPZ OUTPUT_NPZ

For every case of CASES_FILE (see cases.py) and `get` in ('nngp', 'ntk'),
writes `<case>/<get>/<quantity>` computed with `jax.hessian` and
`jax.jacfwd(jax.grad(...))` in float64; failures as `<case>/error`.
"""
import runpy
import sys
import traceback

import jax
jax.config.update('jax_enable_x64', True)
import numpy as np  # pylint: disable=g-import-not-at-top
from jax import numpy as jnp  # pylint: disable=g-import-not-at-top
from neural_tangents import stax  # pylint: disable=g-import-not-at-top


def quantities(net_expr, get, x1, x2, U, U_sym, w, theta):
  def kernel_fn(th):
    env = {'stax': stax, 'np': np, 'ops': jnp, 'W': th[0], 'b': th[1]}
    return eval(net_expr, env)[2]  # pylint: disable=eval-used

  def full(a, c, th):
    return jnp.sum(U * kernel_fn(th)(a, c, get))

  def full_sym(th):
    return jnp.sum(U_sym * kernel_fn(th)(x1, None, get))

  def pairs(a, c, th):
    kf = kernel_fn(th)
    return sum(w[i] * kf(a[i:i + 1], c[i:i + 1], get)[0, 0]
               for i in range(a.shape[0]))

  def diag(a, th):
    kf = kernel_fn(th)
    return sum(w[i] * kf(a[i:i + 1], None, get)[0, 0]
               for i in range(a.shape[0]))

  return {
      'full/mixed': jax.jacfwd(jax.grad(full, 0), 1)(x1, x2, theta),
      'full/hess_cross': jax.hessian(full, 2)(x1, x2, theta),
      'full/hess_sym': jax.hessian(full_sym)(theta),
      'pairs/mixed': jax.jacfwd(jax.grad(pairs, 0), 1)(x1, x2, theta),
      'pairs/hess': jax.hessian(pairs, 2)(x1, x2, theta),
      'diag/hess': jax.hessian(diag, 1)(x1, theta),
      'diag/hess_x': jax.hessian(diag, 0)(x1, theta),
  }


def main(cases_file, inputs_file, out_file):
  module = runpy.run_path(cases_file)
  inputs = np.load(inputs_file)
  theta = jnp.asarray(module['THETA'], jnp.float64)
  out = {}
  for case in module['SUITE']:
    name = case['name']
    try:
      arrays = {k: jnp.asarray(inputs[f'{name}/{k}'])
                for k in ('x1', 'x2', 'U', 'U_sym', 'w')}
      for get in module['GETS']:
        for q, v in quantities(case['net'], get, theta=theta,
                               **arrays).items():
          out[f'{name}/{get}/{q}'] = np.asarray(v)
    except Exception:  # pylint: disable=broad-except
      out[f'{name}/error'] = np.array(traceback.format_exc())
  np.savez(out_file, **out)


if __name__ == '__main__':
  main(*sys.argv[1:4])
