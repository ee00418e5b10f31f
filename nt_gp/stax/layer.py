"""The `layer` decorator: from a layer's kernel rule to the public triple.

A layer is written as a function returning ``(init_fn, apply_fn, rule)`` (or
``(init_fn, apply_fn, rule, mask_fn)``), where ``rule`` maps a batch-last
`Kernel` to a batch-last `Kernel`. `layer` wraps ``rule`` into the public
``kernel_fn(x1_or_kernel, x2=None, get=None, **kwargs)`` which

* accepts input arrays (numpy or TensorFlow) and builds the input kernel with
  only the entries the network needs (see `requirements`),
* runs the whole propagation as one compiled `tf.function` (no retracing on
  repeated calls with the same shapes and dtype),
* also accepts a `Kernel` (from another `kernel_fn`) to compose networks,
* returns what `get` asks for: one tensor, a namedtuple, or the full `Kernel`.
"""
import functools
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from nt_gp import _config
from nt_gp import validation
from nt_gp.kernel import Kernel, flatten_kernels, is_kernel_tree, map_kernels
from nt_gp.ops import prime
from nt_gp.ops import watching
from nt_gp.stax import buckets
from nt_gp.stax import inputs
from nt_gp.stax import layer_call
from nt_gp.stax import masking
from nt_gp.stax import requirements
from nt_gp.stax import rule_spec
from nt_gp.stax import shapes

__all__ = ['layer', 'canonicalize_get']

_GET_FIELDS = ('nngp', 'ntk', 'cov1', 'cov2', 'x1_is_x2', 'is_gaussian',
               'is_reversed', 'is_input', 'diagonal_batch', 'diagonal_spatial',
               'shape1', 'shape2', 'batch_axis', 'channel_axis', 'mask1',
               'mask2')


# ----------------------------------------------------------------------------
# `get` handling.
# ----------------------------------------------------------------------------
def canonicalize_get(get):
  """`(single, names)` of `kernel_fn`'s `get`: None (the whole `Kernel`), a
  `Kernel` field name, or a tuple of them (see `validation.canonicalize_get`).
  """
  return validation.canonicalize_get(get, _GET_FIELDS)


def _select(out, single: bool, names):
  if names is None:
    return out
  if not isinstance(out, Kernel):
    return type(out)(_select(o, single, names) for o in out)
  for g in names:
    if g == 'ntk' and out.ntk is None:
      raise ValueError('The NTK was not computed for this kernel; it was built '
                       'with `get` excluding "ntk".')
  values = tuple(getattr(out, g) for g in names)
  return values[0] if single else validation.namedtuple_of(
      'AnalyticKernel', names)(*values)


_MAX_SIGNATURES = 64   # compiled propagations kept per kernel_fn


def _input_signature(args):
  """What a `tf.function` would trace on: shapes and dtypes of tensors and
  arrays, the value (else the identity) of anything else."""
  out = []
  for a in tf.nest.flatten(args):
    if tf.is_tensor(a) or isinstance(a, np.ndarray):
      out.append((tuple(a.shape), tf.as_dtype(a.dtype).name))
    else:
      try:
        out.append((type(a).__name__, hash(a), a))
      except TypeError:
        out.append((type(a).__name__, id(a)))
  return tuple(out)


def _covariance_entries(x1, x2, reqs) -> int:
  """Entries of one covariance of the input kernel: N1 * N2 times the
  spatial size, squared unless the network keeps spatial diagonals only (a
  bound for the kernels the layers propagate)."""
  total = 0
  seconds = [None] * len(tf.nest.flatten(x1)) if x2 is None else (
      tf.nest.flatten(x2))
  for a, b in zip(tf.nest.flatten(x1), seconds):
    shape = a.shape
    spatial = int(np.prod(shape[1:-1])) if len(shape) > 2 else 1
    if not reqs.get('diagonal_spatial', True):
      spatial *= spatial
    n2 = shape[0] if b is None else b.shape[0]
    total += int(shape[0]) * int(n2) * spatial
  return total


def _graph_first_call(x1, x2, reqs) -> bool:
  """Whether a new input signature's first call runs without XLA (see
  `nt_gp.config.graph_first_call_max_entries`)."""
  cfg = _config.config
  if not reqs.get('diagonal_spatial', True) and any(
      len(a.shape) > 3 for a in tf.nest.flatten(x1)):
    # Full covariances of images: their derivatives of second order broadcast
    # tensors of rank > 8, which TensorFlow's CPU kernels (unlike XLA) refuse.
    return False
  return (cfg.jit_compile is None and cfg.graph_first_call_max_entries > 0
          and _covariance_entries(x1, x2, reqs)
          <= cfg.graph_first_call_max_entries)


