"""Networks as `apply_fn(params, x, **kwargs)`: plain functions and Keras models.

Everything in `nt_gp.empirical` works on a `Network`: a function of a *flat
list* of parameter tensors plus the structure to rebuild the user's nested
params (tuples, lists, dicts; `None` leaves such as a missing bias are kept in
place and are not parameters).

A Keras 3 model (TensorFlow backend) is turned into
`apply_fn(params, x) = model.stateless_call(params, non_trainable, x)[0]`, with
`params` the list of its trainable variables' values (in
`model.trainable_variables` order).
"""
import inspect
import sys
from typing import Any, Callable, List, Optional, Tuple

import numpy as np
import tensorflow as tf

__all__ = ['Network', 'as_network', 'split_kwargs', 'VmapAxes',
           'canonicalize_vmap_axes', 'check_inputs', 'result_dtype']


def _keras_layer_type():
  keras = sys.modules.get('keras')
  if keras is None:
    return None
  return getattr(keras, 'Layer', None) or keras.layers.Layer


def is_keras_model(f) -> bool:
  layer_type = _keras_layer_type()
  return layer_type is not None and isinstance(f, layer_type)


def _is_tf_keras_model(f) -> bool:
  tf_keras = sys.modules.get('tf_keras')
  return tf_keras is not None and isinstance(f, tf_keras.layers.Layer)


class Network:
  """A network `f(params, x, **kwargs)` and its parameters as a flat list.

  Attributes:
    apply_fn: `apply_fn(params, x, **kwargs)` on nested params.
    keras_model: the Keras model, or None.
  """

  def __init__(self, apply_fn: Callable, keras_model=None):
    self.apply_fn = apply_fn
    self.keras_model = keras_model

  # -- params ---------------------------------------------------------------
  def flatten_params(self, params) -> Tuple[List[tf.Tensor], Callable]:
    """Returns `(tensors, unflatten)` for nested `params`.

    `unflatten(tensors)` rebuilds the nested structure with new tensors
    (None leaves stay None).
    """
    if params is None:
      if self.keras_model is None:
        raise ValueError('`params` is None; pass the parameters of `f` (only '
                         'a Keras model can default to its current weights).')
      params = [v.value for v in self.keras_model.trainable_variables]
    if self.keras_model is not None:
      params = self._check_keras_params(params)
    leaves = tf.nest.flatten(params)
    idx = [i for i, l in enumerate(leaves) if l is not None]
    tensors = []
    for i in idx:
      leaf = leaves[i]
      if isinstance(leaf, tf.Variable):
        leaf = leaf.value() if hasattr(leaf, 'value') else tf.identity(leaf)
      try:
        t = tf.convert_to_tensor(leaf)
      except (TypeError, ValueError) as e:
        raise TypeError(f'`params` leaves must be arrays or tensors, got '
                        f'{type(leaf).__name__}.') from e
      if not t.dtype.is_floating:
        raise TypeError(f'Parameters must be floating point tensors, got a '
                        f'leaf of dtype {t.dtype.name} and shape {t.shape}.')
      tensors.append(t)
    if not tensors:
      raise ValueError('`params` contains no tensors: the kernel would be '
                       'identically zero.')

    def unflatten(new_tensors):
      new_leaves = list(leaves)
      for i, t in zip(idx, new_tensors):
        new_leaves[i] = t
      return tf.nest.pack_sequence_as(params, new_leaves)
    return tensors, unflatten

  def _check_keras_params(self, params):
    variables = self.keras_model.trainable_variables
    if not isinstance(params, (list, tuple)):
      raise TypeError(f'Parameters of a Keras model must be a list of tensors '
                      f'(in `model.trainable_variables` order), got '
                      f'{type(params).__name__}.')
    if len(params) != len(variables):
      raise ValueError(f'The Keras model has {len(variables)} trainable '
                       f'variables but {len(params)} parameters were given.')
    for p, v in zip(params, variables):
      if tuple(np.shape(p)) != tuple(v.shape):
        raise ValueError(f'Parameter of shape {tuple(np.shape(p))} given for '
                         f'variable {v.path} of shape {tuple(v.shape)}.')
    return list(params)

  def __call__(self, params, x, **kwargs):
    return self.apply_fn(params, x, **kwargs)


