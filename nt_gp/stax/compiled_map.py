"""A covariance map run as one compiled function with a recomputing gradient.

`nt_gp.stax.elementwise.map_covariances` hands its elementwise map here:
`run` compiles it with XLA once per distinct map (hyperparameter tensors
become arguments, so every layer, trace and network with the same map
shares one compiled function), returns its values from a forward-only
version of it (small outputs joined into one complex tensor, small
self-covariance maps as TensorFlow ops beside it), and differentiates it by
recomputing the map in the backward pass instead of keeping its
intermediates alive.
"""
import functools

import tensorflow as tf

from nt_gp import _config
from nt_gp.ops import compile as compile_ops
from nt_gp.ops import forward_only
from nt_gp.ops import prime

__all__ = ['run']

_COMPILED = {}


def run(fn, diag_fn, args):
  """Runs a covariance map as one XLA cluster shared by equal maps.

  The tensors that `fn`/`diag_fn` capture (hyperparameters of this trace) are
  passed as arguments, so the same nonlinearity in every layer, trace and
  network reuses one compiled function (TensorFlow never frees XLA
  executables; one per closure would grow without bound). The gradient of a
  shared map recomputes it (see `_recomputing`).

  Args:
    fn: `(q12, q11, q22, ntk) -> (q12', ntk')`, elementwise (see
      `nt_gp.stax.elementwise.map_covariances`).
    diag_fn: `q -> q'` for variances, or None.
    args: `(nngp, q11, q22, ntk, cov1, c1a, c1b, cov2, c2a, c2b)`: the
      covariances (`nngp`, `ntk` of one shape; `cov1`, `cov2` or None) and,
      after each covariance that needs them, the two variance tensors (or
      tuples with their factors) that broadcast against it; None where
      absent.

  Returns:
    `(nngp', ntk', cov1', cov2')`, each of its input's shape and dtype (None
    where the input was None).

  Example:
    >>> double = lambda q12, q11, q22, ntk: (2. * q12, 3. * ntk)
    >>> nngp, ntk = tf.ones((2, 2)), tf.ones((2, 2))
    >>> out = run(double, None, (nngp, nngp, nngp, ntk) + (None,) * 6)
    >>> [float(t[0, 0]) for t in out[:2]], out[2:]
    ([2.0, 3.0], (None, None))
  """
  fn_key, fn_rebuild, fn_tensors = compile_ops.lift_tensors(fn)
  diag_key, diag_rebuild, diag_tensors = compile_ops.lift_tensors(diag_fn)
  if fn_key is None or diag_key is None:
    # Not shareable (e.g. a closure over variables, which a recomputing
    # gradient would have to differentiate too): compile for this call only
    # (nothing is kept) and differentiate it as it is.
    return compile_ops.xla(functools.partial(_map_impl, fn, diag_fn),
                           share=False)(*args)
  key = (fn_key, diag_key)
  if key not in _COMPILED:
    if len(_COMPILED) > 256:
      _COMPILED.clear()
    impl = functools.partial(_lifted_map_impl, fn_rebuild, diag_rebuild,
                             len(fn_tensors))
    # The forward pass of `_recomputing`, whose gradient recomputes `impl`:
    # traced without the custom gradients inside the map (fewer operations
    # to trace on a first call, see `nt_gp.ops.forward_only`). A function of
    # its own, so no trace of it is ever differentiated directly.
    values = functools.partial(_values_only, impl)
    _COMPILED[key] = (compile_ops.xla(impl, share=False), impl, {},
                      compile_ops.xla(values, share=False))
  forward, impl, vjps, values = _COMPILED[key]
  lifted = fn_tensors + diag_tensors
  # Gradients of the hyperparameter arguments are full reductions over the
  # covariances; the compiled gradient computes only those that can be
  # asked for (not of hyperparameters derived from plain numbers).
  mask = compile_ops.gradient_mask(lifted)
  if mask not in vjps:
    vjps[mask] = compile_ops.xla(functools.partial(_map_vjp, impl, mask),
                                 share=False)
  vjp = vjps[mask]
  if _config.config.jit_compile is False:
    # Without XLA (a small input's first call, or by choice) the map is
    # inlined into the caller's graph and differentiated as it is: a
    # recomputing gradient built there would be called after that setting
    # is gone, and its higher derivatives would reach into a finished graph.
    return forward(*args, lifted)
  return _recomputing(functools.partial(_forward_values, values, impl),
                      functools.partial(_vjp_values, vjp, impl, mask),
                      args + (lifted,), differentiable=forward)


# Largest covariance (entries) whose two outputs leave the compiled map as
# one complex tensor (see `_values_only`).
JOIN_MAX_ENTRIES = 2 ** 22
# Largest self-covariance (`cov1`, `cov2`) whose full map runs as TensorFlow
# ops outside the compiled map (see `_forward_values`).
UNFUSED_SELF_MAX_ENTRIES = 2 ** 16
# Where `cov1` and `cov2` (each followed by its two variance arguments) are
# among `_map_impl`'s arguments.
_SELF_SLOTS = (4, 7)


