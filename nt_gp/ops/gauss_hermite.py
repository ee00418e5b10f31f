"""Bivariate Gauss–Hermite expectations ``E[f(z1) f(z2)]`` in bounded memory.

For a centred Gaussian pair with variances q11, q22 and covariance q12, write
z1 = sqrt(2 q11) x and z2 = q12 / sqrt(q11 / 2) x + sqrt(2 (q22 - q12² / q11)) y
with x, y distributed as exp(-x² - y²) / π; the `deg`-point Gauss–Hermite
rule in each variable gives

    E[f(z1) f(z2)] ≈ Σ_i w_i f(z1(x_i)) Σ_j w_j f(z2(x_i, y_j)) / π.

`expectations` evaluates this for every entry of a covariance tensor and for
several functions at once (an activation and its derivative share the nodes).
An `evaluate` function can compute all the functions' values at once (an
activation and its autodiff derivative share the activation's ops): each
node then costs one evaluation of the activation in the graph and in XLA's
compile, not one per function.
It loops over the outer nodes x_i and groups of inner nodes y_j in a
`tf.while_loop` that adds each step's terms to the result: nothing of size
``deg × entries`` is held, the peak is a few copies of the covariance, and
XLA compiles one small body instead of `deg` unrolled copies of a large one.

A while loop inside an XLA cluster cannot be differentiated by TensorFlow
(its gradient accumulators would have to leave the cluster), so the loop
carries a custom gradient: the vector-Jacobian product is that of the same
sum written with vectorised inner nodes (`reference_expectations`), which
TensorFlow differentiates to any order. Functions that capture tensors or
variables (whose gradients a custom gradient would not see) use that
differentiable form directly.
"""
import numpy as np
import tensorflow as tf

from nt_gp.ops.safe_math import safe_sqrt

__all__ = ['expectations', 'reference_expectations']

# Most values of a function evaluated at once by `reference_expectations`.
_CHUNK_ELEMENTS = 2**22


def _rule(deg: int, dtype):
  nodes, weights = np.polynomial.hermite.hermgauss(deg)
  return nodes.astype(dtype.as_numpy_dtype), weights.astype(
      dtype.as_numpy_dtype)


def _geometry(q12, q11, q22):
  """`(scale1, slope, scale2)`: z1 = scale1 x, z2 = slope x + scale2 y."""
  dtype = q12.dtype
  scale1 = safe_sqrt(2 * q11)
  slope = q12 / safe_sqrt(q11 / 2, 1e-30)
  residual = q22 - tf.square(q12) / tf.maximum(q11, tf.constant(1e-30, dtype))
  return scale1, slope, safe_sqrt(2 * residual)


def _out_shape(q12, q11, q22):
  return tf.broadcast_static_shape(
      tf.broadcast_static_shape(q12.shape, q11.shape), q22.shape)


def _evaluator(fns, evaluate):
  """`z -> [f(z) for f in fns]`, or `evaluate` where given."""
  if evaluate is not None:
    return lambda z: list(evaluate(z))
  return lambda z: [f(z) for f in fns]


