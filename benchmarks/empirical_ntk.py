"""Empirical NTK of a small ResNet-style CNN: nt_gp (Keras model) vs
neural-tangents (`stax` network), each implementation in its own process.

Usage:
  python benchmarks/empirical_ntk.py [--n 64] [--size 32] [--width 16]
                                     [--blocks 1] [--dtype float32]
                                     [--out docs/benchmarks/empirical_ntk.md]

The full kernel (`trace_axes=()`, shape `(N, N, 10, 10)`) of N images of
size x size x 3 with `vmap_axes=0`. Network: Conv(width, 3x3, SAME) - ReLU -
`blocks` residual blocks [Conv-ReLU-Conv + identity, ReLU] - AvgPool(2x2) -
GlobalAvgPool - Dense(10); the same architecture as a Keras 3 model (for
nt_gp) and as `neural_tangents.stax` layers (for neural-tangents, run with the
python of tools/reference_env.sh or $NT_REFERENCE_PYTHON). For each
implementation a fresh process reports the first call (trace/compile), the
median of 3 further calls, and the peak resident memory (`VmHWM`, see
`machine.peak_rss_bytes`). Prints the ratio best nt_gp / best
neural-tangents and which implementation nt_gp's AUTO picks.
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))
from report import DOCS, Report  # pylint: disable=g-import-not-at-top,wrong-import-position

NAMES = {0: 'AUTO', 1: 'JACOBIAN_CONTRACTION', 2: 'NTK_VECTOR_PRODUCTS',
         3: 'STRUCTURED_DERIVATIVES'}


def _peak_rss_gb():
  from machine import peak_rss_bytes  # pylint: disable=g-import-not-at-top
  return peak_rss_bytes() / 2 ** 30


def _keras_model(cfg):
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  layers = keras.layers
  inp = keras.Input((cfg['size'], cfg['size'], 3), dtype=cfg['dtype'])
  h = layers.Conv2D(cfg['width'], 3, padding='same', dtype=cfg['dtype'])(inp)
  h = layers.ReLU()(h)
  for _ in range(cfg['blocks']):
    r = layers.Conv2D(cfg['width'], 3, padding='same', activation='relu',
                      dtype=cfg['dtype'])(h)
    r = layers.Conv2D(cfg['width'], 3, padding='same', dtype=cfg['dtype'])(r)
    h = layers.ReLU()(layers.Add()([h, r]))
  h = layers.AveragePooling2D(2)(h)
  h = layers.GlobalAveragePooling2D()(h)
  out = layers.Dense(10, dtype=cfg['dtype'])(h)
  return keras.Model(inp, out)


def _stax_net(stax, cfg):
  w = cfg['width']
  conv = lambda: stax.Conv(w, (3, 3), padding='SAME', W_std=1.4, b_std=0.1)
  block = stax.serial(
      stax.FanOut(2),
      stax.parallel(stax.serial(conv(), stax.Relu(), conv()), stax.Identity()),
      stax.FanInSum(), stax.Relu())
  return stax.serial(conv(), stax.Relu(), *[block] * cfg['blocks'],
                     stax.AvgPool((2, 2)), stax.GlobalAvgPool(),
                     stax.Dense(10, 1.4, 0.1))


def worker(lib, impl, cfg):
  """Runs one implementation in this process; prints a JSON line."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  x = np.random.RandomState(0).randn(cfg['n'], cfg['size'], cfg['size'],
                                     3).astype(cfg['dtype'])
  info = {}
  if lib == 'neural_tangents':
    import jax  # pylint: disable=g-import-not-at-top
    jax.config.update('jax_enable_x64', cfg['dtype'] == 'float64')
    import neural_tangents as nt  # pylint: disable=g-import-not-at-top
    from neural_tangents import stax  # pylint: disable=g-import-not-at-top
    init_fn, apply_fn, _ = _stax_net(stax, cfg)
    _, params = init_fn(jax.random.PRNGKey(0), x.shape)
    fn = jax.jit(nt.empirical_ntk_fn(apply_fn, (), (), 0, impl))
    x = jax.numpy.asarray(x)
    run = lambda: fn(x, None, params).block_until_ready()
  else:
    import nt_gp  # pylint: disable=g-import-not-at-top
    model = _keras_model(cfg)
    fn = nt_gp.empirical_ntk_fn(model, (), (), 0, impl)
    run = lambda: fn(x, None).numpy()
  start = time.perf_counter()
  out = run()
  info['first_s'] = time.perf_counter() - start
  times = []
  for _ in range(3):
    start = time.perf_counter()
    out = run()
    times.append(time.perf_counter() - start)
  info['median_s'] = sorted(times)[1]
  info['shape'] = list(out.shape)
  info['peak_rss_gb'] = _peak_rss_gb()
  if lib == 'nt_gp' and impl == 0:
    info['auto_choice'] = int(fn.implementation_used)
    info['auto_timings'] = {int(k): v for k, v in fn.timings.items()}
  print(json.dumps(info))