def _forward_values(values, impl, *args):
  """The values of `impl(*args)`: `values` (the compiled map) for all but
  small self-covariance maps, which run as TensorFlow ops of the caller.

  A self-covariance map with full spatial covariances (`cov1` of an
  attention block or a convolution over a few inputs: the whole nonlinearity
  map, with its own variance arguments) is a loop of its own in the compiled
  map, and XLA:CPU compiles each loop separately: for the attention block's
  ReLU map, whose `cov1` has 16 x 16 x 64 entries, that loop was 0.05-0.06 s
  of every first call and new input size (0.32 -> 0.27 s float64), while
  its TensorFlow ops, unfused, add 0.2-0.3 ms to a call. Larger ones
  stay compiled, where the fused loop saves more than it costs.
  """
  *head, lifted = args
  compiled_args, alone = _split_self_maps(head)
  outs = list(_split_values(values, *compiled_args, lifted))
  for j, only in alone:
    with forward_only.forward_only():
      outs[j] = impl(*only, lifted)[j]
  return tuple(outs)


def _split_self_maps(head):
  """`(compiled, alone)`: `head` (`_map_impl`'s arguments) without the small
  self-covariance maps that run as TensorFlow ops of the caller (small,
  with variance arguments), and for each of those `(j, only)`: its output's
  index and `head` with only its three arguments."""
  compiled, alone = list(head), []
  for i in _SELF_SLOTS:
    if (head[i] is not None and head[i + 1] is not None and
        head[i].shape.is_fully_defined() and
        head[i].shape.num_elements() <= UNFUSED_SELF_MAX_ENTRIES and
        # TensorFlow's own kernels broadcast up to 5 dimensions.
        head[i].shape.rank <= 5):
      only = [None] * len(head)
      only[i:i + 3] = head[i:i + 3]
      compiled[i:i + 3] = [None] * 3
      alone.append((2 + _SELF_SLOTS.index(i), only))
  return compiled, alone


def _vjp_values(vjp, impl, mask, args, dys):
  """`vjp(args, dys)` (the compiled `_map_vjp`) for all but the small
  self-covariance maps that `_forward_values` runs unfused: their gradients
  are TensorFlow ops of the caller too.

  Each of them is a few loops of its own in the compiled gradient (the map's
  derivative in each argument, the zeros and reductions of its variance
  arguments' gradients), and XLA:CPU compiles each loop as a module of its
  own: for the attention block's ReLU map 11 of the gradient's 27.
  """
  *head, lifted = args
  compiled_head, alone = _split_self_maps(head)
  if not alone:
    return vjp(args, dys)
  unfused_outs = {j for j, _ in alone}
  compiled_dys = tuple(None if j in unfused_outs else d
                       for j, d in enumerate(dys))
  parts = [(compiled_head, vjp(tuple(compiled_head) + (lifted,),
                               compiled_dys))]
  # As arguments of the compiled gradient, a tensor passed twice (a
  # self-covariance's two variance arguments, without a second batch) is two
  # arguments, each with its own gradient; `_map_vjp` outside it needs
  # distinct tensors for that too.
  distinct = lambda tree: tf.nest.map_structure(
      lambda t: None if t is None else tf.identity(t), tree)
  for j, only in alone:
    only = distinct(only)
    only_dys = tuple(d if k == j else None for k, d in enumerate(dys))
    parts.append((only, _map_vjp(impl, mask, tuple(only) + (distinct(lifted),),
                                 only_dys)))
  # Each part's gradients: one per present tensor of its arguments (in
  # flattening order), then one per lifted tensor.
  grads, lifted_grads = [[] for _ in head], []
  for part_head, part in parts:
    part = iter(part)
    for k, h in enumerate(part_head):
      grads[k] += [next(part) for t in tf.nest.flatten(h) if t is not None]
    lifted_grads.append(list(part))
  return [g for per_arg in grads for g in per_arg] + [
      tf.add_n(list(g)) for g in zip(*lifted_grads)]


def _values_only(impl, *args):
  """`impl(*args)` without the custom gradients inside it; `nngp'` and
  `ntk'` of the same static shape with at most `JOIN_MAX_ENTRIES` entries
  are returned as one complex tensor, `nngp' + i ntk'`, and None (split by
  `_split_values`).

  XLA:CPU compiles each output's loop separately (about 30 ms each) and
  does not share their common work between them: the arc-cosine map's angle
  polynomial and `sqrt(1 - c²)` were computed in both loops, and a square
  root that two loops read was a loop of its own. One complex output is one
  loop that computes each entry's angle once. For the 1000 x 1000 ReLU map
  that compiled in 0.11 instead of 0.14 s and ran, split afterwards, in
  5.5 instead of 10 ms (float64; float32 0.10 / 0.12 s and 2.6 / 6.7 ms).
  Larger covariances keep two outputs: the complex intermediate would add
  twice a covariance's memory to the peak.
  """
  with forward_only.forward_only():
    nngp, ntk, cov1, cov2 = impl(*args)
  if (ntk is not None and nngp.shape.is_fully_defined() and
      nngp.shape == ntk.shape and nngp.dtype == ntk.dtype and
      nngp.shape.num_elements() <= JOIN_MAX_ENTRIES):
    return tf.complex(nngp, ntk), None, cov1, cov2
  return nngp, ntk, cov1, cov2


