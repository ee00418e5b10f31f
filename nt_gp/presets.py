"""Named architectures for `nt-gp kernel`: FCN, CNN with global pooling,
Myrtle-5/7/10 and a Wide ResNet, built from `nt_gp.stax`.

* ``fcn``: ``depth`` x (Dense, ReLU), Dense readout. Inputs ``(N, D)``.
* ``cnn-gap``: ``depth`` x (3x3 SAME Conv, ReLU), GlobalAvgPool, Dense.
  Inputs ``(N, H, W, C)``.
* ``myrtle5``/``myrtle7``/``myrtle10``: the Myrtle CNNs of Shankar et al.
  (2020) as written in neural-tangents' examples: stages of 3x3 convolutions
  and ReLUs separated by 2x2 average pools, then global average pooling and a
  Dense readout. For 32x32 images the global pool equals the original three
  final 2x2 pools; with it, any image size divisible by 4 works.
* ``wrn``: Wide ResNet (neural-tangents' README): Conv, three groups of
  ``block_size`` residual blocks of width ``16k, 32k, 64k`` (the last two with
  stride 2), global average pooling, Dense. Image sizes divisible by 4.

Widths do not change infinite-width kernels; they matter only for
`init_fn`/`apply_fn`. Each preset also states the inputs it takes
(`check_inputs`), and importing this module does not import TensorFlow
(`nt-gp kernel` checks its arguments before starting it).

Example:
  >>> import numpy as np
  >>> from nt_gp import presets
  >>> _, _, kernel_fn = presets.build('fcn', depth=2)
  >>> kernel_fn(np.ones((3, 4)), None, 'nngp').shape
  TensorShape([3, 3])
  >>> presets.identity('fcn', {'depth': 2})['args']['depth']
  2
  >>> presets.check_inputs('myrtle5', (10, 30, 30, 3))
  Traceback (most recent call last):
  ...
  ValueError: preset myrtle5 needs image sides divisible by 4, got (30, 30)
"""
import functools
import importlib
import inspect
import math
from typing import Any, Dict, Sequence

__all__ = ['PRESETS', 'INPUTS', 'build', 'identity', 'defaults',
           'check_inputs']


def _stax():
  """`nt_gp.stax`, imported when a network is built (not at import time)."""
  return importlib.import_module('nt_gp.stax')


def fcn(depth: int = 3, W_std: float = 1.5, b_std: float = 0.05,
        width: int = 512, out_dim: int = 1):
  """Fully connected ReLU network.

  Example:
    >>> _, _, kernel_fn = fcn(depth=1)
  """
  stax = _stax()
  _check_depth(depth)
  layers = [stax.Dense(width, W_std, b_std), stax.Relu()] * depth
  return stax.serial(*layers, stax.Dense(out_dim, W_std, b_std))


def cnn_gap(depth: int = 3, W_std: float = math.sqrt(2.), b_std: float = 0.,
            filter_size: int = 3, channels: int = 64, out_dim: int = 1):
  """CNN with ReLUs, global average pooling and a Dense readout.

  Example:
    >>> _, _, kernel_fn = cnn_gap(depth=1)
  """
  stax = _stax()
  _check_depth(depth)
  conv = functools.partial(stax.Conv, channels, (filter_size, filter_size),
                           padding='SAME', W_std=W_std, b_std=b_std)
  layers = [conv(), stax.Relu()] * depth
  return stax.serial(*layers, stax.GlobalAvgPool(),
                     stax.Dense(out_dim, W_std, b_std))


_MYRTLE_STAGES = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}


def myrtle(depth: int = 5, W_std: float = math.sqrt(2.), b_std: float = 0.,
           channels: int = 128, out_dim: int = 10):
  """Myrtle CNN of depth 5, 7 or 10.

  Example:
    >>> _, _, kernel_fn = myrtle(5)
  """
  stax = _stax()
  if depth not in _MYRTLE_STAGES:
    raise ValueError(f'Myrtle depth must be one of {sorted(_MYRTLE_STAGES)}, '
                     f'got {depth!r}.')
  conv = functools.partial(stax.Conv, channels, (3, 3), padding='SAME',
                           W_std=W_std, b_std=b_std)
  n0, n1, n2 = _MYRTLE_STAGES[depth]
  layers = [conv(), stax.Relu()] * n0
  layers += [stax.AvgPool((2, 2), strides=(2, 2))]
  layers += [conv(), stax.Relu()] * n1
  layers += [stax.AvgPool((2, 2), strides=(2, 2))]
  layers += [conv(), stax.Relu()] * n2
  layers += [stax.GlobalAvgPool(), stax.Dense(out_dim, W_std, b_std)]
  return stax.serial(*layers)


