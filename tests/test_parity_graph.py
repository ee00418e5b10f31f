"""`Aggregate` (dense and sparse batched graphs) and `DotGeneral` kernels and
`apply_fn`s equal neural-tangents 0.6.5 (float64, at the suite's tolerance in
tests/parity/tolerances.py)."""
import numpy as np
import pytest

from nt_gp import stax
from tests.parity.suite_tests import ParitySuite

SUITE = ParitySuite('graph')
_CASES = SUITE.by_name
GOLDEN = SUITE.golden

test_golden, test_live = SUITE.kernel_tests()
test_apply_golden, test_apply_live = SUITE.apply_tests()


def _edges_of_counts(counts):
  """Edge lists `(N, E, 2, 2)` (padded with -1 heads) of `(N, H, W, H, W)`
  integer edge counts."""
  per_example = []
  for a in counts:
    idx = np.argwhere(a > 0)
    reps = a[tuple(idx.T)].astype(int)
    idx = np.repeat(idx, reps, axis=0)              # (E, 4): h, w, h', w'
    per_example.append(np.stack([idx[:, :2], idx[:, 2:]], -1))
  n_edges = max(len(e) for e in per_example) + 2
  out = -np.ones((len(counts), n_edges, 2, 2), np.int64)
  for i, e in enumerate(per_example):
    out[i, :len(e)] = e
    out[i, len(e):, :, 0] = 0                       # tails of padding edges
  return out


def test_sparse_equals_dense_reference():
  """SPARSE on edge lists gives neural-tangents' DENSE kernel of the same
  graphs (after a convolution, where neural-tangents' own SPARSE kernel
  mixes up the axes of its convolution outputs)."""
  case = _CASES['dense_2d_counts_conv_gap']
  x1, x2, (p1, p2) = SUITE.inputs(case)
  assert np.any(p1 > 1), 'repeated edges should be covered'
  e1, e2 = _edges_of_counts(p1), _edges_of_counts(p2)
  net = eval(case['net'].replace(  # pylint: disable=eval-used
      'stax.Aggregate(aggregate_axis=(1, 2))',
      "stax.Aggregate(aggregate_axis=(1, 2), implementation='SPARSE')"),
             {'stax': stax, 'np': np})
  for tag, args, pattern in (('sym', (x1, None), (e1, e1)),
                             ('cross', (x1, x2), (e1, e2))):
    out = net[2](*args, ('nngp', 'ntk'), pattern=pattern)
    for g, v in zip(('nngp', 'ntk'), out):
      np.testing.assert_allclose(v.numpy(), GOLDEN[f'{case["name"]}/{tag}/{g}'],
                                 rtol=1e-9, atol=0)


@pytest.mark.parametrize('name', ['sparse_1d_padded_gap',
                                  'dot_lhs_mix_rows_relu_gap'])
def test_float32_follows_input_dtype(name):
  SUITE.check_float32(name)


def test_no_pattern_is_identity():
  x = np.random.RandomState(0).randn(3, 4, 2)
  _, apply_fn, kernel_fn = stax.Aggregate()
  np.testing.assert_array_equal(apply_fn((), x).numpy(), x)
  _, _, identity = stax.Identity()
  np.testing.assert_allclose(kernel_fn(x, None, 'nngp'),
                             identity(x, None, 'nngp', diagonal_spatial=False))


def test_bad_patterns_raise_clear_errors():
  x = np.random.RandomState(0).randn(3, 4, 2)
  _, apply_fn, kernel_fn = stax.Aggregate()
  with pytest.raises(ValueError, match=r'shape \(3, 4, 4\)'):
    apply_fn((), x, pattern=np.ones((3, 4, 5)))
  with pytest.raises(TypeError, match='pattern1, pattern2'):
    kernel_fn(x, None, 'nngp', pattern=np.ones((3, 4, 4)))
  with pytest.raises(ValueError, match='pattern1'):
    kernel_fn(x, None, 'nngp', pattern=(None, np.ones((3, 4, 4))))
  _, apply_sparse, kernel_sparse = stax.Aggregate(implementation='SPARSE')
  with pytest.raises(TypeError, match='integer'):
    apply_sparse((), x, pattern=np.ones((3, 5, 2)))
  with pytest.raises(ValueError, match='size 2'):
    apply_sparse((), x, pattern=np.ones((3, 5, 3), np.int64))
  with pytest.raises(ValueError, match='batch=3'):
    kernel_sparse(x, None, 'nngp', pattern=(np.ones((2, 5, 2), np.int64),) * 2)
  with pytest.raises(ValueError, match='DENSE'):
    stax.Aggregate(implementation='CSR')
  with pytest.raises(ValueError, match='aggregate_axis'):
    stax.Aggregate(aggregate_axis=0)[0](0, (3, 4, 2))


def test_dot_general_bad_arguments():
  with pytest.raises(ValueError, match='at most one'):
    stax.DotGeneral(lhs=1., rhs=2.)
  with pytest.raises(ValueError, match='non-finite'):
    stax.DotGeneral(rhs=np.array([1., np.nan]))
  with pytest.raises(ValueError, match='dimension_numbers'):
    stax.DotGeneral(rhs=np.ones(3), dimension_numbers=((1,), ()))[0](
        0, (2, 3))
  init_fn, _, kernel_fn = stax.DotGeneral(
      rhs=np.ones((4, 5)), dimension_numbers=(((2,), (0,)), ((), ())))
  with pytest.raises(ValueError, match='differ'):
    init_fn(0, (2, 3, 3))
  x = np.random.RandomState(0).randn(2, 3, 4)
  with pytest.raises(ValueError, match='channel axis'):
    kernel_fn(x, None, 'nngp')


def test_dot_general_apply_matches_numpy():
  rng = np.random.RandomState(0)
  x, c = rng.randn(2, 3, 4), rng.randn(5, 3)
  _, apply_fn, _ = stax.DotGeneral(lhs=c, dimension_numbers=(((1,), (1,)),
                                                             ((), ())))
  out = apply_fn((), x.astype(np.float32))
  assert out.dtype == np.float32
  np.testing.assert_allclose(out.numpy(), np.einsum('ij,njc->inc', c, x),
                             rtol=1e-5)
