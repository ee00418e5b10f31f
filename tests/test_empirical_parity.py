"""Empirical NNGP/NTK of `nt_gp.stax` networks equal neural-tangents 0.6.5's
`empirical_nngp_fn`/`empirical_ntk_fn` for the same weights (float64,
relative error <= 1e-12, `tolerances.EMPIRICAL`), for every NTK
implementation, with and without `vmap_axes`, for traced, full and diagonal
output axes.

The reference values come from tests/golden/empirical.npz (made by
tools/make_golden_empirical.py) and, when the neural-tangents env exists,
from a live subprocess run.
"""
import functools

import numpy as np
import pytest

from tests.parity import empirical_harness as eh
from tests.parity import live

SUITE, OPTIONS = eh.load_suite()
IMPLEMENTATIONS = (1, 2, 3)


@functools.lru_cache(maxsize=None)
def _ours(case_index):
  """nt_gp's kernels for a case: {'<opt>/<tag>/<get>/<impl>': array}."""
  import nt_gp  # pylint: disable=g-import-not-at-top
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  case = SUITE[case_index]
  _, apply_fn, _ = eval(case['net'], {'stax': stax, 'np': np})  # pylint: disable=eval-used
  init_fn = eval(case['net'], {'stax': stax, 'np': np})[0]  # pylint: disable=eval-used
  _, template = init_fn(0, tuple(case['shape']))
  leaves = iter(eh.make_params(case))
  params = tf.nest.map_structure(
      lambda l: None if l is None else tf.constant(next(leaves)), template)
  x1, x2 = eh.make_inputs(case)
  out = {}
  for j, (opt, tags) in enumerate(case['options']):
    trace_axes, diagonal_axes = OPTIONS[opt]
    nngp_fn = nt_gp.empirical_nngp_fn(apply_fn, trace_axes, diagonal_axes)
    for tag in tags:
      xb = None if tag == 'sym' else x2
      out[f'{opt}/{tag}/nngp/-'] = np.asarray(nngp_fn(x1, xb, params))
    for impl in IMPLEMENTATIONS:
      # Alternate `vmap_axes` so each implementation runs both ways.
      vmap_axes = 0 if (case_index + j + impl) % 2 else None
      ntk_fn = nt_gp.empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes,
                                      vmap_axes, impl)
      for tag in tags:
        xb = None if tag == 'sym' else x2
        out[f'{opt}/{tag}/ntk/{impl}'] = np.asarray(ntk_fn(x1, xb, params))
  return out


def _compare(case_index, reference):
  case = SUITE[case_index]
  name = case['name']
  assert f'{name}/error' not in reference, reference.get(f'{name}/error')
  ours = _ours(case_index)
  for key, val in ours.items():
    opt, tag, g, impl = key.split('/')
    ref = reference[f'{name}/{opt}/{tag}/{g}']
    eh.assert_close(val, ref, f'{name} {key}')


_IDS = [c['name'] for c in SUITE]


@pytest.mark.parametrize('case_index', range(len(SUITE)), ids=_IDS)
def test_golden(case_index):
  golden = eh.load_golden()
  case = SUITE[case_index]
  x1, x2 = eh.make_inputs(case)
  np.testing.assert_array_equal(golden[f'{case["name"]}/x1'], x1)
  np.testing.assert_array_equal(golden[f'{case["name"]}/x2'], x2)
  for i, p in enumerate(eh.make_params(case)):
    np.testing.assert_array_equal(golden[f'{case["name"]}/param/{i}'], p)
  _compare(case_index, golden)


@functools.lru_cache(maxsize=None)
def _live():
  return eh.run_reference()[0]


@pytest.mark.parametrize('case_index', range(len(SUITE)), ids=_IDS)
def test_live(case_index):
  live.require_reference()
  _compare(case_index, _live())


def test_comparison_detects_a_wrong_kernel():
  """The tolerance is meaningful: a 1e-5 relative change fails."""
  golden = eh.load_golden()
  name = SUITE[0]['name']
  ref = golden[f'{name}/traced/sym/ntk']
  with pytest.raises(AssertionError):
    eh.assert_close(ref * (1 + 1e-5), ref, 'perturbed')
