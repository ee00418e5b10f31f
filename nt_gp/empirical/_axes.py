"""Output axes of empirical kernels: `trace_axes`, `diagonal_axes` and layout.

An empirical kernel of outputs `f(x1)` (shape `S1`) and `f(x2)` (shape `S2`)
has, for every output axis `i` in order,

* no axis if `i` is in `trace_axes` (the pair is traced and divided by its
  size),
* one axis if `i` is in `diagonal_axes` (only the diagonal of the pair is kept),
* two axes `(S1[i], S2[i])` otherwise,

which is neural-tangents' layout. All contractions are written as `tf.einsum`
strings built here, so every implementation shares one definition of the
layout.
"""
import string
from typing import List, Sequence, Tuple

import numpy as np
import tensorflow as tf

__all__ = ['check_axes_arg', 'canonicalize', 'Layout']

# Letters reserved for output axes; the rest are free for contractions.
_LETTERS = string.ascii_letters


def check_axes_arg(name: str, axes) -> Tuple[int, ...]:
  """Validates `trace_axes`/`diagonal_axes` as given by the user (no ndim yet)."""
  if isinstance(axes, (bool, np.bool_)):
    raise TypeError(f'`{name}` must be an int or a sequence of ints, got '
                    f'{axes!r}.')
  if isinstance(axes, (int, np.integer)):
    return (int(axes),)
  if isinstance(axes, (list, tuple)):
    out = []
    for a in axes:
      if isinstance(a, (bool, np.bool_)) or not isinstance(
          a, (int, np.integer)):
        raise TypeError(f'`{name}` must contain ints, got {axes!r}.')
      out.append(int(a))
    return tuple(out)
  raise TypeError(f'`{name}` must be an int or a sequence of ints, got '
                  f'{axes!r}.')


def canonicalize(trace_axes: Sequence[int], diagonal_axes: Sequence[int],
                 ndim: int) -> Tuple[List[int], List[int]]:
  """Non-negative sorted `(trace, diagonal)` axes for outputs of rank `ndim`.

  Raises:
    ValueError: an axis is out of range or in both lists.
  """
  def canon(name, axes):
    res = set()
    for a in axes:
      if not -ndim <= a < ndim:
        raise ValueError(f'`{name}` contains axis {a}, out of range for '
                         f'outputs of rank {ndim} (valid: {-ndim} .. '
                         f'{ndim - 1}).')
      res.add(a % ndim)
    return sorted(res)
  trace = canon('trace_axes', trace_axes)
  diag = canon('diagonal_axes', diagonal_axes)
  both = sorted(set(trace) & set(diag))
  if both:
    raise ValueError(f'Output axes {both} are in both `trace_axes` and '
                     f'`diagonal_axes`; an axis can be traced or kept '
                     f'diagonal, not both.')
  return trace, diag


class Layout:
  """Letters of the output axes of both batches and of the kernel.

  Attributes:
    lhs: einsum letters of `f(x1)`'s axes.
    rhs: einsum letters of `f(x2)`'s axes (shared with `lhs` on traced and
      diagonal axes).
    out: einsum letters of the kernel.
    trace, diagonal: canonical axes.
    free: letters not used by `lhs`/`rhs` (for parameter and other axes).
  """

  def __init__(self, shape1, shape2, trace_axes, diagonal_axes):
    shape1, shape2 = tuple(shape1), tuple(shape2)
    ndim = len(shape1)
    if len(shape2) != ndim:
      raise ValueError(f'Outputs of `x1` and `x2` must have the same rank, got '
                       f'shapes {shape1} and {shape2}.')
    self.trace, self.diagonal = canonicalize(trace_axes, diagonal_axes, ndim)
    self.shape1, self.shape2 = shape1, shape2
    for i in self.trace + self.diagonal:
      if shape1[i] != shape2[i]:
        kind = 'traced' if i in self.trace else 'diagonal'
        raise ValueError(f'Output axis {i} is {kind} but has different sizes '
                         f'for `x1` and `x2`: {shape1} vs {shape2}.')
    letters = iter(_LETTERS)
    lhs, rhs, out = [], [], []
    for i in range(ndim):
      a = next(letters)
      lhs.append(a)
      if i in self.trace:
        rhs.append(a)
      elif i in self.diagonal:
        rhs.append(a)
        out.append(a)
      else:
        b = next(letters)
        rhs.append(b)
        out += [a, b]
    self.lhs, self.rhs, self.out = ''.join(lhs), ''.join(rhs), ''.join(out)
    self.free = ''.join(letters)
    self.trace_size = int(np.prod([shape1[i] for i in self.trace]))

  @property
  def kernel_shape(self) -> Tuple[int, ...]:
    shape = []
    for i, (a, b) in enumerate(zip(self.shape1, self.shape2)):
      if i in self.trace:
        continue
      shape += [a] if i in self.diagonal else [a, b]
    return tuple(shape)

  def lhs_without(self, axis: int) -> str:
    """`lhs` letters without output axis `axis` (e.g. the vmapped batch axis)."""
    return self.lhs[:axis] + self.lhs[axis + 1:]

  def rhs_without(self, axis: int) -> str:
    return self.rhs[:axis] + self.rhs[axis + 1:]

  def normalize(self, k):
    """Divides by the size of the traced axes (as neural-tangents does)."""
    if self.trace_size == 1:
      return k
    return k / tf.cast(self.trace_size, k.dtype)

  def from_full(self, full):
    """Traces/diagonalises a full kernel of shape `(*shape1, *shape2)`.

    The pairs of axes are interleaved by one transpose; each traced or
    diagonal pair is then flattened and its diagonal gathered (no rank limit,
    unlike `tf.einsum` with repeated indices).
    """
    ndim = len(self.shape1)
    perm = [a for i in range(ndim) for a in (i, ndim + i)]
    k = tf.transpose(full, perm)
    axis = 0
    for i in range(ndim):
      n1, n2 = self.shape1[i], self.shape2[i]
      if i not in self.trace and i not in self.diagonal:
        axis += 2
        continue
      shape = k.shape.as_list()
      k = tf.reshape(k, shape[:axis] + [n1 * n2] + shape[axis + 2:])
      k = tf.gather(k, np.arange(n1) * (n1 + 1), axis=axis)
      if i in self.trace:
        k = tf.reduce_sum(k, axis=axis)
      else:
        axis += 1
    return self.normalize(k)
