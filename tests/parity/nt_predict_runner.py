"""Runs the `predict` parity cases with neural-tangents 0.6.5 (reference env).

Usage: python nt_predict_runner.py INPUTS_NPZ OUTPUT_NPZ

The cases are those of `predict_cases.py` (next to this file); inputs are read
from INPUTS_NPZ (as written by `predict_cases.all_inputs`) so that both
libraries see identical arrays. Results are written as `<case>/<key>`, a
failure as `<case>/error`.
"""
import collections
import pathlib
import runpy
import sys
import traceback

import jax
jax.config.update('jax_enable_x64', True)
import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top
import scipy.linalg  # pylint: disable=g-import-not-at-top
from neural_tangents import predict  # pylint: disable=g-import-not-at-top
from neural_tangents import stax  # pylint: disable=g-import-not-at-top

CASES_FILE = pathlib.Path(__file__).with_name('predict_cases.py')


def _patch_eigvalsh():
  """neural-tangents' `max_learning_rate` calls `scipy.linalg.eigvalsh` with
  `eigvals=(lo, hi)`, removed in SciPy 1.14; map it to `subset_by_index`."""
  eigvalsh = scipy.linalg.eigvalsh

  def compat(a, *args, eigvals=None, **kwargs):
    if eigvals is not None:
      kwargs['subset_by_index'] = list(eigvals)
    return eigvalsh(a, *args, **kwargs)

  scipy.linalg.eigvalsh = compat


_patch_eigvalsh()


class Api:
  """The reference library as seen by `predict_cases.run_case`."""
  predict = predict
  stax = stax
  kernels = collections.namedtuple('Kernel', ['nngp', 'ntk'])
  losses = {
      'mse': lambda fx, y: 0.5 * jnp.mean((fx - y)**2),
      'xent': lambda fx, y: -jnp.mean(jax.nn.log_softmax(fx) * y),
  }


def main(inputs_file, out_file):
  cases_mod = runpy.run_path(str(CASES_FILE))
  flat = dict(np.load(inputs_file))
  out = {}
  for case in cases_mod['CASES']:
    name = case['name']
    try:
      inputs = cases_mod['case_inputs'](case, flat)
      res = cases_mod['run_case'](case, inputs, Api)
      out.update({f'{name}/{k}': v for k, v in res.items()})
    except Exception:  # pylint: disable=broad-except
      out[f'{name}/error'] = np.array(traceback.format_exc())
  np.savez(out_file, **out)


if __name__ == '__main__':
  main(*sys.argv[1:3])
