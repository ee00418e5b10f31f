"""Shared machinery of elementwise nonlinearities.

A nonlinearity's kernel rule is an elementwise map of each covariance entry
``q12`` given the variances ``q11``, ``q22`` of the two positions/inputs
involved. `map_covariances` applies such a map to `nngp`, `cov1` and `cov2` of
a batch-last `Kernel`, broadcasting the (small) variance tensors instead of
materialising products of them.
"""
import functools

import tensorflow as tf

from nt_gp import _config
from nt_gp.ops import compile as compile_ops
from nt_gp.ops import diagonal
from nt_gp.ops import packing
from nt_gp.stax.layer import layer, make_init_fn
from nt_gp.stax.masking import supports_masking
from nt_gp.stax import rule_spec
from nt_gp.stax.requirements import Diagonal, requires

__all__ = ['elementwise', 'map_covariances']


def map_covariances(k, fn, diag_fn=None, params=(), compile=True):  # pylint: disable=redefined-builtin
  """Applies `fn(q12, q11, q22, ntk, *params) -> (q12', ntk')` to a kernel.

  Args:
    k: batch-last `Kernel` (packed or not).
    fn: elementwise map; `q11`/`q22` are variance tensors that broadcast
      against `q12`; `ntk` is None for `cov1`/`cov2`.
    diag_fn: optional cheaper map `(q11, *params) -> q11'` for variances
      (used when `cov1`/`cov2` hold only variances).
    params: tensors passed on to `fn` and `diag_fn` (e.g. hyperparameters).
    compile: run the maps as one XLA cluster (fuses the elementwise steps).

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

  if not compile or _config.config.jit_compile is False:
    # TensorFlow's own kernels broadcast two operands against each other only
    # up to 5 dimensions; XLA has no such limit. Without XLA, tile instead.
    q11, q22 = _tile_to(q11, k.nngp), _tile_to(q22, k.nngp)

    def self_args(cov, v, _plain=self_args):  # pylint: disable=function-redefined
      a, b = _plain(cov, v)
      return (None, None) if a is None else (_tile_to(a, cov), _tile_to(b, cov))

  args = (k.nngp, q11, q22, k.ntk, k.cov1, *self_args(k.cov1, v1), k.cov2,
          *self_args(k.cov2, v2), tuple(params))
  if compile:
    nngp, ntk, cov1, cov2 = _run_compiled(fn, diag_fn, args)
  else:
    nngp, ntk, cov1, cov2 = _map_impl(fn, diag_fn, *args)
  return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2)


def _tile_to(v, target):
  """Tiles `v` (with singleton axes) to the shape of `target`."""
  if target.shape.rank <= 5:
    return v
  return tf.tile(v, [t // d for t, d in zip(target.shape, v.shape)])


_COMPILED = {}


def _run_compiled(fn, diag_fn, args):
  """Runs `_map_impl` as one XLA cluster shared by equal maps.

  The tensors that `fn`/`diag_fn` capture (hyperparameters of this trace) are
  passed as arguments, so the same nonlinearity in every layer, trace and
  network reuses one compiled function (TensorFlow never frees XLA
  executables; one per closure would grow without bound).
  """
  fn_key, fn_rebuild, fn_tensors = compile_ops.lift_tensors(fn)
  diag_key, diag_rebuild, diag_tensors = compile_ops.lift_tensors(diag_fn)
  if fn_key is None or diag_key is None:
    # Not shareable: compile for this call only (nothing is kept).
    return compile_ops.xla(functools.partial(_map_impl, fn, diag_fn),
                           share=False)(*args)
  key = (fn_key, diag_key)
  if key not in _COMPILED:
    if len(_COMPILED) > 256:
      _COMPILED.clear()
    _COMPILED[key] = compile_ops.xla(functools.partial(
        _lifted_map_impl, fn_rebuild, diag_rebuild, len(fn_tensors)))
  return _COMPILED[key](*args, fn_tensors + diag_tensors)


def _lifted_map_impl(fn_rebuild, diag_rebuild, n_fn, *args):
  *args, lifted = args
  return _map_impl(fn_rebuild(lifted[:n_fn]), diag_rebuild(lifted[n_fn:]),
                   *args)


def _map_impl(fn, diag_fn, nngp, q11, q22, ntk, cov1, c1a, c1b, cov2, c2a,
              c2b, params):
  new_nngp, new_ntk = fn(nngp, q11, q22, ntk, *params)

  def self_map(cov, a, b):
    if cov is None:
      return None
    if a is None:
      if diag_fn is not None:
        return diag_fn(cov, *params)
      return fn(cov, cov, cov, None, *params)[0]
    return fn(cov, a, b, None, *params)[0]

  return (new_nngp, new_ntk, self_map(cov1, c1a, c1b),
          self_map(cov2, c2a, c2b))


def _kernel_rule(name, rule, supports_packed):
  @requires(diagonal_spatial=Diagonal())
  def kernel_rule(k, **kwargs):
    if rule is None:
      raise NotImplementedError(
          f'{name} has no infinite-width kernel (no `nngp_fn` was given); use '
          f'`ElementwiseNumerical` or `monte_carlo_kernel_fn` instead.')
    if not k.is_gaussian:
      raise ValueError(
          f'The input to {name} must be Gaussian: put an affine layer (Dense, '
          f'Conv, ...) before the nonlinearity.')
    return rule(k).replace(is_gaussian=False)
  kernel_rule.__qualname__ = name
  rule_spec.declare(kernel_rule, packed=supports_packed)
  return kernel_rule


def _layer_fns(fn, name, rule, supports_packed):
  def apply_fn(params, inputs, **kwargs):
    if fn is None:
      raise NotImplementedError(f'{name} has no finite-width function.')
    return fn(tf.convert_to_tensor(inputs))
  return (make_init_fn(lambda shape: shape), apply_fn,
          _kernel_rule(name, rule, supports_packed))


@layer
@supports_masking(remask_kernel=False)
def _elementwise(fn, name, rule, supports_packed):
  return _layer_fns(fn, name, rule, supports_packed)


@layer
@supports_masking(remask_kernel=True)
def _elementwise_remasked(fn, name, rule, supports_packed):
  return _layer_fns(fn, name, rule, supports_packed)


def elementwise(fn, name, rule, supports_packed=False, remask_kernel=False):
  """Builds a nonlinearity layer from `fn` (finite width) and its kernel `rule`.

  Args:
    fn: `x -> activation(x)` on tensors (or None).
    name: layer name for messages.
    rule: batch-last `Kernel -> Kernel` map (or None).
    supports_packed: whether `rule` accepts kernels with `packed=True` (true
      when it only uses `map_covariances` and elementwise arithmetic).
    remask_kernel: zero the covariances of masked positions after the layer
      (needed when the map sends a zero covariance to a non-zero one).

  Returns:
    `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> _, apply_fn, _ = elementwise(lambda x: 2 * x, 'Double', None)
    >>> apply_fn((), np.ones(2)).numpy().tolist()
    [2.0, 2.0]
  """
  build = _elementwise_remasked if remask_kernel else _elementwise
  return build(fn, name, rule, supports_packed)
