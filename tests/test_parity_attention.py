"""`GlobalSelfAttention` kernels and `apply_fn`s equal neural-tangents 0.6.5
(float64, at the suite's tolerance in tests/parity/tolerances.py), with and
without masked inputs."""
import numpy as np
import pytest

from nt_gp import stax
from tests.parity import harness
from tests.parity.suite_tests import ParitySuite

SUITE = ParitySuite('attention')
_CASES = SUITE.by_name
GOLDEN = SUITE.golden

test_golden, test_live = SUITE.kernel_tests()
test_apply_golden, test_apply_live = SUITE.apply_tests()


def test_masked_cases_have_masked_positions():
  """Masked cases would not test masking if no (or every) position were."""
  for case in SUITE.cases + SUITE.apply_cases:
    kwargs = dict(case.get('kernel_kwargs', {}), **case.get('apply_kwargs',
                                                             {}))
    if 'mask_constant' in kwargs:
      c = kwargs['mask_constant']
      for x in harness.make_inputs(case):
        masked = np.all(np.isnan(x) if np.isnan(c) else x == c, axis=-1)
        assert 0 < masked.mean() < 1, case['name']
        assert not np.all(masked, axis=tuple(range(1, masked.ndim))).any(), (
            case['name'], 'an example is fully masked')


def test_kernel_depends_on_mechanism_and_embeddings():
  """The suite's variants give different kernels (the checks can fail)."""
  base = GOLDEN['softmax_1d_gap/cross/nngp']
  x1, x2, _ = SUITE.inputs(_CASES['softmax_1d_gap'])
  for kw in (dict(attention_mechanism='RELU'), dict(pos_emb_type='SUM'),
             dict(pos_emb_type='CONCAT', val_pos_emb=True)):
    _, _, kernel_fn = stax.serial(
        stax.Dense(4, 1.2, 0.1), stax.GlobalSelfAttention(4, 3, 3, 2,
                                                          b_std=0.2, **kw),
        stax.GlobalAvgPool(), stax.Dense(1, 1.1, 0.1))
    other = kernel_fn(x1, x2, 'nngp').numpy()
    assert np.max(np.abs(other - base)) > 1e-3 * np.max(np.abs(base)), kw


@pytest.mark.parametrize('name', ['masked_softmax_1d_gap',
                                  'identity_sqrt_concat_val_1d_gap'])
def test_float32_follows_input_dtype(name):
  SUITE.check_float32(name)


def test_apply_fn_float32_and_masked_array():
  init_fn, apply_fn, _ = stax.serial(
      stax.Dense(4), stax.GlobalSelfAttention(4, 3, 2, 2, pos_emb_type='SUM'))
  x = np.random.RandomState(0).randn(2, 5, 3).astype(np.float32)
  x[0, 3:] = -1.
  _, params = init_fn(0, x.shape)
  out = apply_fn(params, x)
  assert out.dtype == np.float32 and out.shape == (2, 5, 4)
  masked = apply_fn(params, x, mask_constant=-1.)
  assert isinstance(masked, stax.MaskedArray)
  assert masked.masked_value.dtype == np.float32
  np.testing.assert_array_equal(
      np.broadcast_to(masked.mask, (2, 5, 1))[..., 0],
      [[False] * 3 + [True] * 2, [False] * 5])
  # Unmasked rows attend only to unmasked positions: changing the masked
  # inputs leaves them unchanged.
  y = x.copy()
  y[0, 3:] = 5.
  again = apply_fn(params, stax.MaskedArray(y, x == -1.))
  np.testing.assert_allclose(again.masked_value.numpy()[0, :3],
                             masked.masked_value.numpy()[0, :3], rtol=1e-6)


@pytest.mark.parametrize('kwargs, error, match', [
    (dict(attention_mechanism='TANH'), ValueError, 'attention_mechanism'),
    (dict(pos_emb_type='ADD'), ValueError, 'pos_emb_type'),
    (dict(n_heads=0), ValueError, 'n_heads'),
    (dict(W_key_std=-1.), ValueError, 'W_key_std'),
    (dict(pos_emb_decay_fn=3.), TypeError, 'pos_emb_decay_fn'),
    (dict(n_chan_pos_emb=0), ValueError, 'n_chan_pos_emb'),
])
def test_bad_arguments(kwargs, error, match):
  args = dict(n_chan_out=4, n_chan_key=3, n_chan_val=3, n_heads=2)
  args.update(kwargs)
  with pytest.raises(error, match=match):
    stax.GlobalSelfAttention(**args)


def test_bad_uses_raise_clear_errors():
  x = np.random.RandomState(0).randn(2, 4, 3)
  _, _, kernel_fn = stax.serial(stax.Dense(3), stax.GlobalSelfAttention(
      4, 3, 3, 2, pos_emb_type='SUM', n_chan_pos_emb=2))
  with pytest.raises(ValueError, match='n_chan_pos_emb'):
    kernel_fn(x, None, 'nngp')
  _, _, kernel_fn = stax.serial(stax.Dense(3), stax.GlobalSelfAttention(
      4, 3, 3, 2, linear_scaling=False))
  with pytest.raises(NotImplementedError, match='IDENTITY'):
    kernel_fn(x, None, 'nngp')
  _, _, kernel_fn = stax.serial(stax.Dense(3), stax.GlobalSelfAttention(
      4, 3, 3, 2), stax.Flatten())
  with pytest.raises(ValueError, match='diagonal_spatial'):
    kernel_fn(x, None, 'nngp', diagonal_spatial=True)
