"""The demo's architectures and a block-by-block kernel computation.

* `myrtle_cnn`: a Myrtle-style CNN for 8x8 images (two 3x3 SAME convolutions
  with ReLU, 2x2 average pool, 3x3 convolution with ReLU, 2x2 average pool,
  3x3 convolution with ReLU, global average pool, Dense readout).
* `mlp`: a fully connected ReLU network.

`blockwise_kernel` computes NNGP and NTK in square blocks of inputs with a
progress bar; all blocks have the same shape, so the compiled graph of the
first block is reused by all others.
"""
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from nt_gp import stax

__all__ = ['myrtle_cnn', 'mlp', 'blockwise_kernel']


def myrtle_cnn(W_std: float = 2 ** 0.5, b_std: float = 0.0,
               channels: int = 64):
  """Myrtle-style CNN for small images: `(init_fn, apply_fn, kernel_fn)`.

  Example:
    >>> import numpy as np
    >>> _, _, kernel_fn = myrtle_cnn()
    >>> kernel_fn(np.ones((2, 8, 8, 1)), None, 'nngp').shape
    TensorShape([2, 2])
  """
  def conv():
    return stax.Conv(channels, (3, 3), padding='SAME', W_std=W_std,
                     b_std=b_std)
  return stax.serial(
      conv(), stax.Relu(), conv(), stax.Relu(),
      stax.AvgPool((2, 2), strides=(2, 2)),
      conv(), stax.Relu(),
      stax.AvgPool((2, 2), strides=(2, 2)),
      conv(), stax.Relu(),
      stax.GlobalAvgPool(), stax.Dense(1, W_std, b_std))


def mlp(depth: int = 3, W_std: float = 1.5, b_std: float = 0.05,
        width: int = 512):
  """`depth` x (Dense, ReLU) and a Dense readout.

  Example:
    >>> import numpy as np
    >>> _, _, kernel_fn = mlp(depth=2)
    >>> kernel_fn(np.ones((3, 5)), None, 'ntk').shape
    TensorShape([3, 3])
  """
  layers = [stax.Dense(width, W_std, b_std), stax.Relu()] * depth
  return stax.serial(*layers, stax.Dense(1, W_std, b_std))


def _pad(x, block):
  n = len(x)
  extra = (-n) % block
  if extra:
    x = np.concatenate([x, np.repeat(x[:1], extra, axis=0)], axis=0)
  return x


def blockwise_kernel(kernel_fn, x1: np.ndarray, x2: Optional[np.ndarray] = None,
                     get: Sequence[str] = ('nngp', 'ntk'), block: int = 100,
                     dtype=np.float32, progress: bool = True,
                     desc: str = 'kernel') -> Dict[str, np.ndarray]:
  """`kernel_fn(x1, x2, get)` computed in `block x block` tiles.

  Inputs are padded to a multiple of `block` (the padding is dropped from
  the result), so every tile has the same shape and the graph compiled for
  the first tile serves all of them. With `x2=None` only the tiles on and
  above the diagonal are computed and mirrored.

  Args:
    kernel_fn: a `stax` kernel function.
    x1, x2: inputs `(N1, ...)` and `(N2, ...)`; `x2=None` means `x1`.
    get: kernel names to compute.
    block: tile size.
    dtype: dtype of the computation (float32 is about twice as fast as
      float64 on CPU); results are returned as float64 numpy arrays.
    progress: show a `tqdm` progress bar (on stderr).
    desc: label of the progress bar.

  Returns:
    A dict `{name: (N1, N2) float64 array}`.

  Example:
    >>> import numpy as np
    >>> _, _, kernel_fn = mlp(depth=1)
    >>> x = np.random.RandomState(0).randn(5, 3)
    >>> k = blockwise_kernel(kernel_fn, x, None, block=2, progress=False,
    ...                      dtype=np.float64)
    >>> ref = kernel_fn(x, None, 'ntk').numpy()
    >>> bool(np.allclose(k['ntk'], ref))
    True
  """
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  get = tuple(get)
  symmetric = x2 is None
  n1 = len(x1)
  n2 = n1 if symmetric else len(x2)
  a = _pad(np.asarray(x1, dtype), block)
  b = a if symmetric else _pad(np.asarray(x2, dtype), block)
  rows, cols = len(a) // block, len(b) // block
  tiles = [(i, j) for i in range(rows) for j in range(cols)
           if not symmetric or j >= i]
  out = {g: np.zeros((len(a), len(b))) for g in get}
  bar = tqdm(tiles, desc=desc, unit='block', disable=not progress,
             leave=True, dynamic_ncols=True)
  for i, j in bar:
    ri = slice(i * block, (i + 1) * block)
    cj = slice(j * block, (j + 1) * block)
    k = kernel_fn(tf.constant(a[ri]), tf.constant(b[cj]), get)
    for g, v in zip(get, k):
      v = np.asarray(v, np.float64)
      out[g][ri, cj] = v
      if symmetric and i != j:
        out[g][cj, ri] = v.T
  bar.close()
  if symmetric:  # float32 diagonal tiles are symmetric only to rounding
    out = {g: 0.5 * (v + v.T) for g, v in out.items()}
  return {g: v[:n1, :n2] for g, v in out.items()}
