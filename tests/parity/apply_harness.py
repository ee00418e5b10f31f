"""Parity of finite-width `apply_fn`s with neural-tangents 0.6.5.

Both libraries evaluate the same network with the *same parameters*: nt_gp's
`init_fn` draws them, their leaves (depth-first, `None`s skipped, as in JAX
pytrees) are handed to the reference, which puts them into its own parameter
tree (shapes checked) and runs its `apply_fn`.

A suite file may define `APPLY_SUITE`, a list of dicts:
  name, net, shape, inputs (as in `harness`), and optionally
  apply_kwargs: keyword arguments of `apply_fn` (e.g. `mask_constant`),
  pattern: expression over `rng`, `shape` giving `pattern=` of `apply_fn`.

Outputs are stored as `<name>/out` (and `<name>/mask` when `apply_fn` returns
a `MaskedArray`); golden files `tests/golden/<suite>_apply.npz` also keep the
inputs and parameters, so the golden check does not depend on nt_gp's random
number generation.
"""
import pathlib
import runpy
import zlib

import numpy as np

from tests.parity import harness
from tests.parity import tolerances

RUNNER = pathlib.Path(__file__).with_name('nt_apply_runner.py')
RTOL = tolerances.APPLY


def load_apply_suite(suite_file):
  return runpy.run_path(str(suite_file)).get('APPLY_SUITE', [])


def flatten(tree):
  """Leaves of nested tuples/lists, depth first, skipping None."""
  if tree is None:
    return []
  if isinstance(tree, (tuple, list)):
    return [leaf for sub in tree for leaf in flatten(sub)]
  return [tree]


def unflatten(template, leaves):
  """Inverse of `flatten` given a tree with the same structure."""
  leaves = list(leaves)

  def build(t):
    if t is None:
      return None
    if isinstance(t, (tuple, list)):
      return type(t)(build(s) for s in t)
    return leaves.pop(0)
  out = build(template)
  assert not leaves, 'too many leaves'
  return out


def _net(case):
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return eval(case['net'], {'stax': stax, 'np': np, 'ops': tf.math})  # pylint: disable=eval-used


def case_data(case):
  """`{x, pattern?, param_i...}` of a case: inputs and nt_gp's parameters."""
  x, _ = harness.make_inputs(case)
  init_fn = _net(case)[0]
  _, params = init_fn(zlib.crc32(case['name'].encode()) % 1000, x.shape)
  data = {'x': x}
  for i, leaf in enumerate(flatten(params)):
    data[f'param{i}'] = np.asarray(leaf, np.float64)
  if case.get('pattern') is not None:
    rng = np.random.RandomState(
        (zlib.crc32(case['name'].encode()) + 1) % (2**31))
    data['pattern'] = np.asarray(eval(case['pattern'], {  # pylint: disable=eval-used
        'np': np, 'rng': rng, 'shape': tuple(case['shape'])}))
  return data


def suite_data(suite):
  out = {}
  for case in suite:
    for k, v in case_data(case).items():
      out[f'{case["name"]}/{k}'] = v
  return out


def case_inputs(case, data):
  """`(x, params_leaves, kwargs)` from flat `<name>/...` arrays."""
  name = case['name']
  x = data[f'{name}/x']
  leaves = []
  while f'{name}/param{len(leaves)}' in data:
    leaves.append(data[f'{name}/param{len(leaves)}'])
  kwargs = dict(case.get('apply_kwargs', {}))
  if f'{name}/pattern' in data:
    kwargs['pattern'] = data[f'{name}/pattern']
  return x, leaves, kwargs


def compute_ours(case, data, dtype=np.float64):
  """nt_gp `apply_fn` outputs `{'out': ..., ['mask': ...]}`."""
  from nt_gp.stax import masking  # pylint: disable=g-import-not-at-top
  init_fn, apply_fn, _ = _net(case)
  x, leaves, kwargs = case_inputs(case, data)
  _, template = init_fn(0, x.shape)
  params = unflatten(template, [leaf.astype(dtype) for leaf in leaves])
  out = apply_fn(params, x.astype(dtype), **kwargs)
  if isinstance(out, masking.MaskedArray):
    return {'out': np.asarray(out.masked_value),
            'mask': np.asarray(out.mask)}
  return {'out': np.asarray(out)}


def run_reference(suite_file, data=None, python=None, timeout=1800):
  """Runs the suite's `APPLY_SUITE` under neural-tangents."""
  python = python or harness.reference_python()
  if python is None:
    raise RuntimeError('neural-tangents reference env not found.')
  suite = load_apply_suite(suite_file)
  data = suite_data(suite) if data is None else data
  return harness.run_reference_script(python, RUNNER, data, timeout,
                                      args=(suite_file,))


def load_golden(suite_name):
  with np.load(harness.GOLDEN / f'{suite_name}_apply.npz') as f:
    return {k: f[k] for k in f.files}


def assert_matches(case, ours, reference, rtol=RTOL):
  name = case['name']
  if f'{name}/error' in reference:
    raise AssertionError(f'reference failed for {name}:\n'
                         f'{reference[f"{name}/error"]}')
  assert ('mask' in ours) == (f'{name}/mask' in reference), (
      name, 'one library returned a MaskedArray, the other did not')
  if 'mask' in ours:
    ref_mask = reference[f'{name}/mask']
    ours_mask = np.broadcast_to(ours['mask'], np.broadcast_shapes(
        ours['mask'].shape, ref_mask.shape))
    np.testing.assert_array_equal(ours_mask, np.broadcast_to(
        ref_mask, ours_mask.shape), err_msg=f'{name}: output masks differ')
  val, ref = ours['out'], reference[f'{name}/out']
  assert val.shape == ref.shape, (name, val.shape, ref.shape)
  rel = harness.relative_error(val, ref)
  assert rel <= rtol, f'{name} apply: max relative error {rel:.3g} > {rtol:g}'
