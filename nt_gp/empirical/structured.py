"""Empirical NTK by structured derivatives.

For a weight `W` that enters the network only through a product `Y = A W`
(a dense layer: `A` the layer's input rows; a convolution: `A` the input
patches), the Jacobian factorises: `∂f/∂W = Aᵀ G` with `G = ∂f/∂Y` the
output cotangents. Its NTK contribution

    Θ_W(x1, x2) = Σ_{r,s} (A1 A2ᵀ)[r, s] · (G1 G2ᵀ)[r, s]

is a contraction of four small tensors, evaluated in the cheapest order found
by `opt_einsum` (for a dense layer: two Gram matrices multiplied entrywise,
without ever forming `∂f/∂W`). Only `G` needs reverse passes, and those stop at
`Y` instead of computing weight gradients.

The weights are found by tracing `f` into a graph and following each
parameter through layout-only ops (`Identity`, `Cast`, `Reshape`,
`ExpandDims`, `Squeeze`, `Transpose`) to a `MatMul`, `BatchMatMulV2` (2-D
weight) or `Conv2D` (`NHWC`; `SAME`/`VALID`/explicit padding, strides,
dilations) that is its only use. Every other parameter (biases, normalisation
scales, depthwise or 3-D convolutions, weights used twice) and every weight for
which the cost model finds the explicit Jacobian cheaper falls back to
Jacobian contraction (`∂f/∂p` by reverse passes, contracted as in
`jacobian.py`); all reverse passes are shared.
"""
import dataclasses
from typing import List, Optional

import numpy as np
import opt_einsum
import tensorflow as tf

from nt_gp.empirical import _engine
from nt_gp.empirical import jacobian as _jac

__all__ = ['ntk_core']

_LAYOUT_OPS = ('Identity', 'Cast', 'Reshape', 'ExpandDims', 'Squeeze',
               'Transpose', 'EnsureShape', 'StopGradient_')


@dataclasses.dataclass
class _Use:
  """How a weight is used: `kind` in {'matmul_b', 'matmul_a', 'batch_matmul',
  'conv2d'}, the op, and the position of the weight among its inputs."""
  kind: str
  op: object
  index: int

  @property
  def a(self):
    return self.op.inputs[1 - self.index]

  @property
  def y(self):
    return self.op.outputs[0]


def _find_use(p) -> Optional[_Use]:
  t = p
  for _ in range(64):
    consumers = t.consumers()
    if len(consumers) != 1:
      return None
    op = consumers[0]
    idx = [i for i, inp in enumerate(op.inputs) if inp is t]
    if len(idx) != 1:
      return None
    idx = idx[0]
    if op.type in _LAYOUT_OPS and idx == 0:
      t = op.outputs[0]
      continue
    if op.type == 'MatMul':
      return _Use('matmul_b' if idx == 1 else 'matmul_a', op, idx)
    if op.type in ('BatchMatMulV2', 'BatchMatMulV3') and idx == 1 and (
        t.shape.rank == 2 and op.inputs[0].shape.rank is not None and
        op.inputs[0].shape.rank >= 2):
      return _Use('batch_matmul', op, 1)
    if op.type == 'Conv2D' and idx == 1:
      a = op.inputs[0]
      fmt = op.get_attr('data_format').decode()
      if fmt == 'NHWC' and a.shape[-1] is not None and (
          a.shape[-1] == t.shape[2]):
        return _Use('conv2d', op, 1)
    return None
  return None


@dataclasses.dataclass
class _Plan:
  """Static (trace-time) description of one structured weight."""
  param: int
  kind: str
  attrs: dict
  rows_shape: tuple  # shape of Y without its last (output feature) axis


def _attrs(use: _Use) -> dict:
  op = use.op
  if use.kind in ('matmul_a', 'matmul_b'):
    return dict(transpose_a=op.get_attr('transpose_a'),
                transpose_b=op.get_attr('transpose_b'))
  if use.kind == 'batch_matmul':
    return dict(adj_x=op.get_attr('adj_x'), adj_y=op.get_attr('adj_y'))
  filt = op.inputs[1].shape.as_list()
  return dict(strides=list(op.get_attr('strides')),
              dilations=list(op.get_attr('dilations')),
              padding=op.get_attr('padding').decode(),
              explicit_paddings=list(op.get_attr('explicit_paddings')),
              ksize=filt[:2])


