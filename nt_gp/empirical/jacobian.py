"""Empirical NTK by Jacobian contraction.

`Θ(x1, x2) = Σ_p J_p(x1) J_p(x2)ᵀ` with `J_p = ∂f/∂p` built by
`tf.GradientTape.jacobian` (reverse mode, vectorised over output entries with
`pfor`) and contracted parameter by parameter, so only one parameter's
Jacobian product is materialised at a time. With `vmap_axes` the Jacobians are
computed per example inside `tf.vectorized_map`, which avoids the
`batch × batch` blocks of zeros of a whole-batch Jacobian.
"""
from typing import List

import tensorflow as tf

from nt_gp.empirical import _engine

__all__ = ['ntk_core', 'contract_jacobians', 'stack_to_full']


def _block(setup, x, kw, per_example: bool):
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(setup.p_flat)
    fx = setup.apply(setup.p_flat, x, kw)
    if per_example:
      fx = _engine.squeeze_out(fx, setup.out_axes())
  jacs = []
  for leaf in fx:
    js = tape.jacobian(leaf, setup.p_flat,
                       unconnected_gradients=tf.UnconnectedGradients.ZERO)
    jacs.append([tf.reshape(j, leaf.shape.as_list() + [-1]) for j in js])
  del tape
  return fx, jacs


def stack_to_full(stacked: List[tf.Tensor], out_axes: List[int]):
  """Per-example outputs stacked on axis 0 -> outputs with their batch axis."""
  return [tf.experimental.numpy.moveaxis(s, 0, a)
          for s, a in zip(stacked, out_axes)]


def jacobians(setup, x, kw):
  """`(fx_leaves, jacobians)`; `jacobians[leaf][param]` has shape
  `fx.shape + (size(param),)`, with the example axis first in vmap mode."""
  if setup.vmap is None:
    return _block(setup, x, kw, per_example=False)
  return setup.per_example(lambda xi, kwi: _block(setup, xi, kwi, True), x, kw)


def contract_jacobians(setup, layouts, jac1, jac2, dtypes) -> List[tf.Tensor]:
  """`Σ_p J1_p J2_pᵀ` for every output leaf, in the kernel layout.

  Jacobians come in their parameter's dtype; they are contracted in the
  output's dtype `dtypes[leaf]`.
  """
  out = []
  axes = setup.out_axes() if setup.vmap is not None else [None] * len(layouts)
  for layout, b, j1s, j2s, dtype in zip(layouts, axes, jac1, jac2, dtypes):
    l1 = _engine.operand_letters(layout, 1, b)
    l2 = _engine.operand_letters(layout, 2, b)
    p = layout.free[0]
    spec = f'{l1}{p},{l2}{p}->{layout.out}'
    k = tf.add_n([tf.einsum(spec, tf.cast(j1, dtype), tf.cast(j2, dtype))
                  for j1, j2 in zip(j1s, j2s)])
    out.append(layout.normalize(k))
  return out


def full_shapes(setup, fx_leaves):
  if setup.vmap is None:
    return [l.shape.as_list() for l in fx_leaves]
  return [l.shape.as_list() for l in stack_to_full(fx_leaves, setup.out_axes())]


def ntk_core(setup, x1, x2, kw1, kw2) -> List[tf.Tensor]:
  fx1, jac1 = jacobians(setup, x1, kw1)
  if x2 is None:
    fx2, jac2 = fx1, jac1
  else:
    fx2, jac2 = jacobians(setup, x2, kw2)
  layouts = setup.layouts(full_shapes(setup, fx1), full_shapes(setup, fx2))
  return contract_jacobians(setup, layouts, jac1, jac2,
                            [l.dtype for l in fx1])
