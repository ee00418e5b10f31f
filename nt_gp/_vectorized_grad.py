"""`tf.vectorized_map` with derivatives of every order.

`tf.vectorized_map` converts the graph of its function into batched
operations, and the conversion drops `tf.custom_gradient`s: differentiating
through it gives the derivative of the forward operations as written, which
for the arc-cosine maps (`nt_gp.ops.arccos`) is zero. `vectorized` therefore
differentiates *before* vectorising: its gradient is the vectorised
vector-Jacobian product of the per-element function, formed with a tape on
the unbatched function (where custom gradients apply), and that gradient is
again a `vectorized` computation, so a second (third, ...) derivative is
formed the same way, one level deeper, only when a tape asks for it.
"""
from typing import Callable, Sequence

import tensorflow as tf

__all__ = ['vectorized']


def vectorized(fn: Callable, batched: Sequence[tf.Tensor],
               shared: Sequence[tf.Tensor] = ()) -> tf.Tensor:
  """`fn` applied to each element along axis 0 of `batched`, vectorised.

  Args:
    fn: `fn(*elements, *shared) -> tensor` for one element of each of
      `batched` (axis 0 removed) and the loop-invariant `shared` tensors.
    batched: float tensors with the same leading size `M`.
    shared: float tensors used by every element (e.g. hyperparameters).

  Returns:
    The stacked outputs, shape `[M] + output shape`. Its derivatives with
    respect to `batched` and `shared`, of any order, are those of `fn`
    (custom gradients inside `fn` included).

  Example:
    >>> import tensorflow as tf
    >>> x = tf.constant([1., 2., 3.], tf.float64)
    >>> w = tf.constant(2., tf.float64)
    >>> with tf.GradientTape() as outer:
    ...   outer.watch(w)
    ...   with tf.GradientTape() as inner:
    ...     inner.watch(w)
    ...     y = tf.reduce_sum(vectorized(lambda xi, wi: wi ** 3 * xi, [x], [w]))
    ...   g = inner.gradient(y, w)           # 3 w² Σx = 72
    >>> float(g), float(outer.gradient(g, w))   # 6 w Σx = 72
    (72.0, 72.0)
  """
  batched, shared = list(batched), list(shared)
  nb = len(batched)

  @tf.custom_gradient
  def op(*args):
    # Local copies: the gradient below refers to them, and is built in the
    # graph that differentiates this one (a tensor of an enclosing graph that
    # was captured here could not be reached from there).
    args = [tf.identity(t) for t in args]
    # Stopped inside: the vectorised graph must not be recorded by outer
    # tapes (its derivative would be wrong, see the module docstring).
    b = [tf.stop_gradient(t) for t in args[:nb]]
    s = [tf.stop_gradient(t) for t in args[nb:]]
    out = tf.vectorized_map(lambda elems: fn(*elems, *s), tuple(b))

    def grad(dy):
      dy = tf.zeros_like(out) if dy is None else dy

      def vjp(*elems_and_shared):
        # Runs inside the vectorised loop body, a graph: symbolic gradients
        # (no tape, so no tape-specific wrapping of the stax graph's
        # conditionals, which could not be vectorised). Shared tensors get a
        # local identity to differentiate with respect to.
        elems = list(elems_and_shared[:nb])
        d = elems_and_shared[nb]
        ts = [tf.identity(t) for t in elems_and_shared[nb + 1:]]
        xs = elems + ts
        grads = tf.gradients(fn(*elems, *ts), xs, grad_ys=d,
                             unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return tf.concat([tf.reshape(g, [-1]) for g in grads], 0)

      # The vector-Jacobian products of all elements, flattened per element
      # and computed by `vectorized` itself (unstopped inputs: outer tapes
      # see how the gradient depends on them).
      flat = vectorized(vjp, list(args[:nb]) + [dy], list(args[nb:]))
      grads, offset = [], 0
      for i, t in enumerate(args):
        size = (t.shape[1:] if i < nb else t.shape).num_elements()
        piece = flat[:, offset:offset + size]
        offset += size
        if i < nb:
          grads.append(tf.reshape(piece, tf.shape(t)))
        else:
          grads.append(tf.reshape(tf.reduce_sum(piece, 0), tf.shape(t)))
      return grads
    return out, grad

  return op(*batched, *shared)
