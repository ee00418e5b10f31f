"""Empirical NNGP/NTK with neural-tangents 0.6.5 (run in its own venv).

Usage: python nt_empirical_runner.py SUITE_FILE INPUTS_NPZ OUTPUT_NPZ

INPUTS_NPZ holds, per case, `<name>/x1`, `<name>/x2` and the parameter leaves
`<name>/param/<i>` (pytree leaf order of the network's `init_fn`, `None`
leaves skipped). For every case and option the kernels are written as
`<name>/<option>/<sym|cross>/<nngp|ntk>` (neural-tangents' Jacobian
contraction, `vmap_axes=None`); failures as `<name>/error`.
"""
import runpy
import sys
import traceback

import jax
jax.config.update('jax_enable_x64', True)
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import neural_tangents as nt  # pylint: disable=g-import-not-at-top
from neural_tangents import stax  # pylint: disable=g-import-not-at-top


def _params(init_fn, x1, inputs, name):
  _, ref = init_fn(jax.random.PRNGKey(0), x1.shape)
  leaves, treedef = jax.tree_util.tree_flatten(ref)
  ours = []
  i = 0
  while f'{name}/param/{i}' in inputs:
    ours.append(inputs[f'{name}/param/{i}'])
    i += 1
  if len(ours) != len(leaves):
    raise ValueError(f'{name}: {len(ours)} parameters given, neural-tangents '
                     f'has {len(leaves)}')
  for a, b in zip(ours, leaves):
    if a.shape != b.shape:
      raise ValueError(f'{name}: parameter shapes differ: {a.shape} vs '
                       f'{b.shape}')
  return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in ours])


def main(suite_file, inputs_file, out_file):
  mod = runpy.run_path(suite_file)
  suite, options = mod['SUITE'], mod['OPTIONS']
  inputs = dict(np.load(inputs_file))
  out = {}
  for case in suite:
    name = case['name']
    try:
      init_fn, apply_fn, _ = eval(case['net'], {'stax': stax, 'np': np})  # pylint: disable=eval-used
      x1, x2 = inputs[f'{name}/x1'], inputs[f'{name}/x2']
      params = _params(init_fn, x1, inputs, name)
      for opt, tags in case['options']:
        trace_axes, diagonal_axes = options[opt]
        fns = {
            'ntk': nt.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes,
                                       implementation=1),
            'nngp': nt.empirical_nngp_fn(apply_fn, trace_axes, diagonal_axes),
        }
        for tag in tags:
          xb = None if tag == 'sym' else x2
          for g, fn in fns.items():
            out[f'{name}/{opt}/{tag}/{g}'] = np.asarray(fn(x1, xb, params))
    except Exception:  # pylint: disable=broad-except
      out[f'{name}/error'] = np.array(traceback.format_exc())
  np.savez(out_file, **out)


if __name__ == '__main__':
  main(*sys.argv[1:4])