def as_network(f) -> Network:
  """Wraps `f` (a function or a built Keras 3 model) as a `Network`."""
  if isinstance(f, Network):
    return f
  if _is_tf_keras_model(f) and not is_keras_model(f):
    raise TypeError('Only Keras 3 models are supported (`import keras`), got a '
                    'tf_keras (Keras 2) model.')
  if is_keras_model(f):
    model = f
    if not model.built:
      raise ValueError(
          f'The Keras model {model.name!r} has not been built: call it on a '
          f'batch or give it an `Input` (or call `model.build(input_shape)`) '
          f'so that its weights exist.')
    if not model.trainable_variables:
      raise ValueError(f'The Keras model {model.name!r} has no trainable '
                       f'variables.')

    def apply_fn(params, x, **kwargs):
      non_trainable = [v.value for v in model.non_trainable_variables]
      out, _ = model.stateless_call(list(params), non_trainable, x, **kwargs)
      return out
    return Network(apply_fn, keras_model=model)
  if not callable(f):
    raise TypeError(f'`f` must be a function `f(params, x, **kwargs)` or a '
                    f'Keras model, got {type(f).__name__}.')
  return Network(f)


def accepts_kwarg(fn: Callable, name: str) -> bool:
  """Whether `fn` can be called with the keyword argument `name`."""
  try:
    sig = inspect.signature(fn)
  except (TypeError, ValueError):
    return True
  for p in sig.parameters.values():
    if p.kind == p.VAR_KEYWORD or p.name == name:
      return True
  return False


# -- inputs ---------------------------------------------------------------
def _to_tensor_tree(x, name):
  if x is None:
    raise ValueError(f'`{name}` must not be None.')

  def conv(leaf):
    if leaf is None:
      return None
    try:
      return tf.convert_to_tensor(leaf)
    except (TypeError, ValueError) as e:
      raise TypeError(f'`{name}` must be an array or a nested structure of '
                      f'arrays, got a leaf of type {type(leaf).__name__}.'
                      ) from e
  return tf.nest.map_structure(conv, x)


def check_inputs(x1, x2, in_axes=None):
  """Converts `x1`, `x2` to tensors; checks their non-batch shapes match.

  Args:
    x1, x2: arrays or nested structures of arrays; `x2` may be None.
    in_axes: batch axis of each input leaf (an int or a structure like `x1`);
      None means axis 0.

  Returns:
    `(x1, x2)` as tensors.
  """
  x1 = _to_tensor_tree(x1, 'x1')
  if x2 is None:
    return x1, None
  x2 = _to_tensor_tree(x2, 'x2')
  try:
    tf.nest.assert_same_structure(x1, x2)
  except (ValueError, TypeError) as e:
    raise ValueError(f'`x1` and `x2` must have the same structure: {e}') from e
  leaves1, leaves2 = tf.nest.flatten(x1), tf.nest.flatten(x2)
  axes = _broadcast_axes(in_axes, x1)
  for a, b, ax in zip(leaves1, leaves2, axes):
    s1, s2 = a.shape.as_list(), b.shape.as_list()
    if len(s1) != len(s2):
      raise ValueError(f'`x1` and `x2` must have the same rank, got shapes '
                       f'{tuple(s1)} and {tuple(s2)}.')
    ax = 0 if ax is None or not s1 else ax % len(s1)
    r1 = s1[:ax] + s1[ax + 1:]
    r2 = s2[:ax] + s2[ax + 1:]
    if r1 != r2:
      raise ValueError(f'`x1` and `x2` must have the same shape apart from the '
                       f'batch axis {ax}, got {tuple(s1)} and {tuple(s2)}.')
    if a.dtype != b.dtype:
      raise TypeError(f'`x1` and `x2` must have the same dtype, got '
                      f'{a.dtype.name} and {b.dtype.name}.')
  return x1, x2


