"""`ClusterBlocks`: the passes over ``K(X, Z)`` on `tf.distribute` workers.

Each row block of a pass is one closure scheduled by the kernel job's engine,
`nt_gp.distributed.ClusterRunner` (`ParameterServerStrategy` +
`ClusterCoordinator`): the worker evaluates ``K(x_b, Z)`` with the network's
``kernel_fn`` and reduces it at once (e.g. ``K_b^T (K_b U)``, an ``M x k``
matrix), so only the block's inputs and an ``M x k`` result travel. The
coordinator (this process) adds the results in block order, so the sum does
not depend on which worker ran which block. A worker that dies mid-pass
costs only its closures: the coordinator runs them again on another worker
(TensorFlow's fault tolerance, plus `ClusterRunner`'s re-run of results lost
in transfer); the pass, and the solve, go on.

Example (not run as a doctest: connecting makes the process part of the
cluster; `tests/test_solve_cluster.py` runs it in a subprocess):
  >>> from nt_gp.distributed import ClusterRunner, LocalCluster  # doctest: +SKIP
  >>> with LocalCluster(n_workers=2) as cluster:                 # doctest: +SKIP
  ...   runner = ClusterRunner(cluster.spec)
  ...   fit = nt_gp.solve.nystrom_sweep(y, 1e-2, kernel_fn=kernel_fn,
  ...                                   x_train=x, n_centres=5000,
  ...                                   runner=runner)
"""
from typing import Callable

import numpy as np
import tensorflow as tf

from nt_gp.solve.kernel_blocks import FunctionBlocks

__all__ = ['ClusterBlocks']


class _BlockOp:
  """One kind of block closure, in the form `ClusterRunner.imap` takes."""
  names = ('out',)

  def __init__(self, fns, inputs: Callable):
    self._fns = fns
    self._inputs = inputs

  def functions(self):
    return self._fns

  def inputs(self, task):
    return self._inputs(task)


class ClusterBlocks(FunctionBlocks):
  """`FunctionBlocks` whose passes run on a cluster's workers.

  Args:
    runner: a `nt_gp.distributed.ClusterRunner`.
    kernel_fn, x, z, get, batch_size: as for `FunctionBlocks`.
  """

  def __init__(self, runner, kernel_fn, x, z, get='nngp', batch_size=1024):
    super().__init__(kernel_fn, x, z, get, batch_size)
    self.runner = runner
    self._fns = {}
    self._x = tf.constant(self.x)

  def _functions(self, op: str):
    """``(pair_fn(x_block, arg), single_fn(x_block))`` of a pass."""
    if op not in self._fns:
      kernel_fn, get, z = self.kernel_fn, self.get, self.z

      def cross(a):
        return tf.cast(kernel_fn(a, tf.constant(z), get), tf.float64)

      pairs = {
          'gram': lambda a, u: _gram(cross(a), u),
          'transpose_apply': lambda a, v: tf.linalg.matmul(
              cross(a), v, transpose_a=True),
          'apply': lambda a, w: tf.linalg.matmul(cross(a), w),
          'gram_transpose': lambda a, v: _gram_and_transpose(cross(a), v),
          'quad': lambda a, r: _rowsum_of_squares(
              tf.linalg.matmul(cross(a), r)),
      }
      singles = {
          'block': cross,
          'diagonal': lambda a: tf.linalg.diag_part(tf.cast(
              kernel_fn(a, None, get), tf.float64)),
      }
      pair = pairs.get(op, lambda a, b: a)
      single = singles.get(op, lambda a: a)
      self._fns[op] = (tf.function(pair, autograph=False),
                       tf.function(single, autograph=False))
    return self._fns[op]

  def _run(self, op: str, arg_of):
    fns = self._functions(op)

    def inputs(i):
      s = self.slices[i]
      arg = arg_of(i)
      return self._x[s], (None if arg is None else tf.constant(arg))

    for i, values in self.runner.imap(_BlockOp(fns, inputs),
                                      range(len(self.slices))):
      value = np.asarray(values['out'])
      if not np.all(np.isfinite(value)):
        raise ValueError('The kernel has non-finite entries; use float64 '
                         'inputs or inputs of a smaller scale.')
      s = self.slices[i]
      self._done(s.stop - s.start)
      yield i, value

  def gram_apply(self, u):
    out = np.zeros((self.m, u.shape[1]))
    for _, v in self._run('gram', lambda i: u):
      out += v
    return out

  def transpose_apply(self, v):
    out = np.zeros((self.m, v.shape[1]))
    for _, w in self._run('transpose_apply', lambda i: v[self.slices[i]]):
      out += w
    return out

  def gram_and_transpose_apply(self, v):
    out = np.zeros((self.m, self.m + v.shape[1]))
    for _, w in self._run('gram_transpose', lambda i: v[self.slices[i]]):
      out += w
    return out[:, :self.m], out[:, self.m:]

  def apply(self, a):
    out = np.empty((self.n, a.shape[1]))
    for i, w in self._run('apply', lambda i: a):
      out[self.slices[i]] = w
    return out

  def quad(self, r):
    out = np.empty(self.n)
    for i, w in self._run('quad', lambda i: r):
      out[self.slices[i]] = w
    return out

  def diagonal(self):
    out = np.empty(self.n)
    for i, w in self._run('diagonal', lambda i: None):
      out[self.slices[i]] = w
    return out

  def dense(self):
    out = np.empty((self.n, self.m))
    for i, w in self._run('block', lambda i: None):
      out[self.slices[i]] = w
    return out


def _gram(kb, u):
  return tf.linalg.matmul(kb, tf.linalg.matmul(kb, u), transpose_a=True)


def _gram_and_transpose(kb, v):
  """``K_b^T [K_b, v]``: ``K_b^T K_b`` and ``K_b^T v`` side by side."""
  return tf.linalg.matmul(kb, tf.concat([kb, v], axis=1), transpose_a=True)


def _rowsum_of_squares(p):
  return tf.reduce_sum(p * p, axis=1)