def _split_values(values, *args):
  """`values(*args)` with a complex `nngp' + i ntk'` split into its parts."""
  nngp, ntk, cov1, cov2 = values(*args)
  if nngp.dtype.is_complex:
    nngp, ntk = tf.math.real(nngp), tf.math.imag(nngp)
  return nngp, ntk, cov1, cov2


def _recomputing(forward, vjp, args, differentiable=None):
  """`forward(*args)`, whose gradient `vjp(args, output_gradients)` recomputes
  the map from its inputs.

  Differentiating the compiled map directly keeps every intermediate of it
  (cosines, angles, square roots, broadcast products: each the size of the
  covariance) alive from the forward to the backward pass; recomputing them
  in the backward pass keeps only the inputs, which the layers around hold
  anyway. `vjp` is written in differentiable operations of `args`, so higher
  derivatives are those of the map itself. `args` may contain None and
  nested tuples; the outputs may contain None. `differentiable` (default
  `forward`): the same map where `forward` is only for values, for the
  gradient of a map that reads variables.
  """
  differentiable = differentiable or forward
  flat = tf.nest.flatten(args)
  present = [i for i, t in enumerate(flat) if t is not None]

  def rebuild(tensors):
    full = list(flat)
    for i, t in zip(present, tensors):
      full[i] = t
    return tf.nest.pack_sequence_as(args, full)

  shape = {}

  @tf.custom_gradient
  def op(*tensors):
    outs = forward(*rebuild(tensors))
    shape['outs'] = [None if o is None else (o.shape, o.dtype) for o in outs]

    def grad(*dys, variables=None):
      dys = iter(dys)
      full_dys = [None if s is None else next(dys) for s in shape['outs']]
      full_dys = [tf.zeros(s[0], s[1]) if d is None and s is not None else d
                  for d, s in zip(full_dys, shape['outs'])]
      if not variables:
        # Called while TensorFlow traces the backward function: the compiled
        # gradient starts compiling on the priming thread now, while the
        # rest of the backward function is traced (see `nt_gp.ops.prime`).
        with prime.priming():
          return vjp(rebuild(tensors), tuple(full_dys))
      # A map reading variables (a user's function closing over them):
      # recompute it under a tape that also differentiates the variables.
      with tf.GradientTape() as tape:
        tape.watch(tensors)
        again = differentiable(*rebuild(tensors))
      pairs = [(o, d) for o, d in zip(again, full_dys) if o is not None]
      grads = tape.gradient(
          [o for o, _ in pairs], list(tensors) + list(variables),
          output_gradients=[d for _, d in pairs],
          unconnected_gradients=tf.UnconnectedGradients.ZERO)
      return grads[:len(tensors)], grads[len(tensors):]
    return tuple(o for o in outs if o is not None), grad

  outs = iter(op(*[flat[i] for i in present]))
  return tuple(None if s is None else next(outs) for s in shape['outs'])


def _map_vjp(impl, mask, args, dys):
  """The vector-Jacobian product of `impl(*args)` with `dys`, for every
  tensor in `args` (zero where unconnected), recomputing `impl`.

  `args` ends with the tuple of lifted hyperparameter tensors; those whose
  `mask` entry is False get a zero gradient without computing it."""
  *head, lifted = args
  xs = [t for t in tf.nest.flatten(head) if t is not None]
  wanted = [t for t, m in zip(lifted, mask) if m]
  with tf.GradientTape() as tape:
    tape.watch(xs + wanted)
    outs = impl(*args)
  pairs = [(o, d) for o, d in zip(outs, dys) if o is not None]
  grads = tape.gradient(
      [o for o, _ in pairs], xs + wanted,
      output_gradients=[d for _, d in pairs],
      unconnected_gradients=tf.UnconnectedGradients.ZERO)
  wanted_grads = iter(grads[len(xs):])
  return list(grads[:len(xs)]) + [
      next(wanted_grads) if m else tf.zeros_like(t)
      for t, m in zip(lifted, mask)]


def _lifted_map_impl(fn_rebuild, diag_rebuild, n_fn, *args):
  *args, lifted = args
  return _map_impl(fn_rebuild(lifted[:n_fn]), diag_rebuild(lifted[n_fn:]),
                   *args)


def _map_impl(fn, diag_fn, nngp, q11, q22, ntk, cov1, c1a, c1b, cov2, c2a,
              c2b):
  new_nngp, new_ntk = (None, None) if nngp is None else fn(nngp, q11, q22,
                                                          ntk)

  def self_map(cov, a, b):
    if cov is None:
      return None
    if a is None:
      if diag_fn is not None:
        return diag_fn(cov)
      return fn(cov, cov, cov, None)[0]
    return fn(cov, a, b, None)[0]

  return (new_nngp, new_ntk, self_map(cov1, c1a, c1b),
          self_map(cov2, c2a, c2b))