def _broadcast_axes(axes, tree):
  n = len(tf.nest.flatten(tree))
  if axes is None or isinstance(axes, (int, np.integer)):
    return [axes] * n
  flat = tf.nest.flatten(axes)
  if len(flat) != n:
    raise ValueError(f'`vmap_axes` structure {axes!r} does not match the '
                     f'inputs ({n} arrays).')
  return flat


def result_dtype(x1, fx_dtype):
  """Kernels follow the floating dtype of the inputs (else of the outputs)."""
  leaves = [l for l in tf.nest.flatten(x1) if l is not None]
  for l in leaves:
    if l.dtype.is_floating:
      return l.dtype
  return fx_dtype


# -- keyword arguments ------------------------------------------------------
def split_kwargs(kwargs, x2_given: bool):
  """Splits `apply_fn` keyword arguments into those for `x1` and `x2`.

  As in neural-tangents: `rng` is used as is for `x1` and folded with 1 for a
  different `x2`; a 2-tuple gives `(value_for_x1, value_for_x2)`; anything
  else is shared.
  """
  kw1, kw2 = {}, {}
  for k, v in kwargs.items():
    if k == 'rng' and v is not None and x2_given:
      if isinstance(v, tuple) and len(v) == 2:
        kw1[k], kw2[k] = v
      else:
        key = tf.cast(tf.convert_to_tensor(v), tf.int64)
        kw1[k] = key
        kw2[k] = tf.random.experimental.stateless_fold_in(key, 1)
    elif isinstance(v, tuple) and len(v) == 2:
      kw1[k], kw2[k] = v
    else:
      kw1[k] = kw2[k] = v
  return kw1, kw2


# -- vmap axes ------------------------------------------------------------
class VmapAxes:
  """Canonical `vmap_axes`: `in_axes` (per input leaf), `out_axes` (per output
  leaf, resolved later) and `kwargs_axes` (dict)."""

  def __init__(self, in_axes, out_axes, kwargs_axes):
    self.in_axes = in_axes
    self.out_axes = out_axes
    self.kwargs_axes = dict(kwargs_axes or {})


def canonicalize_vmap_axes(vmap_axes) -> Optional[VmapAxes]:
  """Parses neural-tangents' `vmap_axes` (None, an int, or a triple)."""
  if vmap_axes is None:
    return None
  if isinstance(vmap_axes, tuple) and len(vmap_axes) == 3:
    in_axes, out_axes, kw_axes = vmap_axes
  else:
    in_axes, out_axes, kw_axes = vmap_axes, vmap_axes, {}
  if kw_axes is None:
    kw_axes = {}
  if not isinstance(kw_axes, dict):
    raise TypeError(f'The kwargs part of `vmap_axes` must be a dict, got '
                    f'{kw_axes!r}.')
  for name, ax in (('in_axes', in_axes), ('out_axes', out_axes)):
    for a in tf.nest.flatten(ax):
      if a is not None and (isinstance(a, bool) or
                            not isinstance(a, (int, np.integer))):
        raise TypeError(f'`vmap_axes` {name} must be ints or None, got '
                        f'{ax!r}.')
  if in_axes is None and out_axes is None:
    return None
  if out_axes is None:
    raise ValueError('`vmap_axes` has input axes but no output axis.')
  return VmapAxes(in_axes, out_axes, kw_axes)


def leaf_axes(axes, tree) -> List[Any]:
  """`axes` (an int, None or a structure like `tree`) as a list per leaf."""
  return _broadcast_axes(axes, tree)
