"""Empirical NTK by NTK-vector products, and `empirical_ntk_vp_fn`.

`Θ v = J1 (J2ᵀ v)`: a reverse pass of `f(x2)` (VJP) followed by a forward-mode
pass of `f(x1)` (JVP, `tf.autodiff.ForwardAccumulator`). The NTK is built
column by column with `v` running over the standard basis of `f(x2)`'s
entries; neither Jacobian is ever materialised. Columns are vectorised with
`tf.vectorized_map` in chunks whose size is set from the activation memory of
one forward pass (at most `_CHUNK_BYTES` per chunk).
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


# Memory allowed for the vectorised columns of one chunk.
_CHUNK_BYTES = 2 ** 29


def _chunk_size(per_column_bytes: int, n_cols: int) -> int:
  return max(1, min(n_cols, _CHUNK_BYTES // max(per_column_bytes, 1)))


def _take_example(x, i, in_axes):
  """Example `i` of `x` as a batch of one (along each leaf's `in_axes`)."""
  leaves = tf.nest.flatten(x)
  out = []
  for l, a in zip(leaves, in_axes):
    if a is None:
      out.append(l)
    else:
      a = a % l.shape.rank
      out.append(tf.expand_dims(tf.gather(l, i, axis=a), a))
  return tf.nest.pack_sequence_as(x, out)


def _columns(setup, x1, x2, kw1, kw2, k: int, fx1_leaf, fx2_leaf):
  """NTK columns `J1 J2ᵀ e_j` of output leaf `k` for every entry `j` of
  `f(x2)`; returns `(*shape2, *shape1)`.

  Columns are vectorised in chunks sized from the activation memory of one
  forward pass. With `vmap_axes` each column's VJP runs on its own example of
  `x2` (a batch of one); the JVP always runs on the whole `x1`.
  """
  ps = setup.p_flat
  shape1 = fx1_leaf.shape.as_list()
  shape2 = fx2_leaf.shape.as_list()
  act1 = _engine.graph_bytes(lambda: setup.apply(ps, x1, kw1))
  if setup.vmap is None:
    fx2 = setup.apply(ps, x2, kw2)[k]
    n = int(np.prod(shape2))
    cols = tf.range(n)

    def column(j):
      ct = tf.reshape(tf.one_hot(j, n, dtype=fx2.dtype), shape2)
      v = _vjp(fx2, ps, ct)
      return _jvp(setup, ps, v, x1, kw1)[k]
    per_col = 3 * act1 + _engine.graph_bytes(
        lambda: setup.apply(ps, x2, kw2))
    out = _engine.chunked_vectorized_map(
        column, cols, _chunk_size(per_col, n),
        tf.TensorSpec(shape1, fx1_leaf.dtype))
    return tf.reshape(out, shape2 + shape1)
  b = setup.out_axes()[k]
  n_ex = shape2[b]
  e_shape = shape2[:b] + shape2[b + 1:]
  n_e = int(np.prod(e_shape))
  in_axes = _fn.leaf_axes(setup.vmap.in_axes, x2)
  kw_axes = setup.vmap.kwargs_axes

  def column(j):
    i, c = j // n_e, j % n_e
    x2i = _take_example(x2, i, in_axes)
    kw2i = dict(kw2)
    for name, ax in kw_axes.items():
      if name in kw2 and kw2[name] is not None:
        kw2i[name] = _take_example(kw2[name], i,
                                   _fn.leaf_axes(ax, kw2[name]))
    fx2 = _engine.squeeze_out(setup.apply(ps, x2i, kw2i),
                              setup.out_axes())[k]
    ct = tf.reshape(tf.one_hot(c, n_e, dtype=fx2.dtype), e_shape)
    v = _vjp(fx2, ps, ct)
    return _jvp(setup, ps, v, x1, kw1)[k]
  per_col = 3 * act1
  out = _engine.chunked_vectorized_map(
      column, tf.range(n_ex * n_e), _chunk_size(per_col, n_ex * n_e),
      tf.TensorSpec(shape1, fx1_leaf.dtype))
  # (n_ex, *e, *shape1): put the example axis back at its output position.
  out = tf.reshape(out, [n_ex] + e_shape + shape1)
  return tf.experimental.numpy.moveaxis(out, 0, b)


def ntk_core(setup, x1, x2, kw1, kw2) -> List[tf.Tensor]:
  fx1 = setup.apply(setup.p_flat, x1, kw1)
  x2_, kw2_ = (x1, kw1) if x2 is None else (x2, kw2)
  fx2 = fx1 if x2 is None else setup.apply(setup.p_flat, x2, kw2)
  layouts = setup.layouts([l.shape for l in fx1], [l.shape for l in fx2])
  out = []
  for k, layout in enumerate(layouts):
    cols = _columns(setup, x1, x2_, kw1, kw2_, k, fx1[k], fx2[k])
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