def _wrn_block(channels, strides, channel_mismatch, W_std, b_std):
  stax = _stax()
  conv = functools.partial(stax.Conv, channels, (3, 3), padding='SAME',
                           W_std=W_std, b_std=b_std)
  main = stax.serial(stax.Relu(), conv(strides=strides), stax.Relu(), conv())
  shortcut = (conv(strides=strides) if channel_mismatch else stax.Identity())
  return stax.serial(stax.FanOut(2), stax.parallel(main, shortcut),
                     stax.FanInSum())


def wrn(block_size: int = 1, k: int = 1, W_std: float = 1., b_std: float = 0.,
        out_dim: int = 10):
  """Wide ResNet with `block_size` blocks per group and widening factor `k`.

  Example:
    >>> _, _, kernel_fn = wrn(block_size=1)
  """
  stax = _stax()
  _check_depth(block_size, 'block_size')
  groups = []
  for channels, strides in ((16 * k, (1, 1)), (32 * k, (2, 2)),
                            (64 * k, (2, 2))):
    blocks = [_wrn_block(channels, strides, True, W_std, b_std)]
    blocks += [_wrn_block(channels, (1, 1), False, W_std, b_std)
               for _ in range(block_size - 1)]
    groups.append(stax.serial(*blocks))
  return stax.serial(
      stax.Conv(16, (3, 3), padding='SAME', W_std=W_std, b_std=b_std),
      *groups, stax.GlobalAvgPool(), stax.Dense(out_dim, W_std, b_std))


def _check_depth(depth, name='depth'):
  if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
    raise ValueError(f'`{name}` must be a positive int, got {depth!r}.')


PRESETS = {
    'fcn': fcn,
    'cnn-gap': cnn_gap,
    'myrtle5': functools.partial(myrtle, 5),
    'myrtle7': functools.partial(myrtle, 7),
    'myrtle10': functools.partial(myrtle, 10),
    'wrn': wrn,
}


# The inputs each preset takes: rank, and the divisor of the image sides.
INPUTS = {
    'fcn': dict(rank=2, side_divisor=None),
    'cnn-gap': dict(rank=4, side_divisor=None),
    'myrtle5': dict(rank=4, side_divisor=4),
    'myrtle7': dict(rank=4, side_divisor=4),
    'myrtle10': dict(rank=4, side_divisor=4),
    'wrn': dict(rank=4, side_divisor=4),
}


def check_inputs(name: str, shape: Sequence[int]):
  """Raises ValueError if inputs of `shape` (batch first) do not suit preset
  `name`.

  Example:
    >>> check_inputs('fcn', (100, 8))
    >>> check_inputs('fcn', (100, 8, 8, 3))
    Traceback (most recent call last):
    ...
    ValueError: preset fcn expects inputs of shape (N, features), got (100, 8, 8, 3)
  """
  if name not in INPUTS:
    raise ValueError(f'Unknown architecture preset {name!r}; choose from '
                     f'{sorted(PRESETS)}.')
  spec, shape = INPUTS[name], tuple(shape)
  if len(shape) != spec['rank']:
    want = ('(N, features)' if spec['rank'] == 2 else
            '(N, height, width, channels)')
    raise ValueError(f'preset {name} expects inputs of shape {want}, got '
                     f'{shape}')
  divisor = spec['side_divisor']
  if divisor and any(d % divisor for d in shape[1:3]):
    raise ValueError(f'preset {name} needs image sides divisible by '
                     f'{divisor}, got {shape[1:3]}')


def defaults(name: str) -> Dict[str, Any]:
  """The arguments of preset `name` and their default values.

  Example:
    >>> sorted(defaults('myrtle5'))
    ['W_std', 'b_std', 'channels', 'out_dim']
  """
  if name not in PRESETS:
    raise ValueError(f'Unknown architecture preset {name!r}; choose from '
                     f'{sorted(PRESETS)}.')
  sig = inspect.signature(PRESETS[name])
  return {k: p.default for k, p in sig.parameters.items()
          if p.default is not inspect.Parameter.empty}


def _resolve(name: str, kwargs: Dict[str, Any]) -> Dict[str, Any]:
  args = defaults(name)
  unknown = sorted(set(kwargs) - set(args))
  if unknown:
    raise ValueError(f'Preset {name!r} has no argument(s) {unknown}; its '
                     f'arguments are {sorted(args)}.')
  args.update(kwargs)
  return args


def build(name: str, **kwargs):
  """`(init_fn, apply_fn, kernel_fn)` of preset `name` with `kwargs`.

  Example:
    >>> _, _, kernel_fn = build('cnn-gap', depth=1)
  """
  args = _resolve(name, kwargs)
  return PRESETS[name](**args)


def identity(name: str, kwargs: Dict[str, Any]) -> Dict[str, Any]:
  """The architecture identity recorded in a kernel store.

  Example:
    >>> identity('wrn', {})['preset']
    'wrn'
  """
  return {'preset': name, 'args': _resolve(name, dict(kwargs))}
