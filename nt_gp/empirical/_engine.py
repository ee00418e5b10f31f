"""Shared machinery of the empirical kernels: calling the network on whole
batches or example by example (`vmap_axes`), Jacobians, and the compiled
entry point with argument checks.

A *block function* `block(x, kw) -> per-leaf pieces` computes what an
implementation needs from one batch. Without `vmap_axes` it runs once on the
whole batch; with `vmap_axes` it runs on each example (a batch of one) inside
`tf.vectorized_map`, so every piece gains a leading example axis.
"""
import functools
from typing import Callable, List, Optional

import numpy as np
import tensorflow as tf

from nt_gp import _config
from nt_gp.empirical import _axes
from nt_gp.empirical import _fn

__all__ = ['Setup', 'jacobian_wrt', 'compiled_kernel_fn']


class Setup:
  """One call: the network, flat params and the output layouts.

  Attributes:
    net: the `_fn.Network`.
    p_flat: list of parameter tensors.
    unflatten: rebuilds the user's nested params from a flat list.
    vmap: `_fn.VmapAxes` or None.
    out_struct: structure of `f(params, x1)` (set by the first `apply`).
  """

  def __init__(self, net, params, vmap, trace_axes, diagonal_axes):
    self.net = net
    self.p_flat, self.unflatten = net.flatten_params(params)
    self.vmap = vmap
    self.trace_axes = trace_axes
    self.diagonal_axes = diagonal_axes
    self.out_struct = None

  def apply(self, p_flat, x, kw) -> List[tf.Tensor]:
    """`f` on flat params; returns the flat list of output leaves."""
    out = self.net(self.unflatten(p_flat), x, **kw)
    leaves = tf.nest.flatten(out)
    for l in leaves:
      if not isinstance(l, (tf.Tensor, tf.Variable, np.ndarray)):
        raise TypeError(f'`f` must return tensors (or a nested structure of '
                        f'tensors), got {type(l).__name__}.')
    if self.out_struct is None:
      self.out_struct = out
    return [tf.convert_to_tensor(l) for l in leaves]

  def out_axes(self) -> List[int]:
    """Batch axis of each output leaf (vmap mode)."""
    axes = _fn.leaf_axes(self.vmap.out_axes, self.out_struct)
    shapes = [l.shape for l in tf.nest.flatten(self.out_struct)]
    res = []
    for a, s in zip(axes, shapes):
      if a is None:
        raise ValueError('`vmap_axes` must give a batch axis for every output.')
      if not -s.rank <= a < s.rank:
        raise ValueError(f'`vmap_axes` output axis {a} is out of range for an '
                         f'output of shape {s}.')
      res.append(a % s.rank)
    return res

  def layouts(self, fx1_shapes, fx2_shapes) -> List[_axes.Layout]:
    return [_axes.Layout(s1, s2, self.trace_axes, self.diagonal_axes)
            for s1, s2 in zip(fx1_shapes, fx2_shapes)]

  def pack(self, leaves):
    return tf.nest.pack_sequence_as(self.out_struct, leaves)

  # -- per-example evaluation ------------------------------------------------
  def batch_size(self, x) -> int:
    in_axes = _fn.leaf_axes(self.vmap.in_axes, x)
    sizes = {l.shape[a % l.shape.rank]
             for l, a in zip(tf.nest.flatten(x), in_axes) if a is not None}
    if len(sizes) != 1:
      raise ValueError(f'Inputs batched by `vmap_axes` must have one batch '
                       f'size, got {sorted(sizes)}.')
    return sizes.pop()

  def per_example(self, block: Callable, x, kw):
    """Runs `block(x_i, kw_i)` for every example `i` (a batch of one each) and
    stacks the pieces on a new leading axis."""
    x_leaves = tf.nest.flatten(x)
    in_axes = [None if a is None else a % l.shape.rank
               for l, a in zip(x_leaves, _fn.leaf_axes(self.vmap.in_axes, x))]
    kw_axes = {}
    for k, a in self.vmap.kwargs_axes.items():
      if k not in kw or kw[k] is None:
        continue
      leaves = [tf.convert_to_tensor(l) for l in tf.nest.flatten(kw[k])]
      axes = _fn.leaf_axes(a, kw[k])
      kw_axes[k] = (leaves, [None if ax is None else ax % l.shape.rank
                             for l, ax in zip(leaves, axes)])
    elems = [tf.experimental.numpy.moveaxis(l, a, 0)
             for l, a in zip(x_leaves, in_axes) if a is not None]
    for leaves, axes in kw_axes.values():
      elems += [tf.experimental.numpy.moveaxis(l, a, 0)
                for l, a in zip(leaves, axes) if a is not None]
    if not elems:
      raise ValueError('`vmap_axes` batches none of the inputs.')

    def unbatch(it, leaves, axes):
      return [l if a is None else tf.expand_dims(next(it), a)
              for l, a in zip(leaves, axes)]

    def one(sliced):
      it = iter(sliced)
      xi = tf.nest.pack_sequence_as(x, unbatch(it, x_leaves, in_axes))
      kwi = dict(kw)
      for k, (leaves, axes) in kw_axes.items():
        kwi[k] = tf.nest.pack_sequence_as(kw[k], unbatch(it, leaves, axes))
      return block(xi, kwi)
    return tf.vectorized_map(one, elems)