# ----------------------------------------------------------------------------
# The decorator.
# ----------------------------------------------------------------------------
def layer(layer_fn: Callable) -> Callable:
  """Turns a function returning `(init_fn, apply_fn, rule[, mask_fn])` into a
  public layer returning `(init_fn, apply_fn, kernel_fn)`.

  `rule(k, **kwargs)` receives and returns a batch-last `Kernel` (see
  `nt_gp.kernel`: `nngp` is `(*spatial, N1, N2)`); declare its needs with
  `requires` and, on the layer function, masking with `supports_masking`
  (docs/concepts.md, "Writing a layer"). The rule's declarations
  (`nt_gp.stax.rule_spec.RuleSpec`) are read once, here.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> @stax.layer
    ... def Scale(c):
    ...   init_fn = stax.make_init_fn(lambda s: s)
    ...   apply_fn = lambda params, x, **kw: c * x
    ...   @stax.requires(diagonal_spatial=stax.Diagonal())
    ...   def rule(k, **kw):
    ...     return k.scale(c ** 2)
    ...   return init_fn, apply_fn, rule
    >>> _, _, kernel_fn = stax.serial(stax.Dense(1), Scale(2.))
    >>> float(kernel_fn(np.ones((1, 2)), get='nngp')[0, 0])
    4.0
  """
  @functools.wraps(layer_fn)
  def new_layer(*args, **kwargs):
    fns = layer_fn(*args, **kwargs)
    if len(fns) not in (3, 4):
      raise ValueError(f'{layer_fn.__name__} must return 3 or 4 functions.')
    init_fn, apply_fn, rule = fns[:3]
    mask_fn = fns[3] if len(fns) == 4 else None
    kernel_fn = public_kernel_fn(rule, init_fn, name=layer_fn.__name__,
                                 mask_fn=mask_fn)
    layer_call.record(kernel_fn, layer_fn, args, kwargs)
    return init_fn, apply_fn, kernel_fn
  return new_layer


