"""Regenerates tests/golden/image_resize_apply.npz with neural-tangents 0.6.5.

Records, for the cases below, the outputs of neural-tangents'
`stax.ImageResize(...)` `apply_fn` (i.e. `jax.image.resize`) and the 1-D
resize matrices and nearest-neighbour indices that `jax.image.resize` uses,
so that tests can compare `nt_gp.stax.ImageResize` without importing JAX.

Usage (in the reference env, see tools/reference_env.sh):
  $NT_REFERENCE_PYTHON tools/make_golden_resize_apply.py
"""
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / 'tests' / 'golden' / 'image_resize_apply.npz'

# name, input shape, dtype, output `shape` (-1 keeps an axis), method, antialias
CASES = [
    ('up_linear', (2, 6, 5, 3), 'float64', (-1, 9, 8, -1), 'linear', True),
    ('down_linear_aa', (2, 6, 5, 3), 'float64', (-1, 4, 2, -1), 'linear',
     True),
    ('down_linear_no_aa', (2, 6, 5, 3), 'float64', (-1, 4, 2, -1), 'bilinear',
     False),
    ('mixed_triangle', (2, 6, 5, 3), 'float64', (-1, 10, 3, -1), 'triangle',
     True),
    ('nearest_2d', (2, 6, 5, 3), 'float64', (-1, 11, 2, -1), 'nearest', True),
    ('nearest_1d_down', (3, 13, 2), 'float64', (-1, 5, -1), 'nearest', True),
    ('cubic', (2, 6, 5, 3), 'float64', (-1, 8, 3, -1), 'cubic', True),
    ('cubic_no_aa', (2, 6, 5, 3), 'float64', (-1, 3, 8, -1), 'bicubic', False),
    ('lanczos3', (2, 6, 5, 3), 'float64', (-1, 3, 9, -1), 'lanczos3', True),
    ('lanczos5', (2, 6, 5, 3), 'float64', (-1, 10, 4, -1), 'lanczos5', True),
    ('batch_and_channel', (3, 6, 5, 4), 'float64', (5, -1, 7, 2), 'linear',
     True),
    ('same_size', (2, 6, 5, 3), 'float64', (-1, 6, 5, -1), 'linear', True),
    ('trilinear_3d', (2, 4, 3, 5, 2), 'float64', (-1, 7, 2, 5, -1),
     'trilinear', True),
    ('up_linear_f32', (2, 6, 5, 3), 'float32', (-1, 9, 4, -1), 'linear', True),
    ('nearest_f32', (2, 6, 5, 3), 'float32', (-1, 4, 9, -1), 'nearest', True),
]

# 1-D resize matrices: method, antialias, (m, n) pairs.
MATRIX_SIZES = [(1, 3), (2, 5), (3, 7), (5, 2), (7, 3), (8, 5), (9, 4),
                (10, 10), (16, 3), (4, 16)]
MATRIX_METHODS = [('linear', True), ('linear', False), ('cubic', True),
                  ('cubic', False), ('lanczos3', True), ('lanczos5', False)]
# Nearest-neighbour indices for all m, n up to this size; `nearest/{m}` holds
# the indices for n = 1, 2, ..., NEAREST_MAX one after the other.
NEAREST_MAX = 40
# ... and for these larger (m, n) pairs (`nearest/{m}_{n}`).
NEAREST_PAIRS = [(224, 32), (32, 224), (100, 33), (33, 100), (512, 97),
                 (97, 512), (1000, 3), (3, 1000), (255, 256), (256, 255),
                 (61, 1024), (999, 1000)]


def case_input(name, shape, dtype):
  rng = np.random.RandomState(sum(map(ord, name)))
  return rng.randn(*shape).astype(dtype)


def main():
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_enable_x64', True)
  from neural_tangents import stax  # pylint: disable=g-import-not-at-top

  out = {}
  for name, shape, dtype, target, method, antialias in CASES:
    x = case_input(name, shape, dtype)
    _, apply_fn, _ = stax.ImageResize(target, method, antialias=antialias)
    y = np.asarray(apply_fn((), x))
    assert y.dtype == x.dtype, (name, y.dtype)
    out[f'{name}/x'] = x
    out[f'{name}/y'] = y
  for method, antialias in MATRIX_METHODS:
    for m, n in MATRIX_SIZES:
      eye = np.eye(m)
      r = np.asarray(jax.image.resize(eye, (n, m), method,
                                      antialias=antialias))
      out[f'matrix/{method}/{int(antialias)}/{m}_{n}'] = r
  for m in range(1, NEAREST_MAX + 1):
    src = np.arange(m, dtype=np.float64)
    out[f'nearest/{m}'] = np.concatenate([
        np.asarray(jax.image.resize(src, (n,), 'nearest')).astype(np.int32)
        for n in range(1, NEAREST_MAX + 1)])
  for m, n in NEAREST_PAIRS:
    src = np.arange(m, dtype=np.float64)
    out[f'nearest/{m}_{n}'] = np.asarray(
        jax.image.resize(src, (n,), 'nearest')).astype(np.int32)
  OUT.parent.mkdir(parents=True, exist_ok=True)
  np.savez_compressed(OUT, **out)
  print(f'{OUT}: {len(out)} arrays')


if __name__ == '__main__':
  sys.exit(main())
