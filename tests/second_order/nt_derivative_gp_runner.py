"""Derivative-GP posterior with a neural-tangents NNGP (runs in its venv).

Usage: python nt_derivative_gp_runner.py INPUTS_NPZ OUTPUT_NPZ

INPUTS_NPZ holds x, y, dy (training inputs, values, slopes), t (test
inputs) and theta = (W_std, b_std, noise). The network is Dense -> Erf ->
Dense -> Erf -> Dense (docs/tutorials/derivative_gp.py); the joint covariance
of values and slopes is built from `k`, `jax.grad(k, 1)` and
`jax.jacfwd(jax.grad(k, 1), 0)`. Writes `<values|slopes>/mean`, `/var`.
"""
import sys

import jax
jax.config.update('jax_enable_x64', True)
import numpy as np  # pylint: disable=g-import-not-at-top
from jax import numpy as jnp  # pylint: disable=g-import-not-at-top
from neural_tangents import stax  # pylint: disable=g-import-not-at-top


def main(inputs_file, out_file):
  f = np.load(inputs_file)
  x, y, dy, t = f['x'], f['y'], f['dy'], f['t']
  w_std, b_std, noise = f['theta']
  kernel_fn = stax.serial(stax.Dense(1, w_std, b_std), stax.Erf(),
                          stax.Dense(1, w_std, b_std), stax.Erf(),
                          stax.Dense(1, w_std, b_std))[2]

  def k(a, b):
    return kernel_fn(jnp.reshape(a, (1, 1)), jnp.reshape(b, (1, 1)),
                     'nngp')[0, 0]

  def grid(fn, a, b):
    return np.asarray(jax.vmap(lambda ai: jax.vmap(lambda bj: fn(ai, bj))(b))(a))

  dk = jax.grad(k, 1)
  d2k = jax.jacfwd(dk, 0)
  k_xx, dk_xx, d2k_xx = grid(k, x, x), grid(dk, x, x), grid(d2k, x, x)
  k_tx, dk_tx = grid(k, t, x), grid(dk, t, x)
  k_tt = np.asarray(jax.vmap(lambda ti: k(ti, ti))(t))
  out = {}
  for tag, cov, cross, targets in (
      ('values', k_xx, k_tx, y),
      ('slopes', np.block([[k_xx, dk_xx], [dk_xx.T, d2k_xx]]),
       np.concatenate([k_tx, dk_tx], 1), np.concatenate([y, dy]))):
    a = cov + noise * np.eye(len(cov))
    out[f'{tag}/mean'] = cross @ np.linalg.solve(a, targets)
    out[f'{tag}/var'] = k_tt - np.einsum('ij,ji->i', cross,
                                         np.linalg.solve(a, cross.T))
  np.savez(out_file, **out)


if __name__ == '__main__':
  main(*sys.argv[1:3])