def _rows_features(plan: _Plan, a_shape, y_shape):
  """`(R, I, O)` of a planned use from static shapes (one block)."""
  if plan.kind == 'matmul_b':
    r = a_shape[1] if plan.attrs['transpose_a'] else a_shape[0]
    i = a_shape[0] if plan.attrs['transpose_a'] else a_shape[1]
    return r, i, y_shape[1]
  if plan.kind == 'matmul_a':
    r = a_shape[0] if plan.attrs['transpose_b'] else a_shape[1]
    i = a_shape[1] if plan.attrs['transpose_b'] else a_shape[0]
    return r, i, y_shape[0]
  if plan.kind == 'batch_matmul':
    i = a_shape[-2] if plan.attrs['adj_x'] else a_shape[-1]
    return int(np.prod(y_shape[:-1])), i, y_shape[-1]
  at = plan.attrs
  rows = int(np.prod(y_shape[:-1]))
  return rows, at['ksize'][0] * at['ksize'][1] * a_shape[-1], y_shape[-1]


def _worth_it(n_blocks: int, n_out: int, rows: int, i: int, o: int) -> bool:
  """Structured if its contraction is cheaper than forming `∂f/∂W`.

  `n_blocks` examples (1 without `vmap_axes`), `n_out` output entries per
  block (each needs one reverse pass), `rows` rows of `A` per block. Costs are
  FLOPs from `opt_einsum` for the structured contraction versus the weight
  gradients plus their contraction (both batches taken as `x1`).
  """
  n = n_blocks
  shapes = [(n, n_out, rows, o), (n, rows, i), (n, n_out, rows, o),
            (n, rows, i)]
  _, info = opt_einsum.contract_path('nars,nri,mbts,mti->namb', *shapes,
                                     shapes=True, optimize='optimal')
  structured = float(info.opt_cost)
  total = n * n_out
  explicit = 2. * total * rows * i * o + 2. * total * total * i * o
  return structured <= explicit


def _block(setup, x, kw, per_example: bool, plans: Optional[List[_Plan]],
           store: dict):
  ps = [tf.identity(p) for p in setup.p_flat]
  fx = setup.apply(ps, x, kw)
  if per_example:
    fx = _engine.squeeze_out(fx, setup.out_axes())
  if plans is None:
    n_out = int(sum(np.prod(l.shape.as_list()) for l in fx))
    plans = []
    for i, p in enumerate(ps):
      use = _find_use(p)
      if use is None:
        continue
      plan = _Plan(i, use.kind, _attrs(use), tuple(use.y.shape.as_list()))
      r, fi, fo = _rows_features(plan, use.a.shape.as_list(),
                                 use.y.shape.as_list())
      if _worth_it(store['n_blocks'], n_out, r, fi, fo):
        plans.append(plan)
    store['plans'] = plans
  uses = []
  for plan in plans:
    use = _find_use(ps[plan.param])
    if use is None or use.kind != plan.kind:
      raise RuntimeError('The network uses its weights differently for `x1` '
                         'and `x2`; use JACOBIAN_CONTRACTION.')
    uses.append(use)
  structured = {plan.param for plan in plans}
  fallback = [i for i in range(len(ps)) if i not in structured]
  store['fallback'] = fallback
  ys = [u.y for u in uses] + [ps[i] for i in fallback]
  a_list = [u.a for u in uses]
  jacs = [_engine.jacobian_wrt(leaf, ys) for leaf in fx]
  return fx, a_list, jacs


def _patches(a, at):
  """Input patches `(N, H', W', kh*kw*C)` of a Conv2D input (NHWC)."""
  strides, dil = at['strides'], at['dilations']
  padding = at['padding']
  if padding == 'EXPLICIT':
    pads = np.reshape(at['explicit_paddings'], (4, 2))
    a = tf.pad(a, pads.tolist())
    padding = 'VALID'
  kh, kw = at['ksize']
  return tf.image.extract_patches(a, sizes=[1, kh, kw, 1], strides=strides,
                                  rates=dil, padding=padding)


