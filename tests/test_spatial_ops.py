"""Shifted-sum ops of conv/pool covariance maps against numpy brute force."""
import itertools

import numpy as np
import pytest

from nt_gp.ops import spatial


def _brute(x, axes, windows, strides, pads, circular):
  mode = 'wrap' if circular else 'constant'
  width = [(0, 0)] * x.ndim
  for ax, pd in zip(axes, pads):
    for a in ax:
      width[a] = pd
  xp = np.pad(x, width, mode=mode)
  counts = [(x.shape[ax[0]] + sum(pd) - k) // st + 1
            for ax, k, st, pd in zip(axes, windows, strides, pads)]
  out_shape = list(x.shape)
  for ax, n in zip(axes, counts):
    for a in ax:
      out_shape[a] = n
  out = np.zeros(out_shape)
  for offsets in itertools.product(*[range(k) for k in windows]):
    index = [slice(None)] * x.ndim
    for ax, d, n, st in zip(axes, offsets, counts, strides):
      for a in ax:
        index[a] = slice(d, d + (n - 1) * st + 1, st)
    out += xp[tuple(index)]
  return out


CASES = [
    # (shape, axes, windows, strides, pads, circular)
    ((5, 6, 3), [(0,), (1,)], (3, 3), (1, 1), [(1, 1), (1, 1)], False),
    ((7, 7, 2, 2), [(0, 1)], (3,), (2,), [(1, 1)], False),
    ((4, 4, 5, 5, 2), [(0, 1), (2, 3)], (2, 3), (2, 1), [(0, 0), (2, 0)],
     False),
    ((6, 5, 2), [(0,), (1,)], (4, 2), (3, 2), [(1, 2), (0, 1)], False),
    ((3, 4, 2), [(0,), (1,)], (5, 2), (1, 1), [(3, 3), (0, 0)], False),
    ((5, 6, 3), [(0,), (1,)], (3, 3), (1, 2), [(1, 1), (1, 1)], True),
    ((2, 3), [(0,)], (3,), (1,), [(3, 0)], False),   # an all-padding offset
]


@pytest.mark.parametrize('case', CASES)
def test_joint_shift_sum_matches_brute_force(case):
  shape, axes, windows, strides, pads, circular = case
  x = np.random.RandomState(0).randn(*shape)
  got = spatial.joint_shift_sum(x, axes, windows, strides, pads, circular)
  np.testing.assert_allclose(got.numpy(),
                             _brute(x, axes, windows, strides, pads, circular),
                             rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('case', [c for c in CASES if len(c[1]) == 1])
def test_paired_shift_sum_matches_brute_force(case):
  shape, axes, windows, strides, pads, circular = case
  x = np.random.RandomState(1).randn(*shape)
  got = spatial.paired_shift_sum(x, axes[0], windows[0], strides[0], pads[0],
                                 circular)
  np.testing.assert_allclose(got.numpy(),
                             _brute(x, axes, windows, strides, pads, circular),
                             rtol=1e-12, atol=1e-12)
