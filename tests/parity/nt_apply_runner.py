"""Runs neural-tangents 0.6.5 `apply_fn`s with given parameters (own venv).

Usage: python nt_apply_runner.py SUITE_FILE INPUTS_NPZ OUTPUT_NPZ

For every case of the suite's `APPLY_SUITE` (see apply_harness.py) the
parameters `<name>/param<i>` replace the leaves of neural-tangents' own
parameter tree (same order and shapes), and `apply_fn(params, x, **kwargs)`
is written as `<name>/out` (plus `<name>/mask` for a `MaskedArray`);
failures as `<name>/error`.
"""
import runpy
import sys
import traceback

import jax
jax.config.update('jax_enable_x64', True)
import numpy as np  # pylint: disable=g-import-not-at-top
from jax import numpy as jnp  # pylint: disable=g-import-not-at-top
from neural_tangents import stax  # pylint: disable=g-import-not-at-top


def main(suite_file, inputs_file, out_file):
  suite = runpy.run_path(suite_file).get('APPLY_SUITE', [])
  inputs = np.load(inputs_file)
  out = {}
  for case in suite:
    name = case['name']
    try:
      init_fn, apply_fn, _ = eval(case['net'], {'stax': stax, 'np': np,  # pylint: disable=eval-used
                                               'ops': jnp})
      x = inputs[f'{name}/x']
      _, template = init_fn(jax.random.PRNGKey(0), x.shape)
      leaves, treedef = jax.tree_util.tree_flatten(template)
      given = [inputs[f'{name}/param{i}'] for i in range(len(leaves))]
      if f'{name}/param{len(leaves)}' in inputs.files:
        raise ValueError('more parameters given than the network has')
      for a, b in zip(leaves, given):
        if tuple(a.shape) != tuple(b.shape):
          raise ValueError(f'parameter shapes differ: {a.shape} vs {b.shape}')
      params = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(g)
                                                      for g in given])
      kwargs = dict(case.get('apply_kwargs', {}))
      if f'{name}/pattern' in inputs.files:
        kwargs['pattern'] = jnp.asarray(inputs[f'{name}/pattern'])
      res = apply_fn(params, jnp.asarray(x), **kwargs)
      if isinstance(res, stax.MaskedArray):
        out[f'{name}/out'] = np.asarray(res.masked_value)
        out[f'{name}/mask'] = np.asarray(res.mask)
      else:
        out[f'{name}/out'] = np.asarray(res)
    except Exception:  # pylint: disable=broad-except
      out[f'{name}/error'] = np.array(traceback.format_exc())
  np.savez(out_file, **out)


if __name__ == '__main__':
  main(*sys.argv[1:4])
