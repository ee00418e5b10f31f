"""The elementwise nonlinearity: its layer builder and its covariance map.

A nonlinearity's kernel rule is an elementwise map of each covariance entry
``q12`` given the variances ``q11``, ``q22`` of the two positions/inputs
involved. `map_covariances` applies such a map to `nngp`, `cov1` and `cov2` of
a batch-last `Kernel`, broadcasting the (small) variance tensors instead of
materialising products of them. `elementwise` turns a finite-width function
and such a rule into the functions of a layer:

  @layer
  @supports_masking(remask_kernel=True)   # zero masked covariances after it
  def Exp(a=1., b=1.):
    ...
    return elementwise(fn, 'Exp', rule, packed=True)

Whether masked covariances are zeroed after the layer is per nonlinearity
(as in neural-tangents): a map sending a zero covariance to a non-zero one
(e.g. `Exp`) must remask.
"""

import tensorflow as tf

from nt_gp import _config
from nt_gp.ops import compile as compile_ops
from nt_gp.ops import diagonal
from nt_gp.ops import packing
from nt_gp.stax import compiled_map
from nt_gp.stax.requirements import Diagonal, requires
from nt_gp.stax.rule_spec import capabilities
from nt_gp.stax.shapes import make_init_fn

__all__ = ['elementwise', 'map_covariances', 'pin_self_covariances']


def elementwise(fn, name: str, rule, packed: bool = False):
  """The `(init_fn, apply_fn, rule)` of an elementwise nonlinearity layer.

  Args:
    fn: `x -> activation(x)` on tensors (any shape, float32/float64), or None
      if the layer has no finite-width function (`apply_fn` then raises
      `NotImplementedError`).
    name: layer name used in messages.
    rule: batch-last `Kernel -> Kernel` map (see `map_covariances`), or None
      if the layer has no kernel (`kernel_fn` then raises
      `NotImplementedError`).
    packed: whether `rule` handles symmetric block-packed kernels (true when
      it only uses `map_covariances` and elementwise arithmetic).

  Returns:
    The functions for `layer` (and `supports_masking`): the shape-keeping
    `init_fn`, `apply_fn` and the checked kernel rule, which needs a Gaussian
    input and returns a non-Gaussian kernel.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> @stax.layer
    ... def Double():
    ...   return elementwise(lambda x: 2 * x, 'Double', None)
    >>> _, apply_fn, _ = Double()
    >>> apply_fn((), np.ones(2)).numpy().tolist()
    [2.0, 2.0]
  """
  def apply_fn(params, inputs, **kwargs):
    if fn is None:
      raise NotImplementedError(f'{name} has no finite-width function.')
    return fn(tf.convert_to_tensor(inputs))

  @requires(diagonal_spatial=Diagonal())
  @capabilities(packed=packed)
  def kernel_rule(k, **kwargs):
    if rule is None:
      raise NotImplementedError(
          f'{name} has no infinite-width kernel (no `nngp_fn` was given); use '
          f'`ElementwiseNumerical` or `monte_carlo_kernel_fn` instead.')
    if not k.is_gaussian:
      raise ValueError(
          f'The input to {name} must be Gaussian: put an affine layer (Dense, '
          f'Conv, ...) before the nonlinearity.')
    # Constants the rule creates are its own (see `compile_ops.gradient_mask`).
    with compile_ops.rule_scope():
      return rule(k).replace(is_gaussian=False)
  kernel_rule.__qualname__ = name
  return make_init_fn(lambda shape: shape), apply_fn, kernel_rule