def chunked_vectorized_map(fn: Callable, elems, chunk: int,
                           out_spec: tf.TensorSpec):
  """`tf.vectorized_map(fn, elems)` evaluated `chunk` elements at a time.

  Chunks run one after the other (`tf.map_fn`), each vectorised, which bounds
  the memory of the vectorised intermediates. `elems` is a tensor or a list of
  tensors with the same leading size; `fn` returns one tensor of `out_spec`
  (shape and dtype of one result).
  """
  flat = tf.nest.flatten(elems)
  n = int(flat[0].shape[0])
  chunk = max(1, min(int(chunk), n))
  if chunk == n:
    return tf.vectorized_map(fn, elems)
  n_chunks = -(-n // chunk)
  pad = n_chunks * chunk - n

  def split(t):
    t = tf.concat([t, tf.repeat(t[-1:], pad, axis=0)], 0) if pad else t
    return tf.reshape(t, [n_chunks, chunk] + t.shape.as_list()[1:])
  chunks = tf.nest.pack_sequence_as(elems, [split(t) for t in flat])
  shape = out_spec.shape.as_list()
  out = tf.map_fn(lambda c: tf.vectorized_map(fn, c), chunks,
                  fn_output_signature=tf.TensorSpec([chunk] + shape,
                                                    out_spec.dtype),
                  parallel_iterations=1)
  return tf.reshape(out, [n_chunks * chunk] + shape)[:n]


def graph_bytes(fn: Callable) -> int:
  """Bytes of the float tensors created while calling `fn()` in graph mode
  (a static estimate of the activation memory of one evaluation)."""
  graph = tf.compat.v1.get_default_graph()
  before = len(graph.get_operations())
  fn()
  total = 0
  for op in graph.get_operations()[before:]:
    for t in op.outputs:
      if t.dtype.is_floating and t.shape.is_fully_defined():
        total += t.shape.num_elements() * t.dtype.size
  return total


def squeeze_out(fx_leaves, out_axes):
  """Removes the size-1 batch axis of per-example outputs."""
  return [tf.squeeze(l, a) for l, a in zip(fx_leaves, out_axes)]


def jacobian_wrt(fx: tf.Tensor, ys: List[tf.Tensor]) -> List[tf.Tensor]:
  """Jacobians `d fx / d y` (shape `fx.shape + y.shape`) in graph mode.

  One reverse pass per output entry, vectorised with `tf.vectorized_map`;
  all `ys` share the passes.
  """
  n = int(np.prod(fx.shape.as_list()))
  cts = tf.reshape(tf.eye(n, dtype=fx.dtype), [n] + fx.shape.as_list())

  def loop(ct):
    grads = tf.gradients(fx, ys, grad_ys=ct,
                         unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [tf.convert_to_tensor(g) for g in grads]
  jacs = tf.vectorized_map(loop, cts)
  return [tf.reshape(j, fx.shape.as_list() + y.shape.as_list())
          for j, y in zip(jacs, ys)]


def operand_letters(layout: _axes.Layout, side: int, batch_axis: Optional[int]
                    ) -> str:
  """Einsum letters of per-leaf pieces: the output axes, with the example axis
  first in vmap mode (`batch_axis` not None)."""
  letters = layout.lhs if side == 1 else layout.rhs
  if batch_axis is None:
    return letters
  return letters[batch_axis] + letters[:batch_axis] + letters[batch_axis + 1:]


def compiled_kernel_fn(core: Callable, f, trace_axes, diagonal_axes,
                       vmap_axes, jit_compile: bool = False) -> Callable:
  """Wraps `core(setup, x1, x2, kw1, kw2) -> list of kernels` into the public
  `fn(x1, x2=None, params=None, **apply_fn_kwargs)`.

  Checks arguments eagerly (clear errors before tracing), compiles `core` with
  `tf.function` (one trace per input/param shapes) and casts the kernels to
  the inputs' dtype.
  """
  net = _fn.as_network(f)
  trace_axes = _axes.check_axes_arg('trace_axes', trace_axes)
  diagonal_axes = _axes.check_axes_arg('diagonal_axes', diagonal_axes)
  overlap = sorted(set(trace_axes) & set(diagonal_axes))
  if overlap:
    raise ValueError(f'Axes {overlap} are in both `trace_axes` and '
                     f'`diagonal_axes`.')
  vmap = _fn.canonicalize_vmap_axes(vmap_axes)

  def run(x1, x2, params, kw1, kw2):
    setup = Setup(net, params, vmap, trace_axes, diagonal_axes)
    kernels = core(setup, x1, x2, kw1, kw2)
    dtype = _fn.result_dtype(x1, kernels[0].dtype)
    kernels = [tf.cast(k, dtype) for k in kernels]
    return setup.pack(kernels)

  compiled = tf.function(run, jit_compile=jit_compile, autograph=False)

  @functools.wraps(core)
  def kernel_fn(x1, x2=None, params=None, **apply_fn_kwargs):
    x1, x2 = check_call(net, vmap, x1, x2)
    if params is None and net.keras_model is not None:
      params = [v.value for v in net.keras_model.trainable_variables]
    net.flatten_params(params)  # validates eagerly
    kw1, kw2 = _fn.split_kwargs(apply_fn_kwargs, x2 is not None)
    _config.apply_tf32_setting()
    return compiled(x1, x2, params, kw1, kw2)
  kernel_fn.python_fn = run
  return kernel_fn


def check_call(net, vmap, x1, x2):
  in_axes = None if vmap is None else vmap.in_axes
  return _fn.check_inputs(x1, x2, in_axes)
