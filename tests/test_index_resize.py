"""`stax.Index` / `stax.Slice` / `stax.ImageResize`: finite-width functions,
shapes, consistency of `kernel_fn` with `apply_fn`, and input errors.

`ImageResize.apply_fn` and the resize matrices are compared with
`jax.image.resize` through tests/golden/image_resize_apply.npz (made by
tools/make_golden_resize_apply.py in the neural-tangents env).
"""
import pathlib
import runpy

import numpy as np
import pytest
import tensorflow as tf

import nt_gp
from nt_gp import stax
from nt_gp.stax import resize as resize_lib

ROOT = pathlib.Path(__file__).resolve().parents[1]
_TOOL = runpy.run_path(str(ROOT / 'tools' / 'make_golden_resize_apply.py'))
with np.load(ROOT / 'tests' / 'golden' / 'image_resize_apply.npz') as _f:
  GOLDEN = {k: _f[k] for k in _f.files}


# ----------------------------------------------------------------------------
# Index: finite-width function and shapes.
# ----------------------------------------------------------------------------
_INDICES = [
    stax.Slice[::2],
    stax.Slice[-3:],
    stax.Slice[:, 1:5, ::-2],
    stax.Slice[:, -1:0:-2, 4::-1],
    stax.Slice[:, 2, ...],
    stax.Slice[1:, :, -2],
    stax.Slice[..., -4:, :],
    stax.Slice[..., 0],
    stax.Slice[1, 2, 3],
    stax.Slice[:, 10:2:-3, 100:],
    stax.Slice[:, :, :, ::-1],
    stax.Slice[...],
    stax.Slice[-1],
    slice(None, None, -1),
    3,
]


def test_slice_builds_index_tuples():
  assert stax.Slice[::2, :4, :4] == (slice(None, None, 2), slice(None, 4),
                                     slice(None, 4))
  assert stax.Slice[1, ..., 2:8:3] == (1, Ellipsis, slice(2, 8, 3))
  assert stax.Slice[:] == slice(None)
  assert stax.Slice[0] == 0


@pytest.mark.parametrize('idx', _INDICES, ids=[repr(i) for i in _INDICES])
@pytest.mark.parametrize('dtype', [np.float32, np.float64])
def test_index_apply_equals_numpy(idx, dtype):
  x = np.random.RandomState(0).randn(4, 6, 5, 3).astype(dtype)
  init_fn, apply_fn, _ = stax.Index(idx)
  y = apply_fn((), x)
  expected = x[idx]
  assert y.dtype == dtype
  np.testing.assert_array_equal(np.asarray(y), expected)
  assert init_fn(0, x.shape)[0] == expected.shape


def test_index_shape_with_unknown_batch():
  init_fn, _, _ = stax.Index(stax.Slice[:, 1:, 0])
  assert init_fn(0, (-1, 6, 5, 3))[0] == (-1, 5, 3)
  init_fn, _, _ = stax.serial(stax.Conv(4, (3, 3)),
                              stax.Index(stax.Slice[..., 1:3, :]))
  assert init_fn(0, (-1, 6, 5, 3))[0] == (-1, 4, 2, 4)
  with pytest.raises(ValueError, match='unknown size'):
    stax.Index(stax.Slice[::2])[0](0, (-1, 6, 5, 3))


# ----------------------------------------------------------------------------
# Index: kernel_fn equals the input kernel of the indexed inputs.
# ----------------------------------------------------------------------------
_KERNEL_INDICES = [
    stax.Slice[::2],
    stax.Slice[-3:, 1:5, ::-2],
    stax.Slice[:, 2, ...],
    stax.Slice[1:, :, -2],
    stax.Slice[..., -4:, :],
    stax.Slice[3:0:-2, 4],
]


@pytest.mark.parametrize('idx', _KERNEL_INDICES,
                         ids=[repr(i) for i in _KERNEL_INDICES])