def map_covariances(k, fn, diag_fn=None, factors=None):
  """Applies `fn(q12, q11, q22, ntk) -> (q12', ntk')` to a kernel.

  The maps run as one XLA cluster (fusing their elementwise steps), shared
  by all layers whose maps compute the same thing: hyperparameter tensors
  that `fn`/`diag_fn` capture become arguments of the compiled function (see
  `nt_gp.ops.compile.lift_tensors`). Small self-covariance maps run as
  TensorFlow ops beside it instead (see `nt_gp.stax.compiled_map`).

  Args:
    k: batch-last `Kernel` (packed or not).
    fn: elementwise map; `q11`/`q22` are variance tensors that broadcast
      against `q12`; `ntk` is None for `cov1`/`cov2`.
    diag_fn: optional cheaper map `q11 -> q11'` for variances (used when
      `cov1`/`cov2` hold only variances).
    factors: optional `v -> tuple of tensors` computed from each variance
      tensor outside the XLA cluster (e.g. its square roots: XLA would
      otherwise compile a separate loop for each such factor that several
      loops read, and compile time grows with the loops). `fn` then
      receives `(q11, *factors(q11))` and `(q22, *factors(q22))` as tuples
      instead of `q11`, `q22`. Requires `diag_fn`.

  Returns:
    `k` with `nngp`, `ntk`, `cov1`, `cov2` replaced.
  """
  s, ds, db = k.n_spatial, k.diagonal_spatial, k.diagonal_batch
  v1 = diagonal.variances(k.cov1, db, ds, s)
  v2 = v1 if k.cov2 is None else diagonal.variances(k.cov2, db, ds, s)

  def side(v, i, batch_pair):
    return diagonal.expand_variance(v, i, ds, s, batch_pair)

  # The variance factors are prepared here, outside the XLA cluster: an index
  # lookup fused into the elementwise loop would be executed per entry.
  if k.packed:
    rows, cols = packing.pair_variances(v1, packing.block_count(v1.shape[-1]))
    q11 = diagonal.expand_block_variance(rows, 0, ds, s)
    q22 = diagonal.expand_block_variance(cols, 1, ds, s)
  else:
    q11, q22 = side(v1, 0, True), side(v2, 1, True)

  def self_args(cov, v):
    if cov is None or (db and (ds or s == 0)):
      return None, None
    return side(v, 0, not db), side(v, 1, not db)

  if _config.config.jit_compile is False:
    # TensorFlow's own kernels broadcast two operands against each other only
    # up to 5 dimensions; XLA has no such limit. Without XLA, tile instead.
    q11, q22 = _tile_to(q11, k.nngp), _tile_to(q22, k.nngp)

    def self_args(cov, v, _plain=self_args):  # pylint: disable=function-redefined
      a, b = _plain(cov, v)
      return (None, None) if a is None else (_tile_to(a, cov), _tile_to(b, cov))

  if factors is None:
    var = lambda q: q
  elif diag_fn is None:
    raise ValueError('map_covariances: `factors` needs a `diag_fn`.')
  else:
    var = lambda q: None if q is None else (q,) + tuple(factors(q))
  args = (k.nngp, var(q11), var(q22), k.ntk,
          k.cov1, *map(var, self_args(k.cov1, v1)),
          k.cov2, *map(var, self_args(k.cov2, v2)))
  nngp, ntk, cov1, cov2 = compiled_map.run(fn, diag_fn, args)
  return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2)


def _tile_to(v, target):
  """Tiles `v` (with singleton axes) to the shape of `target`."""
  if target.shape.rank <= 5:
    return v
  return tf.tile(v, [t // d for t, d in zip(target.shape, v.shape)])


def pin_self_covariances(k):
  """Sets the `nngp` entries of an input with itself to the output variances.

  When both batches are the same inputs (`x1_is_x2`), the entries of `nngp`
  whose batch indices (and, with full spatial covariances, all spatial
  indices) coincide are variances, and must equal the variances in `cov1`.
  Computed from the covariance map they can differ by rounding; for maps with
  a square-root singularity at correlation 1 (`Sign`, the step function) that
  rounding error grows to its square root and compounds over layers. This
  replaces them by the variances of `cov1`.

  Args:
    k: batch-last `Kernel` after a nonlinearity.

  Returns:
    `k` with `nngp` patched (unchanged if the batches differ in size).
  """
  nngp = k.nngp
  if nngp.shape[-1] != nngp.shape[-2]:
    return k
  s, ds, db = k.n_spatial, k.diagonal_spatial, k.diagonal_batch
  rank = nngp.shape.rank
  pairs = [] if ds else [(2 * i, 2 * i + 1) for i in range(s)]
  pairs.append((rank - 2, rank - 1))
  self_entry = None
  for a, b in pairs:
    shape = [1] * rank
    shape[a] = shape[b] = nngp.shape[a]
    eye = tf.reshape(tf.eye(nngp.shape[a], dtype=tf.bool), shape)
    self_entry = eye if self_entry is None else tf.logical_and(self_entry, eye)
  self_entry = tf.logical_and(self_entry, tf.cast(k.x1_is_x2, tf.bool))
  var = diagonal.expand_variance(diagonal.variances(k.cov1, db, ds, s), 0, ds,
                                 s, True)
  return k.replace(nngp=tf.where(self_entry, var, nngp))
