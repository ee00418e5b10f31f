"""Batched evaluation of `nt_gp.tfp.NeuralKernel` (runs inside one graph).

TFP inputs are `batch + example + feature`, hyperparameters have batch shapes
of their own, and all batch shapes broadcast. The stax engine computes one
kernel per set of scalar hyperparameters, so a kernel with batch members is a
`tf.map_fn` over them (inputs and hyperparameters that do not vary over the
batch are passed once).
"""
import tensorflow as tf

from nt_gp import _hyperkernel

__all__ = ['evaluate']


def _split_shape(x, example_ndims, feature_ndims, name):
  rank = x.shape.rank
  if rank is None:
    raise ValueError(f'NeuralKernel: `{name}` must have a known rank.')
  if rank < example_ndims + feature_ndims:
    raise ValueError(
        f'NeuralKernel: `{name}` has shape {x.shape} (rank {rank}), but '
        f'feature_ndims={feature_ndims} and {example_ndims} example axes need '
        f'rank >= {example_ndims + feature_ndims}.')
  nb = rank - example_ndims - feature_ndims
  return x.shape[:nb], x.shape[nb:rank - feature_ndims], x.shape[
      rank - feature_ndims:]


def _broadcast_static(shapes, what):
  out = tf.TensorShape([])
  for s in shapes:
    try:
      out = tf.broadcast_static_shape(out, s)
    except ValueError as e:
      raise ValueError(f'NeuralKernel: batch shapes {[list(t) for t in shapes]}'
                       f' of {what} do not broadcast.') from e
  return out


def _dims(x, lo, hi):
  """`x.shape[lo:hi]` as a Python list if known, else as an int32 tensor."""
  part = x.shape[lo:hi]
  if part.is_fully_defined():
    return tf.constant(part.as_list(), tf.int32)
  return tf.shape(x)[lo:hi]


def evaluate(arch, feature_ndims, kind, e1, e2, x1, x2, values):
  """`kind='outer'`: `B + E1 + E2`; `kind='apply'`: `B + broadcast(E1, E2)`."""
  same = x2 is None
  b1, ex1, f1 = _split_shape(x1, e1, feature_ndims, 'x1')
  if same:
    x2, b2, ex2, f2 = x1, b1, ex1, f1
  else:
    b2, ex2, f2 = _split_shape(x2, e2, feature_ndims, 'x2')
    if f1.is_fully_defined() and f2.is_fully_defined() and f1 != f2:
      raise ValueError(f'NeuralKernel: `x1` and `x2` have different feature '
                       f'shapes {f1} and {f2} (feature_ndims={feature_ndims}).')
  if not f1.is_fully_defined():
    raise ValueError(f'NeuralKernel: the feature shape {f1} of the inputs '
                     f'must be known statically.')
  features = f1.as_list()
  dtype = x1.dtype
  values = _hyperkernel.cast_values(values, dtype)
  tensor_names = [n for n, v in values.items() if tf.is_tensor(v)]
  hp_shapes = [values[n].shape for n in tensor_names]
  batch = _broadcast_static([b1, b2] + hp_shapes,
                            'the inputs and the hyperparameters')
  ex1_t = _dims(x1, b1.rank, b1.rank + e1)
  ex2_t = _dims(x2, b2.rank, b2.rank + e2)
  if kind == 'apply':
    try:
      example = tf.broadcast_static_shape(ex1, ex2)
    except ValueError as e:
      raise ValueError(f'NeuralKernel.apply: example shapes {ex1} and {ex2} '
                       f'do not broadcast.') from e
    example_t = (tf.constant(example.as_list(), tf.int32)
                 if example.is_fully_defined() else
                 tf.broadcast_dynamic_shape(ex1_t, ex2_t))
  else:
    example = ex1.concatenate(ex2)
    example_t = tf.concat([ex1_t, ex2_t], 0)

  def member(xa, xb, vals):
    """One batch member: `xa: E1 + F`, `xb: E2 + F` (or None if `x2 = x1`)."""
    if kind == 'outer':
      a = tf.reshape(xa, [-1] + features)
      b = None if xb is None else tf.reshape(xb, [-1] + features)
      out = arch.gram(a, b, vals)
    elif xb is None:
      out = arch.paired(tf.reshape(xa, [-1] + features), None, vals)
    else:
      if ex1 == ex2 and ex1.is_fully_defined():
        a, b = xa, xb
      else:
        shape = tf.concat([example_t, features], 0)
        a, b = tf.broadcast_to(xa, shape), tf.broadcast_to(xb, shape)
      out = arch.paired(tf.reshape(a, [-1] + features),
                        tf.reshape(b, [-1] + features), vals)
    return tf.reshape(out, example_t)

  if example.is_fully_defined() and example.num_elements() == 0:
    if not batch.is_fully_defined():
      raise ValueError('NeuralKernel: empty example shapes need a static '
                       'batch shape.')
    return tf.zeros(batch.concatenate(example), dtype)

  if batch.is_fully_defined() and batch.num_elements() == 1:
    xa = tf.reshape(x1, tf.concat([ex1_t, features], 0))
    xb = None if same else tf.reshape(x2, tf.concat([ex2_t, features], 0))
    vals = {n: (tf.reshape(v, []) if tf.is_tensor(v) else v)
            for n, v in values.items()}
    out = member(xa, xb, vals)
    if batch.rank:
      out = tf.reshape(out, tf.concat([batch.as_list(), example_t], 0))
    return out

  if batch.is_fully_defined():
    batch_t = tf.constant(batch.as_list(), tf.int32)
  else:
    batch_t = tf.constant([], tf.int32)
    for t, p in [(x1, b1), (x2, b2)] + [
        (values[n], s) for n, s in zip(tensor_names, hp_shapes)]:
      batch_t = tf.broadcast_dynamic_shape(batch_t, tf.shape(t)[:p.rank])
  nb = tf.reduce_prod(batch_t)

  def stack(t, t_batch, rest_t):
    """`t: t_batch + rest` as `[nb] + rest`, or None if loop-invariant."""
    if t_batch.is_fully_defined() and t_batch.num_elements() == 1:
      return None
    full = tf.broadcast_to(t, tf.concat([batch_t, rest_t], 0))
    return tf.reshape(full, tf.concat([[nb], rest_t], 0))

  inv, stacked = {}, {}
  inputs = [('x1', x1, b1, tf.concat([ex1_t, features], 0))]
  if not same:
    inputs.append(('x2', x2, b2, tf.concat([ex2_t, features], 0)))
  for key, t, t_batch, rest_t in inputs:
    s = stack(t, t_batch, rest_t)
    if s is None:
      inv[key] = tf.reshape(t, rest_t)
    else:
      stacked[key] = s
  empty = tf.constant([], tf.int32)
  for n, v in values.items():
    s = stack(v, v.shape, empty) if tf.is_tensor(v) else None
    if s is None:
      inv[n] = tf.reshape(v, []) if tf.is_tensor(v) else v
    else:
      stacked[n] = s

  def body(elems):
    d = dict(inv, **elems)
    return member(d['x1'], None if same else d['x2'],
                  {n: d[n] for n in values})

  out = tf.map_fn(body, stacked,
                  fn_output_signature=tf.TensorSpec(example, dtype))
  return tf.reshape(out, tf.concat([batch_t, example_t], 0))
