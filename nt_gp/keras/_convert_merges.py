"""Converters of Keras merges: `Add`/`Subtract`/`Average` (and the keras.ops
add and subtract), `Multiply` and `Concatenate`.

Their kernels assume uncorrelated (independent) branches, which parsing
checks from the tensors' sources (see `_facts`).
"""
import keras

from nt_gp import stax
from nt_gp.keras import _graph
from nt_gp.keras import _layers
from nt_gp.keras._facts import Meta, check_gaussian, unify, unsupported

__all__ = ['add', 'multiply', 'concatenate']

_L = keras.layers


def _sources(metas):
  return frozenset().union(*[m.sources for m in metas])


def _describe(parser, sources):
  names = []
  for kind, key in sorted(sources, key=str):
    if kind == 'input':
      names.append(f'network input {key}')
    else:
      op = next((c.op for c in parser.graph.calls if id(c.op) == key), None)
      names.append(_graph.label(op) if op is not None else 'a layer')
  return ', '.join(names)


def _check_independent(parser, call, metas):
  for i in range(len(metas)):
    for j in range(i + 1, len(metas)):
      common = metas[i].sources & metas[j].sources
      if common:
        raise unsupported(call, (
            f'its inputs {i} and {j} both depend on '
            f'{_describe(parser, common)} without a weight layer of their own '
            f'in between, so they are correlated; the kernel of this merge '
            f'assumes uncorrelated (independent) branches'))


def _check_merge(parser, call, ins, metas):
  shapes = [tuple(parser.graph.shapes[t][1:]) for t in ins]
  if any(s != shapes[0] for s in shapes[1:]):
    raise unsupported(call, f'its inputs have different shapes {shapes} '
                      f'(broadcasting is not supported)')
  _check_independent(parser, call, metas)
  return unify(call, metas)


def add(parser, call, ins, metas):
  """Sums (differences, averages) of uncorrelated branches."""
  op = call.op
  cell = _check_merge(parser, call, ins, metas)
  non_gaussian = [i for i, m in enumerate(metas) if not m.gaussian]
  if len(non_gaussian) > 1:
    raise unsupported(call, (
        f'its inputs {non_gaussian} are not zero-mean Gaussian (they are '
        f'nonlinear functions of Gaussians, or network inputs); the sum of '
        f'two such inputs is correlated through their means. At most one '
        f'summand may be one'))
  subtract = type(op) is _L.Subtract or type(op).__name__ == 'Subtract'
  average = type(op) is _L.Average
  n = len(ins)

  def build(opts):
    total = stax.FanInSum() if not non_gaussian else \
        _layers.SumUncorrelated()
    if subtract:
      return stax.serial(stax.parallel(stax.Identity(), _layers.Scale(-1.)),
                         total)
    if average:
      return stax.serial(total, _layers.Scale(1. / n))
    return total
  parser.add_step(call, ins, build, Meta(
      metas[0].rank, cell, not non_gaussian, _sources(metas)), 'merge')


def multiply(parser, call, ins, metas):
  """Products of uncorrelated branches."""
  cell = _check_merge(parser, call, ins, metas)
  det = [i for i, m in enumerate(metas) if m.deterministic]
  if len(det) > 1:
    raise unsupported(call, (
        f'its inputs {det} depend on network inputs directly (not only '
        f'through weight layers); the kernel of a product of such inputs is '
        f'not the product of their kernels'))

  def build(opts):
    return stax.FanInProd()
  parser.add_step(call, ins, build, Meta(
      metas[0].rank, cell, len(ins) == 1 and metas[0].gaussian,
      _sources(metas)), 'multiply')


def concatenate(parser, call, ins, metas):
  """`Concatenate` along the channels, or (uncorrelated, Gaussian branches)
  along a spatial axis."""
  op = call.op
  rank = metas[0].rank
  axis = int(op.axis) % rank
  if axis == 0:
    raise unsupported(call, 'concatenation along the batch axis is not '
                      'supported')
  cell = unify(call, metas)
  if cell.axis is None:
    cell.axis = rank - 1
  channel = axis == cell.axis
  if not channel:
    _check_independent(parser, call, metas)
    for m in metas:
      check_gaussian(call, m, 'Concatenate along a spatial axis')

  def build(opts):
    return stax.FanInConcat(axis)
  parser.add_step(call, ins, build, Meta(rank, cell, not channel,
                                         _sources(metas)), 'merge')