@pytest.mark.parametrize('diagonal_spatial', [False, True])
@pytest.mark.parametrize('diagonal_batch', [False, True])
def test_index_kernel_is_kernel_of_indexed_inputs(idx, diagonal_spatial,
                                                  diagonal_batch):
  rng = np.random.RandomState(1)
  x1, x2 = rng.randn(5, 6, 5, 3), rng.randn(4, 6, 5, 3)
  kwargs = dict(diagonal_spatial=diagonal_spatial,
                diagonal_batch=diagonal_batch)
  _, _, kernel_fn = stax.Index(idx)
  _, _, identity = stax.Identity()
  for a, b in ((x1, None), (x1, x2)):
    ours = kernel_fn(a, b, None, **kwargs)
    ref = identity(a[idx], None if b is None else b[idx], None, **kwargs)
    for g in ('nngp', 'cov1', 'cov2'):
      u, v = getattr(ours, g), getattr(ref, g)
      if v is None:
        assert u is None
        continue
      np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12,
                                 err_msg=g)
    assert ours.shape1 == ref.shape1 and ours.shape2 == ref.shape2
    assert (ours.batch_axis, ours.channel_axis) == (ref.batch_axis,
                                                    ref.channel_axis)


def test_index_channel_first_axes_shift():
  x = np.random.RandomState(2).randn(3, 2, 5, 6)
  _, _, kernel_fn = stax.Index(stax.Slice[:, :, 1, 2:], channel_axis=1)
  k = kernel_fn(x, None, None, diagonal_spatial=False)
  assert (k.batch_axis, k.channel_axis) == (0, 1)
  assert k.shape1 == (3, 2, 4)
  _, _, identity = stax.Identity()
  ref = identity(np.moveaxis(x[:, :, 1, 2:], 1, -1), None, 'nngp',
                 diagonal_spatial=False)
  np.testing.assert_allclose(np.asarray(k.nngp), np.asarray(ref), rtol=1e-12)


# ----------------------------------------------------------------------------
# Index: errors.
# ----------------------------------------------------------------------------
def test_index_rejects_channel_indexing_in_kernel():
  x = np.ones((2, 4, 4, 3))
  for idx in (stax.Slice[..., 1:], stax.Slice[..., 0], stax.Slice[..., ::-1]):
    _, apply_fn, kernel_fn = stax.Index(idx)
    apply_fn((), x)   # fine for the finite network
    with pytest.raises(ValueError, match='channel axis'):
      kernel_fn(x)
  # `:` written out in full is accepted.
  stax.Index(stax.Slice[..., 0:3:1])[2](x)


def test_index_rejects_integer_batch_index_in_kernel():
  x = np.ones((3, 4, 4, 2))
  _, apply_fn, kernel_fn = stax.Index(stax.Slice[1])
  assert tuple(apply_fn((), x).shape) == (4, 4, 2)
  with pytest.raises(ValueError, match='batch axis'):
    kernel_fn(x)


@pytest.mark.parametrize('idx, error, match', [
    ([0, 1], TypeError, 'list'),
    ((slice(None), [0, 1]), TypeError, 'fancy'),
    ((slice(None), np.array([0, 1])), TypeError, 'fancy'),
    ((slice(None), None), TypeError, 'newaxis'),
    ((slice(None), True), TypeError, 'fancy'),
    ((Ellipsis, 0, Ellipsis), ValueError, 'at most one'),
    ((slice(0, 2.5),), TypeError, 'non-integer'),
    ((slice(None, None, 0),), ValueError, 'step 0'),
    ('abc', TypeError, 'Slice'),
])
def test_index_bad_idx(idx, error, match):
  with pytest.raises(error, match=match):
    stax.Index(idx)


def test_index_out_of_bounds_and_too_many():
  with pytest.raises(ValueError, match='out of bounds'):
    stax.Index(stax.Slice[:, 6])[0](0, (2, 6, 5, 3))
  with pytest.raises(ValueError, match='Too many indices'):
    stax.Index(stax.Slice[:, 0, 0, 0, 0])[0](0, (2, 6, 5, 3))
  with pytest.raises(ValueError, match='out of bounds'):
    stax.Index(stax.Slice[:, -7])[1]((), np.ones((2, 6, 5, 3)))


# ----------------------------------------------------------------------------
# ImageResize: apply_fn and matrices against jax.image.resize.
# ----------------------------------------------------------------------------
@pytest.mark.parametrize('case', _TOOL['CASES'], ids=[c[0] for c in
                                                      _TOOL['CASES']])
