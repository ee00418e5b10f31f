"""Comparison of cases where neural-tangents 0.6.5 returns NaN on the diagonal.

neural-tangents evaluates `RectifiedMonomial`'s kernel as
(π - θ)/sin θ · sin θ, which is NaN at θ = 0: for `x2=None` the entries of an
input with itself (``nngp[i, i, ...]``, ``ntk[i, i, ...]``) are NaN (and with
full layouts `cov1` too, so such cases use ``diagonal_spatial=True``). Cases
marked ``reference_nan_diagonal=True`` are compared with:

* every other reference entry finite and matched as usual;
* the NNGP diagonal checked against the reference's own `cov1` (for
  `x2=None`, ``nngp[i, i, ...] = cov1[i, ...]``; the case must get 'cov1');
* the NTK diagonal left out here (tests/test_nonlinearity_values.py checks it
  against numerical integration).
"""
import numpy as np

__all__ = ['without_reference_nan_diagonal']


def _batch_diagonal(shape):
  """Boolean mask of entries `[i, i, ...]` of an `(N, N, ...)` array."""
  eye = np.eye(shape[0], shape[1], dtype=bool)
  return np.broadcast_to(eye.reshape(eye.shape + (1,) * (len(shape) - 2)),
                         shape)


def without_reference_nan_diagonal(case, ours, reference):
  """Returns `(ours, reference)` prepared for `harness.assert_matches`."""
  if not case.get('reference_nan_diagonal'):
    return ours, reference
  name = case['name']
  ours, reference = dict(ours), dict(reference)
  for key in [k for k in reference if k.startswith(f'{name}/')]:
    value = reference[key]
    if value.dtype.kind != 'f' or key.endswith(('/x1', '/x2')):
      continue
    bad = ~np.isfinite(value)
    if key not in (f'{name}/sym/nngp', f'{name}/sym/ntk'):
      assert not bad.any(), f'{key}: unexpected non-finite reference values'
      continue
    diag = _batch_diagonal(value.shape)
    assert not (bad & ~diag).any(), f'{key}: NaN off the batch diagonal'
    value = value.copy()
    idx = np.arange(value.shape[0])
    if key.endswith('/nngp'):
      value[idx, idx] = reference[f'{name}/sym/cov1']
    else:
      value[diag] = 0.
      mine = ours['sym/ntk'].copy()
      mine[diag] = 0.
      ours['sym/ntk'] = mine
    reference[key] = value
  return ours, reference
