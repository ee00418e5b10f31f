"""Computes reference kernels with neural-tangents 0.6.5 (run in its own venv).

Usage: python nt_runner.py SUITE_FILE INPUTS_NPZ OUTPUT_NPZ

SUITE_FILE defines `SUITE`, a list of cases (see tests/parity/harness.py); each
case's `net` is a Python expression over `stax` (and `np`), evaluated here with
neural-tangents' `stax` (`ops` is jax.numpy). For every case the kernels for `x2=None` and for `x2`
given are written as `<name>/sym/<quantity>` and `<name>/cross/<quantity>`;
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
  suite = runpy.run_path(suite_file)['SUITE']
  inputs = np.load(inputs_file)
  out = {}
  for case in suite:
    name = case['name']
    try:
      net = eval(case['net'], {'stax': stax, 'np': np, 'ops': jnp})  # pylint: disable=eval-used
      kernel_fn = net[2]
      get = tuple(case.get('get', ('nngp', 'ntk')))
      x1 = inputs[f'{name}/x1']
      x2 = inputs[f'{name}/x2']
      for tag, args in (('sym', (x1, None)), ('cross', (x1, x2))):
        kwargs = dict(case.get('kernel_kwargs', {}))
        if f'{name}/pattern1' in inputs:
          p1 = inputs[f'{name}/pattern1']
          kwargs['pattern'] = (p1, p1 if tag == 'sym' else
                               inputs[f'{name}/pattern2'])
        res = kernel_fn(*args, get, **kwargs)
        for g, v in zip(get, res):
          out[f'{name}/{tag}/{g}'] = np.asarray(v)
    except Exception:  # pylint: disable=broad-except
      out[f'{name}/error'] = np.array(traceback.format_exc())
  np.savez(out_file, **out)


if __name__ == '__main__':
  main(*sys.argv[1:4])