def test_resize_apply_matches_jax(case):
  name, shape, dtype, target, method, antialias = case
  x = GOLDEN[f'{name}/x']
  np.testing.assert_array_equal(x, _TOOL['case_input'](name, shape, dtype))
  expected = GOLDEN[f'{name}/y']
  init_fn, apply_fn, _ = stax.ImageResize(target, method, antialias=antialias)
  y = np.asarray(apply_fn((), x))
  assert y.dtype == x.dtype
  assert y.shape == expected.shape == init_fn(0, x.shape)[0]
  if method == 'nearest':
    np.testing.assert_array_equal(y, expected)
  else:
    rtol, atol = (1e-12, 1e-13) if dtype == 'float64' else (2e-6, 2e-6)
    np.testing.assert_allclose(y, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize('method, antialias', _TOOL['MATRIX_METHODS'])
def test_resize_matrices_match_jax(method, antialias):
  for m, n in _TOOL['MATRIX_SIZES']:
    expected = GOLDEN[f'matrix/{method}/{int(antialias)}/{m}_{n}']
    r = resize_lib.resize_matrix(m, n, method, antialias)
    assert r.shape == (n, m)
    np.testing.assert_allclose(r, expected, rtol=1e-13, atol=1e-15,
                               err_msg=f'{m} -> {n}')


def test_nearest_indices_match_jax():
  top = _TOOL['NEAREST_MAX']
  for m in range(1, top + 1):
    ours = np.concatenate([resize_lib.nearest_indices(m, n)
                           for n in range(1, top + 1)])
    np.testing.assert_array_equal(ours, GOLDEN[f'nearest/{m}'],
                                  err_msg=f'm={m}')
  for m, n in _TOOL['NEAREST_PAIRS']:
    np.testing.assert_array_equal(resize_lib.nearest_indices(m, n),
                                  GOLDEN[f'nearest/{m}_{n}'],
                                  err_msg=f'{m} -> {n}')


def test_resize_apply_integer_inputs():
  x = np.arange(12).reshape(1, 6, 2)
  _, apply_fn, _ = stax.ImageResize((-1, 3, -1), 'nearest')
  y = apply_fn((), x)
  assert y.dtype == tf.int64
  np.testing.assert_array_equal(np.asarray(y), x[:, [1, 3, 5]])
  _, apply_fn, _ = stax.ImageResize((-1, 3, -1), 'linear')
  assert apply_fn((), x).dtype == tf.float32


# ----------------------------------------------------------------------------
# ImageResize: kernel_fn equals the input kernel of the resized inputs.
# ----------------------------------------------------------------------------
_KERNEL_RESIZES = [
    ((-1, 9, 7, -1), 'linear', True),
    ((-1, 4, 3, -1), 'linear', True),
    ((-1, 4, 3, -1), 'bilinear', False),
    ((-1, 10, 2, -1), 'nearest', True),
    ((3, -1, -1, -1), 'linear', True),
    ((7, 3, -1, -1), 'nearest', True),
    ((2, 6, 5, -1), 'linear', True),
]


_KERNEL_RESIZE_CASES = (
    [r + (None,) for r in _KERNEL_RESIZES] +
    # The whole kernel computation compiled by XLA.
    [_KERNEL_RESIZES[1] + (True,), _KERNEL_RESIZES[5] + (True,)])


@pytest.mark.parametrize('target, method, antialias, jit',
                         _KERNEL_RESIZE_CASES)
def test_resize_kernel_is_kernel_of_resized_inputs(target, method, antialias,
                                                   jit):
  rng = np.random.RandomState(3)
  x1, x2 = rng.randn(4, 6, 5, 3), rng.randn(5, 6, 5, 3)
  _, apply_fn, kernel_fn = stax.ImageResize(target, method,
                                            antialias=antialias)
  _, _, identity = stax.Identity()
  with nt_gp.compilation(jit_compile=jit):
    for a, b in ((x1, None), (x1, x2)):
      ours = kernel_fn(a, b, None, diagonal_spatial=False)
      ra = np.asarray(apply_fn((), a))
      rb = None if b is None else np.asarray(apply_fn((), b))
      ref = identity(ra, rb, None, diagonal_spatial=False,
                     diagonal_batch=ours.diagonal_batch)
      for g in ('nngp', 'cov1', 'cov2'):
        u, v = getattr(ours, g), getattr(ref, g)
        if v is None:
          assert u is None
          continue
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-10,
                                   atol=1e-12, err_msg=g)
      assert ours.shape1 == ra.shape
  assert ours.diagonal_batch == (target[0] == -1)


