"""Empirical NTK by NTK-vector products, and `empirical_ntk_vp_fn`.

`Θ v = J1 (J2ᵀ v)`: a reverse pass of `f(x2)` (VJP) followed by a forward-mode
pass of `f(x1)` (JVP, `tf.autodiff.ForwardAccumulator`). The NTK is built
column by column with `v` running over the standard basis of `f(x2)`'s
entries, the columns vectorised with `tf.vectorized_map`; neither Jacobian
is ever materialised.
"""
from typing import Callable, List

import numpy as np
import tensorflow as tf

from nt_gp.empirical import _engine
from nt_gp.empirical import _fn
from nt_gp.empirical import jacobian as _jac

__all__ = ['ntk_core', 'empirical_ntk_vp_fn']

_ZERO = tf.UnconnectedGradients.ZERO


def _vjp(fx, ps, cts):
  return tf.gradients(fx, ps, grad_ys=cts, unconnected_gradients=_ZERO)


def _jvp(setup, ps, tangents, x, kw):
  tangents = [tf.cast(t, p.dtype) for t, p in zip(tangents, ps)]
  with tf.autodiff.ForwardAccumulator(ps, tangents) as acc:
    fx = setup.apply(ps, x, kw)
  return [acc.jvp(l, unconnected_gradients=_ZERO) for l in fx]


def _basis(leaf):
  shape = leaf.shape.as_list()
  n = int(np.prod(shape))
  return tf.reshape(tf.eye(n, dtype=leaf.dtype), [n] + shape)


def _columns_full(setup, x1, x2, kw1, kw2, k: int):
  """`(*shape2, *shape1)` columns of output leaf `k` (whole batches)."""
  ps = setup.p_flat
  fx2 = setup.apply(ps, x2, kw2)
  leaf2 = fx2[k]

  def column(ct):
    v = _vjp(leaf2, ps, ct)
    return _jvp(setup, ps, v, x1, kw1)[k]
  cols = tf.vectorized_map(column, _basis(leaf2))
  return tf.reshape(cols, leaf2.shape.as_list() + cols.shape.as_list()[1:])


def _columns_per_example(setup, x1, x2, kw1, kw2, k: int):
  """Same as `_columns_full` but the VJPs run per example of `x2`."""
  ps = setup.p_flat

  def block(x2i, kw2i):
    leaf2 = _engine.squeeze_out(setup.apply(ps, x2i, kw2i),
                                setup.out_axes())[k]

    def column(ct):
      v = _vjp(leaf2, ps, ct)
      return _jvp(setup, ps, v, x1, kw1)[k]
    cols = tf.vectorized_map(column, _basis(leaf2))
    return tf.reshape(cols, leaf2.shape.as_list() + cols.shape.as_list()[1:])
  # (n2, *e2, *shape1): put the example axis back at its output position.
  cols = setup.per_example(block, x2, kw2)
  b = setup.out_axes()[k]
  return tf.experimental.numpy.moveaxis(cols, 0, b)


def ntk_core(setup, x1, x2, kw1, kw2) -> List[tf.Tensor]:
  fx1 = setup.apply(setup.p_flat, x1, kw1)
  x2_, kw2_ = (x1, kw1) if x2 is None else (x2, kw2)
  fx2 = fx1 if x2 is None else setup.apply(setup.p_flat, x2, kw2)
  layouts = setup.layouts([l.shape for l in fx1], [l.shape for l in fx2])
  out = []
  for k, layout in enumerate(layouts):
    if setup.vmap is None:
      cols = _columns_full(setup, x1, x2_, kw1, kw2_, k)
    else:
      cols = _columns_per_example(setup, x1, x2_, kw1, kw2_, k)
    n2 = len(layout.shape2)
    rank = cols.shape.rank
    full = tf.transpose(cols, list(range(n2, rank)) + list(range(n2)))
    out.append(layout.from_full(full))
  return out


def empirical_ntk_vp_fn(f, x1, x2, params, **apply_fn_kwargs) -> Callable:
  """Returns `ntk_vp_fn(cotangents)`: the empirical NTK times a vector,
  `Θ(x1, x2) v = J(x1) J(x2)ᵀ v`, without forming the NTK.

  Costs one reverse pass of `f(x2)` and one forward-mode pass of `f(x1)`;
  compiled with `tf.function`.

  Args:
    f: `f(params, x, **kwargs)` or a built Keras 3 model.
    x1: first batch of inputs.
    x2: second batch; None means `x1`.
    params: parameters (nested structure of tensors); None for a Keras
      model's current weights.
    **apply_fn_kwargs: keyword arguments of `f` (split as in
      `empirical_ntk_fn`).

  Returns:
    `ntk_vp_fn(cotangents)` taking a tensor (or structure) shaped like
    `f(params, x2)` and returning one shaped like `f(params, x1)`, in the
    dtype of `f`'s outputs.

  Example:
    >>> import numpy as np
    >>> import nt_gp
    >>> def f(params, x):
    ...   return x @ params
    >>> x = np.array([[1., 0.], [1., 1.]])
    >>> vp = nt_gp.empirical_ntk_vp_fn(f, x, None, np.ones((2, 1)))
    >>> vp(np.array([[1.], [0.]])).numpy()   # (x xᵀ) [1, 0]ᵀ
    array([[1.],
           [1.]])
  """
  net = _fn.as_network(f)
  x1, x2 = _fn.check_inputs(x1, x2)
  if params is None and net.keras_model is not None:
    params = [v.value for v in net.keras_model.trainable_variables]
  p_flat, unflatten = net.flatten_params(params)
  kw1, kw2 = _fn.split_kwargs(apply_fn_kwargs, x2 is not None)
  x2_, kw2_ = (x1, kw1) if x2 is None else (x2, kw2)

  @tf.function(autograph=False)
  def ntk_vp(cotangents, p_flat):
    def apply(ps, x, kw):
      return tf.nest.flatten(net(unflatten(ps), x, **kw))
    fx2 = apply(p_flat, x2_, kw2_)
    cts = tf.nest.flatten(cotangents)
    if len(cts) != len(fx2):
      raise ValueError(f'`cotangents` must be shaped like f(params, x2): '
                       f'{len(fx2)} arrays, got {len(cts)}.')
    cts = [tf.cast(c, l.dtype) for c, l in zip(cts, fx2)]
    for c, l in zip(cts, fx2):
      if c.shape != l.shape:
        raise ValueError(f'`cotangents` must have the shape of '
                         f'f(params, x2), {l.shape}, got {c.shape}.')
    v = tf.gradients(fx2, p_flat, grad_ys=cts, unconnected_gradients=_ZERO)
    with tf.autodiff.ForwardAccumulator(p_flat, v) as acc:
      out = net(unflatten(p_flat), x1, **kw1)
    return tf.nest.map_structure(
        lambda o: acc.jvp(o, unconnected_gradients=_ZERO), out)

  def ntk_vp_fn(cotangents):
    cts = tf.nest.map_structure(tf.convert_to_tensor, cotangents)
    return ntk_vp(cts, p_flat)
  return ntk_vp_fn