def reference_expectations(fns, q12, q11, q22, deg: int, evaluate=None):
  """The same sums as `expectations`, differentiable by TensorFlow.

  The outer nodes are taken in Python-unrolled chunks, each vectorised over
  all inner nodes (at most `_CHUNK_ELEMENTS` values of a function at once).
  Its forward pass holds ``deg × entries`` values per function and its
  gradient keeps every chunk: use it for derivatives and small kernels.

  Args:
    fns: sequence of elementwise functions.
    q12, q11, q22: covariances and variances (broadcasting against `q12`),
      float32 or float64.
    deg: nodes per dimension.
    evaluate: optional `z -> list` of the values of all `fns` at `z`,
      computed together (see `expectations`).

  Returns:
    A list with one tensor per function, of the broadcast shape.

  Example:
    >>> import tensorflow as tf
    >>> q = tf.constant([[1., 0.5]], tf.float64)
    >>> [round(float(v), 6) for v in reference_expectations(
    ...     [lambda z: z], q, tf.ones_like(q), tf.ones_like(q), 5)[0][0]]
    [1.0, 0.5]
  """
  values = _evaluator(fns, evaluate)
  dtype = q12.dtype
  rank = q12.shape.rank
  xs, ws = _rule(deg, dtype)
  ys = tf.reshape(tf.constant(xs), [1, deg] + [1] * rank)
  wy = tf.reshape(tf.constant(ws), [1, deg] + [1] * rank)
  scale1, slope, scale2 = _geometry(q12, q11, q22)
  scale1, slope = scale1[None], slope[None, None]
  scale2_y = scale2[None, None] * ys
  size = q12.shape.num_elements()
  chunk = deg if size is None else max(
      1, min(deg, _CHUNK_ELEMENTS // max(1, deg * size)))
  totals = [None] * len(fns)
  for start in range(0, deg, chunk):
    stop = min(deg, start + chunk)
    xi = tf.reshape(tf.constant(xs[start:stop]), [-1] + [1] * rank)
    wi = tf.reshape(tf.constant(ws[start:stop]), [-1] + [1] * rank)
    f1s = values(scale1 * xi)
    f2s = values(slope * xi[:, None] + scale2_y)
    for k, (f1, f2) in enumerate(zip(f1s, f2s)):
      term = tf.reduce_sum(wi * f1 * tf.reduce_sum(wy * f2, axis=1), axis=0)
      totals[k] = term if totals[k] is None else totals[k] + term
  return [t / np.pi for t in totals]


# Inner nodes y_j per loop iteration. Each iteration reads the covariance
# and writes the results once: one node per iteration made the loop memory
# bound; all `deg` in one body take XLA several times longer to compile.
INNER_GROUP = 5


def _looped(fns, q12, q11, q22, deg, evaluate=None):
  """Forward pass of `expectations`: a while loop over the outer nodes x_i
  and groups of `INNER_GROUP` inner nodes, accumulating into the result.

  A group's nodes are one axis of the functions' argument (one activation op
  per group instead of one per node: each op costs trace and compile time).
  That axis goes second: XLA:CPU splits a loop's outermost axis between
  threads, and a leading axis of 5 nodes split over two threads as 3 + 2 was
  20-30% slower than separate nodes; second, it runs as fast as they did."""
  values = _evaluator(fns, evaluate)
  dtype = q12.dtype
  xs, ws = _rule(deg, dtype)
  scale1, slope, scale2 = _geometry(q12, q11, q22)
  group = min(deg, INNER_GROUP)
  groups = -(-deg // group)
  # The last group is padded with zero-weight copies of the last node.
  pad = groups * group - deg
  ys = np.concatenate([xs, np.full(pad, xs[-1])]).reshape(groups, group)
  wy = np.concatenate([ws, np.zeros(pad, ws.dtype)]).reshape(groups, group)
  # One row per iteration, read with the loop index: nothing in the body is
  # loop-invariant, so XLA hoists no covariance-sized products out of it.
  outer_x = tf.constant(np.repeat(xs, groups))
  outer_w = tf.constant(np.repeat(ws, groups))
  inner_y = tf.constant(np.tile(ys, (deg, 1)))
  inner_w = tf.constant(np.tile(wy, (deg, 1)))
  shape = _out_shape(q12, q11, q22)
  # The group axis goes after the covariances' first axis (`slope` and
  # `scale2` have their rank, `expectations` checks the variances' ranks).
  rank = shape.rank
  axis = min(1, rank)
  node_shape = [1] * axis + [group] + [1] * (rank - axis)

  def body(step, *totals):
    x = outer_x[step]
    y = tf.reshape(inner_y[step], node_shape)
    w = tf.reshape(inner_w[step], node_shape)
    z2 = tf.expand_dims(slope * x, axis) + tf.expand_dims(scale2, axis) * y
    inner = [tf.reduce_sum(w * v, axis=axis) for v in values(z2)]
    f1s = values(scale1 * x)
    return (step + 1,) + tuple(t + outer_w[step] * f1 * s
                               for t, f1, s in zip(totals, f1s, inner))

  zeros = tuple(tf.zeros(shape, dtype) for _ in fns)
  steps = deg * groups
  out = tf.while_loop(lambda step, *_: step < steps, body,
                      (tf.constant(0),) + zeros, maximum_iterations=steps)
  return [t / np.pi for t in out[1:]]


def _captures_nothing(fn, dtype) -> bool:
  """Whether `fn` computes from its argument alone (no captured tensors)."""
  try:
    concrete = tf.function(fn, autograph=False).get_concrete_function(
        tf.TensorSpec([None], dtype))
  except Exception:  # pylint: disable=broad-except
    return False     # cannot tell: keep the differentiable form
  return not concrete.captured_inputs


def expectations(fns, q12, q11, q22, deg: int, evaluate=None):
  """``E[f(z1) f(z2)]`` for each `f` in `fns` by `deg`² Gauss–Hermite nodes.

  Memory is a few copies of the broadcast covariance whatever `deg`; the
  result is differentiable to any order in `q12`, `q11`, `q22` (and in what
  the functions capture).

  Args:
    fns: sequence of elementwise functions of a tensor (broadcasting
      TensorFlow ops).
    q12: covariances, float32 or float64, any shape.
    q11, q22: variances of z1 and z2, broadcasting against `q12` (rank at
      most that of `q12`).
    deg: nodes per dimension (>= 1).
    evaluate: optional function of a tensor `z` returning the list
      ``[f(z) for f in fns]``, computed together, e.g. an activation and its
      derivative from one `tf.GradientTape` (one activation op per node
      instead of two; XLA merges the duplicates at run time, but each op in
      the graph still costs trace and compile time). It must compute from
      its argument alone, as `fns` do.

  Returns:
    A list with one tensor per function, of the broadcast shape of the three
    inputs and their dtype.

  Example:
    >>> import tensorflow as tf
    >>> q = tf.constant([[1., 0.5], [0.5, 1.]], tf.float64)
    >>> ones = tf.ones_like(q)
    >>> e, = expectations([lambda z: z * z], q, ones, ones, 5)  # 1 + 2 q12²
    >>> e.numpy().round(6).tolist()
    [[3.0, 1.5], [1.5, 3.0]]
  """
  fns = tuple(fns)
  for name, q in (('q11', q11), ('q22', q22)):
    if q.shape.rank > q12.shape.rank:
      raise ValueError(
          f'`{name}` must have rank at most that of `q12` ({q12.shape}), '
          f'got shape {q.shape}.')
  if not all(_captures_nothing(f, q12.dtype) for f in fns):
    return reference_expectations(fns, q12, q11, q22, deg, evaluate)

  @tf.custom_gradient
  def run(q12, q11, q22):
    out = _looped(fns, q12, q11, q22, deg, evaluate)

    def grad(*dys):
      dys = [tf.zeros_like(o) if d is None else d for o, d in zip(out, dys)]
      with tf.GradientTape() as tape:
        tape.watch([q12, q11, q22])
        ref = reference_expectations(fns, q12, q11, q22, deg, evaluate)
      return tape.gradient(ref, [q12, q11, q22], output_gradients=dys,
                           unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return out, grad

  return list(run(q12, q11, q22))