def _prepare(plan: _Plan, a, g, n_lead_a: int, n_lead_g: int):
  """Brings one structured weight's pieces to `A: (*b, R, I)` and
  `G: (*lead, R, O)`; `n_lead_a` (0 or 1) example axes lead `a`, `n_lead_g`
  output axes lead `g`."""
  lead_a = a.shape.as_list()[:n_lead_a]
  lead_g = g.shape.as_list()[:n_lead_g]
  k, at = plan.kind, plan.attrs
  if k == 'matmul_b':
    if at['transpose_a']:
      a = tf.linalg.matrix_transpose(a)
    return (tf.reshape(a, lead_a + [-1, a.shape[-1]]),
            tf.reshape(g, lead_g + [-1, g.shape[-1]]))
  if k == 'matmul_a':
    if not at['transpose_b']:
      a = tf.linalg.matrix_transpose(a)
    g = tf.linalg.matrix_transpose(g)
    return (tf.reshape(a, lead_a + [-1, a.shape[-1]]),
            tf.reshape(g, lead_g + [-1, g.shape[-1]]))
  if k == 'batch_matmul':
    if at['adj_x']:
      a = tf.linalg.matrix_transpose(a)
    return (tf.reshape(a, lead_a + [-1, a.shape[-1]]),
            tf.reshape(g, lead_g + [-1, g.shape[-1]]))
  # conv2d
  img_shape = a.shape.as_list()[n_lead_a:]
  a = tf.reshape(a, [-1] + img_shape[1:])
  p = _patches(a, at)
  p = tf.reshape(p, lead_a + [-1, p.shape[-1]])
  return p, tf.reshape(g, lead_g + [-1, g.shape[-1]])


def _terms(setup, x, kw, plans, store):
  """Runs the block(s); returns fx leaves, plans, prepared `(A, G)` per leaf
  and weight, and fallback Jacobians per leaf and parameter."""
  per_example = setup.vmap is not None
  store.setdefault('n_blocks', setup.batch_size(x) if per_example else 1)
  block = lambda xi, kwi: _block(setup, xi, kwi, per_example, plans, store)
  if per_example:
    fx, a_list, jacs = setup.per_example(block, x, kw)
  else:
    fx, a_list, jacs = block(x, kw)
  plans = store['plans'] if plans is None else plans
  n_a = 1 if per_example else 0
  pieces = []
  for leaf, leaf_jacs in zip(fx, jacs):
    n_g = leaf.shape.rank
    structured = []
    for plan, a, g in zip(plans, a_list, leaf_jacs[:len(plans)]):
      structured.append(_prepare(plan, a, g, n_a, n_g))
    fallback = [tf.reshape(j, leaf.shape.as_list() + [-1])
                for j in leaf_jacs[len(plans):]]
    pieces.append((structured, fallback))
  return fx, plans, pieces


def ntk_core(setup, x1, x2, kw1, kw2) -> List[tf.Tensor]:
  store = {}
  fx1, plans, pieces1 = _terms(setup, x1, kw1, None, store)
  if x2 is None:
    fx2, pieces2 = fx1, pieces1
  else:
    fx2, _, pieces2 = _terms(setup, x2, kw2, plans, dict(store))
  layouts = setup.layouts(_jac.full_shapes(setup, fx1),
                          _jac.full_shapes(setup, fx2))
  axes = setup.out_axes() if setup.vmap is not None else [None] * len(layouts)
  out = []
  for layout, b, (s1, j1), (s2, j2) in zip(layouts, axes, pieces1, pieces2):
    l1 = _engine.operand_letters(layout, 1, b)
    l2 = _engine.operand_letters(layout, 2, b)
    n1 = l1[0] if b is not None else ''
    n2 = l2[0] if b is not None else ''
    r, s, i, o, p = layout.free[:5]
    terms = []
    spec = f'{l1}{r}{o},{n1}{r}{i},{l2}{s}{o},{n2}{s}{i}->{layout.out}'
    dtype = fx1[len(out)].dtype
    c = lambda t: tf.cast(t, dtype)
    for (a1, g1), (a2, g2) in zip(s1, s2):
      terms.append(tf.einsum(spec, c(g1), c(a1), c(g2), c(a2),
                             optimize='optimal'))
    spec = f'{l1}{p},{l2}{p}->{layout.out}'
    for ja, jb in zip(j1, j2):
      terms.append(tf.einsum(spec, c(ja), c(jb)))
    out.append(layout.normalize(tf.add_n(terms)))
  return out