def test_resize_kernel_float32():
  x = np.random.RandomState(4).randn(3, 6, 5, 2).astype(np.float32)
  _, _, kernel_fn = stax.serial(
      stax.Conv(4, (3, 3), padding='SAME'), stax.Relu(),
      stax.ImageResize((-1, 8, 3, -1), 'linear'), stax.Conv(4, (2, 2)),
      stax.GlobalAvgPool())
  k32 = kernel_fn(x, None, ('nngp', 'ntk'))
  k64 = kernel_fn(x.astype(np.float64), None, ('nngp', 'ntk'))
  for a, b in zip(k32, k64):
    assert a.dtype == tf.float32 and b.dtype == tf.float64
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4)


# ----------------------------------------------------------------------------
# ImageResize: errors.
# ----------------------------------------------------------------------------
def test_resize_kernel_unsupported_method():
  x = np.ones((2, 6, 2))
  for method in ('cubic', 'lanczos3', 'lanczos5'):
    _, apply_fn, kernel_fn = stax.ImageResize((-1, 9, -1), method)
    assert tuple(apply_fn((), x).shape) == (2, 9, 2)
    with pytest.raises(ValueError, match='only "linear" and "nearest"'):
      kernel_fn(x)


def test_resize_kernel_rejects_channel_resize():
  x = np.ones((2, 6, 3))
  _, apply_fn, kernel_fn = stax.ImageResize((-1, -1, 5), 'linear')
  assert tuple(apply_fn((), x).shape) == (2, 6, 5)
  with pytest.raises(ValueError, match='channel axis'):
    kernel_fn(x)


def test_resize_requirements():
  x = np.ones((2, 6, 2))
  _, _, kernel_fn = stax.ImageResize((-1, 9, -1), 'linear')
  with pytest.raises(ValueError, match='diagonal_spatial'):
    kernel_fn(x, diagonal_spatial=True)
  _, _, kernel_fn = stax.ImageResize((3, -1, -1), 'linear')
  with pytest.raises(ValueError, match='diagonal_batch'):
    kernel_fn(x, diagonal_batch=True)
  # Spatial-only and batch-only resizes leave the other layout free.
  stax.ImageResize((3, -1, -1), 'linear')[2](x, diagonal_spatial=True)
  stax.ImageResize((-1, 9, -1), 'linear')[2](x, diagonal_batch=True)


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(shape=(-1, 0, -1), method='linear'), ValueError, 'positive or -1'),
    (dict(shape=(-1, -2, -1), method='linear'), ValueError, 'positive or -1'),
    (dict(shape=(-1, 'a', -1), method='linear'), TypeError, 'sequence of ints'),
    (dict(shape=(-1, 4, -1), method='bogus'), ValueError, 'Unknown resize'),
    (dict(shape=(-1, 4, -1), method=3), TypeError, 'must be a string'),
    (dict(shape=(-1, 4, -1), method='linear', antialias='yes'), TypeError,
     'antialias'),
    (dict(shape=(-1, 4, -1), method='linear', batch_axis=3), ValueError,
     'out of range'),
    (dict(shape=(-1, 4, -1), method='linear', batch_axis=2), ValueError,
     'must differ'),
])
def test_resize_bad_arguments(kwargs, error, match):
  with pytest.raises(error, match=match):
    stax.ImageResize(**kwargs)


def test_resize_rank_mismatch():
  init_fn, apply_fn, kernel_fn = stax.ImageResize((-1, 4, -1), 'linear')
  with pytest.raises(ValueError, match='rank 3'):
    init_fn(0, (2, 6, 6, 3))
  with pytest.raises(ValueError, match='rank 3'):
    apply_fn((), np.ones((2, 6, 6, 3)))
  with pytest.raises(ValueError, match='rank|channel_axis'):
    kernel_fn(np.ones((2, 6, 6, 3)))


def test_resize_method_aliases_and_enum_names():
  class Method:   # like jax.image.ResizeMethod.LINEAR
    name = 'LINEAR'
  x = np.random.RandomState(5).randn(1, 6, 2)
  outs = [np.asarray(stax.ImageResize((-1, 4, -1), m)[1]((), x))
          for m in ('linear', 'bilinear', 'trilinear', 'triangle', 'LINEAR',
                    Method())]
  for o in outs[1:]:
    np.testing.assert_array_equal(o, outs[0])
