"""The custom-layer contract (docs/concepts.md, "Writing a layer").

A rule maps a batch-last `Kernel` to a `Kernel` and declares its needs and
capabilities once, in a frozen `RuleSpec` that `layer` reads.
"""
import dataclasses
import doctest
import pathlib

import numpy as np
import pytest

from nt_gp import stax
from nt_gp.stax import rule_spec

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_concepts_page_examples_run_as_shown():
  result = doctest.testfile(str(ROOT / 'docs' / 'concepts.md'),
                            module_relative=False, verbose=False,
                            optionflags=doctest.NORMALIZE_WHITESPACE)
  assert result.attempted >= 10
  assert result.failed == 0


def _spy(seen, packed=None):
  """A layer recording the layout of the kernels its rule receives."""
  @stax.layer
  def Spy():
    def rule(k, **kwargs):
      seen.append((k.batch_last, k.packed, tuple(k.nngp.shape)))
      return k
    if packed is not None:
      rule = rule_spec.capabilities(packed=packed)(rule)
    return stax.make_init_fn(lambda s: s), (lambda p, x, **kw: x), rule
  return Spy()


def test_rule_receives_batch_last_unpacked_kernels_by_default():
  x = np.random.RandomState(0).randn(8, 5, 2)
  seen = []
  _, _, kernel_fn = stax.serial(stax.Conv(1, (3,), padding='SAME'), _spy(seen))
  out = kernel_fn(x, None, 'nngp')
  assert seen == [(True, False, (5, 5, 8, 8))]
  assert tuple(out.shape) == (8, 8, 5, 5)


def test_a_rule_declaring_packed_support_gets_packed_kernels():
  x = np.random.RandomState(0).randn(8, 5, 2)
  seen = []
  _, _, kernel_fn = stax.serial(stax.Conv(1, (3,), padding='SAME'),
                                _spy(seen, packed=True))
  kernel_fn(x, None, 'nngp')
  # 8 inputs in 4 blocks of 2: 10 block pairs I <= J.
  assert seen == [(True, True, (5, 5, 10, 2, 2))]


def test_requirements_are_folded_from_the_record():
  @stax.layer
  def NeedsFull():
    @stax.requires(diagonal_spatial=stax.Diagonal(input=stax.Bool.NO))
    def rule(k, **kwargs):
      assert not k.diagonal_spatial
      return k
    return stax.make_init_fn(lambda s: s), (lambda p, x, **kw: x), rule

  x = np.random.RandomState(0).randn(2, 4, 3)
  net = stax.serial(stax.Conv(1, (2,)), NeedsFull(), stax.Flatten())
  k = net[2](x, None, get=None)
  assert tuple(k.nngp.shape) == (2, 2)
  spec = rule_spec.spec_of(net[2])
  assert spec.requirements['diagonal_spatial'].input == stax.Bool.NO
  assert spec.packed and spec.sets_shapes


def test_masking_declaration_is_recorded_and_used():
  @stax.layer
  @stax.supports_masking(remask_kernel=True)
  def Remasked():
    def rule(k, **kwargs):
      return k.scale(1., add=1.)      # covariances no longer zero when masked
    return stax.make_init_fn(lambda s: s), (lambda p, x, **kw: x), rule

  x = np.array([[1., 2.], [-1., -1.]])
  k = stax.serial(stax.Dense(1), Remasked())[2](x, None, 'nngp',
                                                mask_constant=-1.)
  np.testing.assert_allclose(k, [[1 * 2.5 + 1, 0.], [0., 0.]])


def test_the_record_is_frozen_and_kernel_fns_carry_it():
  _, _, kernel_fn = stax.Dense(1)
  spec = rule_spec.spec_of(kernel_fn)
  assert spec.packed and spec.remask_kernel is True
  with pytest.raises(dataclasses.FrozenInstanceError):
    spec.packed = False
  with pytest.raises(TypeError):
    spec.requirements['batch_axis'] = 1
  assert rule_spec.spec_of(lambda k: k) is None
