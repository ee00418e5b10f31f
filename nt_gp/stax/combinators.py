"""Combinators: `serial`, `parallel`, `repeat`."""
import operator

from nt_gp import validation
from nt_gp.stax import _random
from nt_gp.stax import requirements
from nt_gp.stax.layer import layer
from nt_gp.stax.rule_spec import capabilities, runs
from nt_gp.stax.shapes import make_init_fn, output_shapes

__all__ = ['serial', 'parallel', 'repeat']


def _check_layers(layers, name):
  """Each argument must be an `(init_fn, apply_fn, kernel_fn)` triple."""
  if not layers:
    raise ValueError(f'`{name}` needs at least one layer.')
  for i, l in enumerate(layers):
    if not (isinstance(l, (tuple, list)) and len(l) == 3 and
            all(callable(f) for f in l)):
      hint = (' Pass the layers as separate arguments: '
              f'`{name}(*layers)`.' if isinstance(l, list) else '')
      raise TypeError(f'`{name}` argument {i} is not a layer (an '
                      f'(init_fn, apply_fn, kernel_fn) triple).{hint}')


def _split_rng(kwargs, n):
  rng = kwargs.pop('rng', None)
  return [None] * n if rng is None else _random.split(rng, n)


@layer
def serial(*layers):
  """Composes layers in sequence (like `jax.example_libraries.stax.serial`).

  Args:
    *layers: `(init_fn, apply_fn, kernel_fn)` triples.

  Returns:
    The triple of the composition.

  Example:
    >>> import numpy as np
    >>> from nt_gp import stax
    >>> init_fn, apply_fn, kernel_fn = stax.serial(
    ...     stax.Dense(16), stax.Relu(), stax.Dense(1))
    >>> out_shape, params = init_fn(0, (-1, 3))
    >>> out_shape
    (-1, 1)
    >>> apply_fn(params, np.ones((2, 3), np.float32)).shape
    TensorShape([2, 1])
  """
  _check_layers(layers, 'serial')
  init_fns, apply_fns, kernel_fns = zip(*layers)

  def shape_fn(shape):
    for f in init_fns:
      shape = output_shapes(f, shape)
    return shape

  def params_fn(key, shape):
    params = []
    for f, k in zip(init_fns, _random.split(key, len(init_fns))):
      shape, p = f(k, shape)
      params.append(p)
    return tuple(params)

  def apply_fn(params, inputs, **kwargs):
    rngs = _split_rng(kwargs, len(apply_fns))
    for f, p, r in zip(apply_fns, params, rngs):
      inputs = f(p, inputs, rng=r, **kwargs)
    return inputs

  @requirements.requires(
      **requirements.combine_requirements(kernel_fns, operator.rshift))
  @capabilities(packed=True, sets_shapes=True)
  def rule(k, **kwargs):
    for f in kernel_fns:
      k = f(k, **kwargs)
    return k
  return make_init_fn(shape_fn, params_fn), apply_fn, rule


@layer
def parallel(*layers):
  """Applies layers side by side to a list of inputs, giving a list of outputs.

  Use with `FanOut` and `FanInSum`/`FanInConcat`/`FanInProd`.

  Example:
    >>> from nt_gp import stax
    >>> net = stax.serial(stax.FanOut(2),
    ...                   stax.parallel(stax.Dense(4), stax.Identity()),
    ...                   stax.FanInSum())
  """
  _check_layers(layers, 'parallel')
  init_fns, apply_fns, kernel_fns = zip(*layers)

  def shape_fn(shapes):
    _check_len(shapes)
    if not all(isinstance(s, (list, tuple)) for s in shapes):
      raise ValueError(f'`parallel` of {len(layers)} layers needs a list of '
                       f'{len(layers)} input shapes, got {shapes!r}.')
    return type(shapes)(output_shapes(f, s) for f, s in zip(init_fns, shapes))

  def params_fn(key, shapes):
    keys = _random.split(key, len(init_fns))
    return tuple(f(k, s)[1] for f, k, s in zip(init_fns, keys, shapes))

  def apply_fn(params, inputs, **kwargs):
    _check_len(inputs)
    rngs = _split_rng(kwargs, len(apply_fns))
    return type(inputs)(f(p, x, rng=r, **kwargs) for f, p, x, r in
                        zip(apply_fns, params, inputs, rngs))

  def _check_len(xs):
    if not isinstance(xs, (list, tuple)) or len(xs) != len(layers):
      raise ValueError(f'`parallel` of {len(layers)} layers needs a list of '
                       f'{len(layers)} inputs (e.g. from FanOut({len(layers)}))'
                       f', got {type(xs).__name__}.')

  @requirements.requires(
      **requirements.combine_requirements(kernel_fns, operator.and_))
  @capabilities(packed=True, sets_shapes=True)
  def rule(ks, **kwargs):
    _check_len(ks)
    return type(ks)(f(k, **kwargs) for f, k in zip(kernel_fns, ks))
  return make_init_fn(shape_fn, params_fn), apply_fn, rule


@layer
def repeat(layer, n: int):  # pylint: disable=redefined-outer-name
  """Composes `layer` with itself `n` times (`serial(*[layer] * n)`).

  Each repetition has its own parameters in `init_fn`. The layer must keep
  the shape of its input.

  Args:
    layer: the `(init_fn, apply_fn, kernel_fn)` triple to repeat.
    n: number of repetitions.

  Example:
    >>> from nt_gp import stax
    >>> block = stax.serial(stax.Dense(32), stax.Relu())
    >>> _, _, kernel_fn = stax.serial(stax.repeat(block, 4), stax.Dense(1))
  """
  n = validation.check_int('n', n, lower=0)
  init_fn, apply_fn, kernel_fn = layer

  def shape_fn(shape):
    out = output_shapes(init_fn, shape)
    if n and tuple(out) != tuple(shape):
      raise ValueError(f'`repeat` needs a layer that keeps its input shape; '
                       f'it maps {shape} to {out}. Use `serial` instead.')
    return shape

  def params_fn(key, shape):
    shape_fn(shape)
    return tuple(init_fn(k, shape)[1] for k in _random.split(key, max(n, 1))
                 )[:n]

  def apply(params, inputs, **kwargs):
    rngs = _split_rng(kwargs, max(n, 1))
    for p, r in zip(params, rngs):
      inputs = apply_fn(p, inputs, rng=r, **kwargs)
    return inputs

  @runs(kernel_fn)
  def rule(k, **kwargs):
    for _ in range(n):
      k = kernel_fn(k, **kwargs)
    return k
  return make_init_fn(shape_fn, params_fn), apply, rule