def public_kernel_fn(rule: Callable, init_fn: Callable, name: str,
                     mask_fn: Optional[Callable] = None) -> Callable:
  """Wraps a batch-last kernel `rule` into the public `kernel_fn`.

  What the rule needs and supports is read from its `RuleSpec` (see
  `nt_gp.stax.rule_spec`); the public `kernel_fn` carries the same record.
  """
  spec = rule_spec.spec_of(rule) or rule_spec.RuleSpec()
  remask = (mask_fn is not None if spec.remask_kernel is None
            else spec.remask_kernel)

  def apply_rule(k, **kwargs):
    """Runs the rule on batch-last kernels, with shapes and masks."""
    kernels = flatten_kernels(k)
    if any(x.packed for x in kernels) and (not spec.packed or any(
        x.mask1 is not None or x.mask2 is not None or not x.packed
        for x in kernels)):
      k = map_kernels(Kernel.unpack, k)
    out = rule(k, **kwargs)
    if not spec.sets_shapes:
      out = shapes.with_shapes(
          out,
          shapes.output_shapes(init_fn, shapes.kernel_shapes(k, 'shape1')),
          shapes.output_shapes(init_fn, shapes.kernel_shapes(k, 'shape2')))
    out = masking.propagate_masks(k, out, mask_fn, remask)
    return out

  compiled = {}

  def kernel_fn(x1_or_kernel, x2=None, get=None, *, pattern=None,
                mask_constant=None, diagonal_batch=None, diagonal_spatial=None,
                **kwargs):
    single, names = canonicalize_get(get)
    if is_kernel_tree(x1_or_kernel):
      if x2 is not None:
        raise TypeError('`x2` must be None when a Kernel is given.')
      ks = x1_or_kernel
      layouts = {k.batch_last for k in flatten_kernels(ks)}
      if layouts == {False}:
        out = apply_rule(map_kernels(Kernel.to_batch_last, ks),
                         pattern=pattern, **kwargs)
        out = map_kernels(Kernel.to_batch_first, out)
      else:
        out = apply_rule(ks, pattern=pattern, **kwargs)
      return _select(out, single, names)

    x1, x2 = inputs.prepare_inputs(x1_or_kernel, x2, mask_constant)
    reqs = requirements.fuse_requirements(
        spec.requirements, requirements.DEFAULT_INPUT_REQ,
        diagonal_batch=diagonal_batch, diagonal_spatial=diagonal_spatial,
        mask_constant=mask_constant)
    compute_ntk = names is None or 'ntk' in names
    padded = None
    if pattern is None and not tf.inside_function():
      padded = buckets.bucketed_sizes(x1, x2, reqs,
                                      _covariance_entries(x1, x2, reqs))
      if padded:
        x1 = buckets.pad_batch(x1, padded[2])
        x2 = None if x2 is None else buckets.pad_batch(x2, padded[3])
    reqs_key = tuple(sorted((k, v) for k, v in reqs.items()))
    kw_key = tuple(sorted(kwargs.items()))
    x2_key = (None if x2 is None else
              tuple(x is None for x in tf.nest.flatten(x2)))
    watched = (None if tf.inside_function() else
               watching.watched_mask((x1, x2)))
    key = (compute_ntk, reqs_key, kw_key, x2_key, pattern is None,
           _config.config.allow_tf32, watched,
           _input_signature((x1, x2, pattern)))

    def run(x1, x2, pattern):
      if watched is not None:
        # Only the inputs a tape watches get gradients from the compiled
        # call (see `nt_gp.ops.watching`).
        x1, x2 = watching.stop_unwatched((x1, x2), watched)
      ks = inputs.inputs_to_kernels(x1, x2, reqs, compute_ntk)
      out = apply_rule(ks, pattern=pattern, **kwargs)
      return map_kernels(Kernel.to_batch_first, out)

    _config.apply_tf32_setting()
    if tf.inside_function():
      # Traced into a caller's graph (a user's `tf.function`): the maps'
      # XLA clusters compile on a second thread while the rest is traced.
      with prime.priming():
        out = run(x1, x2, pattern)
    else:
      fn, graph_tier = compiled.pop(key, (None, False))
      fn_is_new = fn is None or graph_tier
      if fn_is_new:
        # One `tf.function` per input signature (the engine needs static
        # shapes), each around its own partial: TensorFlow counts traces per
        # function, and new input sizes are ordinary use (GP test sets,
        # sweeps), not the retracing its warning is about.
        graph_tier = fn is None and _graph_first_call(x1, x2, reqs)
        fn = tf.function(functools.partial(run),
                         jit_compile=_config.config.resolve_jit(),
                         autograph=False)
        if len(compiled) >= _MAX_SIGNATURES:
          compiled.pop(next(iter(compiled)))    # least recently used
      compiled[key] = (fn, graph_tier)
      if graph_tier:
        with _config.compilation(jit_compile=False):
          out = fn(x1, x2, pattern)
      elif fn_is_new and not _config.config.resolve_jit():
        # Its XLA clusters compile on a second thread while it is traced.
        with prime.priming():
          out = fn(x1, x2, pattern)
      else:
        out = fn(x1, x2, pattern)
      if padded:
        n1, n2 = padded[0], padded[0] if x2 is None else padded[1]
        out = map_kernels(
            lambda k: k.slice(slice(0, n1), slice(0, n2)), out)
    from nt_gp import nonfinite  # pylint: disable=g-import-not-at-top
    return nonfinite.check_output(_select(out, single, names), single, names)

  # Inside a user's tf.function, AutoGraph would otherwise convert (and slow
  # down the tracing of) the whole propagation, which has no data-dependent
  # Python control flow.
  kernel_fn = tf.autograph.experimental.do_not_convert(kernel_fn)
  kernel_fn.__name__ = name
  kernel_fn.__doc__ = _KERNEL_FN_DOC
  return rule_spec.declare(kernel_fn, spec=spec)


_KERNEL_FN_DOC = """Infinite-width NNGP/NTK kernels of this layer (or network).

Args:
  x1_or_kernel: `(N1, ...)` input array (numpy or TensorFlow, float32 or
    float64; the output has the same dtype), a list of arrays for networks
    with several inputs, or a `Kernel` from another `kernel_fn`.
  x2: optional `(N2, ...)` second batch with the same non-batch shape;
    `None` means `x2 = x1` (and symmetric results).
  get: `'nngp'`, `'ntk'`, a tuple of names (a namedtuple is returned; any
    `Kernel` field may be named), or `None` for the whole `Kernel`.
  diagonal_batch, diagonal_spatial: override the layout the network would
    otherwise infer (only less demanding layouts the network allows).
  mask_constant: input value marking masked (padded) entries.
  pattern: optional `(pattern1, pattern2)` for graph layers (`Aggregate`).

Returns:
  For a final dense readout, `nngp` and `ntk` have shape `(N1, N2)`; spatial
  outputs have shape `(N1, N2, *spatial)` as in neural-tangents.

Example:
  >>> import numpy as np
  >>> from nt_gp import stax
  >>> _, _, kernel_fn = stax.serial(stax.Dense(8), stax.Relu(), stax.Dense(1))
  >>> k = kernel_fn(np.random.randn(4, 3), None, ('nngp', 'ntk'))
  >>> tuple(k.nngp.shape), tuple(k.ntk.shape)
  ((4, 4), (4, 4))
"""