def reference_python():
  env = os.environ.get('NT_REFERENCE_PYTHON')
  if env:
    return env
  default = pathlib.Path.home() / '.cache' / 'nt-reference' / 'bin' / 'python'
  return str(default) if default.exists() else None


def _spawn(python, lib, impl, cfg):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu')
  proc = subprocess.run([python, str(HERE), '--worker', lib, str(impl),
                         json.dumps(cfg)], capture_output=True, text=True,
                        env=env, timeout=3600)
  if proc.returncode != 0:
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    errors = [l for l in lines if 'Error' in l.split(':')[0]]
    last = (errors or lines or [f'exit {proc.returncode}'])[-1]
    return dict(error=last[:200])
  return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
  if len(sys.argv) > 1 and sys.argv[1] == '--worker':
    worker(sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]))
    return 0
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--n', type=int, default=64)
  parser.add_argument('--size', type=int, default=32)
  parser.add_argument('--width', type=int, default=16)
  parser.add_argument('--blocks', type=int, default=1)
  parser.add_argument('--dtype', default='float32')
  parser.add_argument('--implementations', default='1,2,3,0',
                      help='nt_gp implementations to run (0 = AUTO)')
  parser.add_argument('--reference-implementations', default='1,2,3',
                      help='neural-tangents implementations to run (its '
                      'NTK_VECTOR_PRODUCTS took 114 s and 13 GB at the '
                      'default size on 2 cores)')
  parser.add_argument('--out', default=str(DOCS / 'empirical_ntk.md'),
                      help='Markdown page for the docs ("" to skip)')
  args = parser.parse_args()
  report = Report('Empirical NTK: nt_gp vs neural-tangents 0.6.5',
                  __doc__.split('Usage:')[0].strip() + '\n\n' +
                  __doc__.split('Usage:')[1].split('\n\n', 1)[1].strip())
  print = report.say  # pylint: disable=redefined-builtin
  cfg = dict(n=args.n, size=args.size, width=args.width, blocks=args.blocks,
             dtype=args.dtype)
  print(f'empirical NTK, trace_axes=(), vmap_axes=0: {args.n} images '
        f'{args.size}x{args.size}x3, ResNet-style CNN width {args.width}, '
        f'{args.blocks} residual block(s), {args.dtype}; {os.cpu_count()} '
        f'cores')
  print(f'{"library":16s} {"implementation":24s} {"first call":>11s} '
        f'{"median of 3":>12s} {"peak RSS":>9s}')
  results = {}
  ref = reference_python()
  ints = lambda s: [int(i) for i in s.split(',') if i.strip()]
  runs = [('nt_gp', sys.executable, i) for i in ints(args.implementations)]
  if ref:
    runs += [('neural_tangents', ref, i)
             for i in ints(args.reference_implementations)]
  table = []
  for lib, python, impl in runs:
    r = _spawn(python, lib, impl, cfg)
    results[(lib, impl)] = r
    table.append([lib, NAMES[impl]] + (
        ['failed: ' + r['error'].replace('|', '/'), '', ''] if 'error' in r
        else [f'{r["first_s"]:.2f}', f'{r["median_s"]:.3f}',
              f'{r["peak_rss_gb"]:.2f}']))
    if 'error' in r:
      print(f'{lib:16s} {NAMES[impl]:24s} failed: {r["error"]}')
      continue
    print(f'{lib:16s} {NAMES[impl]:24s} {r["first_s"]:10.2f}s '
          f'{r["median_s"]:11.3f}s {r["peak_rss_gb"]:8.2f}G')

  report.table(['library', 'implementation', 'first call (s)',
                'median of 3 (s)', 'peak RSS (GB)'], table)

  def best(lib):
    ok = {i: r['median_s'] for (l, i), r in results.items()
          if l == lib and i != 0 and 'error' not in r}
    return (min(ok, key=ok.get), min(ok.values())) if ok else (None, None)
  ours_impl, ours = best('nt_gp')
  auto = results.get(('nt_gp', 0), {})
  if 'auto_choice' in auto:
    choice = auto['auto_choice']
    picked = results.get(('nt_gp', choice), {}).get('median_s')
    if choice == ours_impl:
      verdict = 'the fastest'
    elif picked is not None and picked <= 1.05 * ours:
      verdict = (f'tied with the fastest ({picked:.3f}s vs {ours:.3f}s, '
                 f'within 5%)')
    else:
      verdict = 'NOT the fastest'
    print(f'AUTO picked {NAMES[choice]} (one-off timings: ' + ', '.join(
        f'{NAMES[int(k)]} {v:.3f}s' for k, v in auto['auto_timings'].items())
          + f'); in the separate runs the fastest is {NAMES[ours_impl]}: '
          f'the pick is {verdict}')
  theirs_impl, theirs = best('neural_tangents')
  if ours and theirs:
    print(f'best nt_gp ({NAMES[ours_impl]}) {ours:.3f}s / best '
          f'neural-tangents ({NAMES[theirs_impl]}) {theirs:.3f}s = '
          f'{ours / theirs:.2f}')
  elif not ref:
    print('neural-tangents reference env not found (tools/reference_env.sh)')
  report.write(args.out)
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
