"""Parity checks of nt_gp kernels against neural-tangents 0.6.5.

A *suite* is a Python file defining `SUITE`, a list of dicts:
  name:   unique case name
  net:    expression over `stax` (and `np`, `ops`) building the network,
          evaluated with neural-tangents' stax (`ops` = jax.numpy) in the
          reference process and nt_gp's stax (`ops` = tf.math) here
  shape:  shape of `x1` (batch first); `x2` has `n2` (default 3) rows
  get:    quantities to compare (default ('nngp', 'ntk'))
  kernel_kwargs: extra keyword arguments of `kernel_fn` (optional)
  inputs: optional expression over `rng` (np.random.RandomState) and `shape`
          returning x1; x2 uses the same expression with the batch replaced.
  pattern: optional expression over `rng` and `shape` (of x1, then of x2)
          giving the graphs of each batch; `kernel_fn` then gets
          `pattern=(p1, p1)` for x2=None and `pattern=(p1, p2)` otherwise.

The reference runs as a subprocess in the virtualenv of
`tools/reference_env.sh` (never imported here). Golden files in
tests/golden/ are made by `tools/make_golden.py` from the same runner; they
keep the inputs they were computed from. Checks compute nt_gp's kernels from
those stored inputs (`case_inputs`), and compare freshly generated inputs to
them only up to rounding: a case's inputs may involve numpy reductions whose
last bit depends on the CPU's code path, so the two need not be bit-identical
on another machine.
"""
import functools
import hashlib
import os
import pathlib
import runpy
import shutil
import subprocess
import tempfile
import zlib

import numpy as np

from tests.parity import tolerances

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUNNER = pathlib.Path(__file__).with_name('nt_runner.py')
GOLDEN = ROOT / 'tests' / 'golden'

RTOL = tolerances.DEFAULT


def load_suite(suite_file):
  return runpy.run_path(str(suite_file))['SUITE']


def make_inputs(case):
  """Deterministic float64 inputs `(x1, x2)` of a case."""
  rng = np.random.RandomState(zlib.crc32(case['name'].encode()) % (2**31))
  shape = tuple(case['shape'])
  shape2 = (case.get('n2', 3),) + shape[1:]
  expr = case.get('inputs')
  if expr is None:
    return rng.randn(*shape), rng.randn(*shape2)
  env = {'np': np, 'rng': rng}
  return (np.asarray(eval(expr, dict(env, shape=shape)), np.float64),  # pylint: disable=eval-used
          np.asarray(eval(expr, dict(env, shape=shape2)), np.float64))  # pylint: disable=eval-used


def make_patterns(case):
  """Graphs `(p1, p2)` of a case's two batches, or None (see `pattern`)."""
  expr = case.get('pattern')
  if expr is None:
    return None
  rng = np.random.RandomState(
      (zlib.crc32(case['name'].encode()) + 1) % (2**31))
  shape = tuple(case['shape'])
  shape2 = (case.get('n2', 3),) + shape[1:]
  env = {'np': np, 'rng': rng}
  return (np.asarray(eval(expr, dict(env, shape=shape))),  # pylint: disable=eval-used
          np.asarray(eval(expr, dict(env, shape=shape2))))  # pylint: disable=eval-used


def case_kernel_kwargs(case, patterns, tag):
  """`kernel_kwargs` of a case, with its graphs for `tag` 'sym'/'cross'."""
  kwargs = dict(case.get('kernel_kwargs', {}))
  if patterns is not None:
    p1, p2 = patterns
    kwargs['pattern'] = (p1, p1 if tag == 'sym' else p2)
  return kwargs


def suite_inputs(suite):
  out = {}
  for case in suite:
    x1, x2 = make_inputs(case)
    out[f'{case["name"]}/x1'] = x1
    out[f'{case["name"]}/x2'] = x2
    patterns = make_patterns(case)
    if patterns is not None:
      out[f'{case["name"]}/pattern1'] = patterns[0]
      out[f'{case["name"]}/pattern2'] = patterns[1]
  return out


def assert_same_inputs(stored, fresh, what):
  """`stored` (from a golden file) are the inputs `fresh` up to rounding:
  float arrays within 1e-12 relative (+1e-14), others exactly."""
  stored, fresh = np.asarray(stored), np.asarray(fresh)
  assert stored.shape == fresh.shape and stored.dtype == fresh.dtype, (
      f'{what}: the golden file holds {stored.dtype}{stored.shape}, the case '
      f'makes {fresh.dtype}{fresh.shape}; regenerate the golden file.')
  if stored.dtype.kind == 'f':
    np.testing.assert_allclose(
        stored, fresh, rtol=tolerances.INPUTS_RTOL,
        atol=tolerances.INPUTS_ATOL, equal_nan=True,
        err_msg=f'{what}: the golden file was made from other inputs; '
                f'regenerate it (tools/make_golden*.py).')
  else:
    np.testing.assert_array_equal(stored, fresh, err_msg=what)


def case_inputs(case, golden):
  """`(x1, x2, patterns)` of a case as stored in `golden` (patterns None if
  the case has none), checked against freshly generated ones."""
  name = case['name']
  x1, x2 = make_inputs(case)
  assert_same_inputs(golden[f'{name}/x1'], x1, f'{name}/x1')
  assert_same_inputs(golden[f'{name}/x2'], x2, f'{name}/x2')
  patterns = make_patterns(case)
  if patterns is not None:
    for i, p in enumerate(patterns):
      assert_same_inputs(golden[f'{name}/pattern{i + 1}'], p,
                         f'{name}/pattern{i + 1}')
    patterns = (golden[f'{name}/pattern1'], golden[f'{name}/pattern2'])
  return golden[f'{name}/x1'], golden[f'{name}/x2'], patterns


def stored_suite_inputs(suite, golden):
  """`suite_inputs` with every case's arrays taken from `golden` (checked
  by `case_inputs`): a live run then sees exactly the golden's inputs."""
  out = {}
  for case in suite:
    x1, x2, patterns = case_inputs(case, golden)
    out[f'{case["name"]}/x1'], out[f'{case["name"]}/x2'] = x1, x2
    if patterns is not None:
      out[f'{case["name"]}/pattern1'] = patterns[0]
      out[f'{case["name"]}/pattern2'] = patterns[1]
  return out


# What tools/reference_env.sh installs; the live checks refuse anything else.
REFERENCE_VERSIONS = 'neural-tangents==0.6.5 jax==0.4.30 jaxlib==0.4.30'


@functools.lru_cache(maxsize=None)
def reference_versions(python) -> str:
  """'neural-tangents==0.6.5 jax==0.4.30 jaxlib==0.4.30' of the reference
  interpreter (package metadata only: nothing is imported)."""
  code = ('import importlib.metadata as m; print(" ".join(f"{p}==" + '
          'm.version(p) for p in ("neural-tangents", "jax", "jaxlib")))')
  proc = subprocess.run([python, '-c', code], capture_output=True, text=True,
                        timeout=120)
  return proc.stdout.strip() if proc.returncode == 0 else (
      f'(unreadable: {proc.stderr.strip()[-200:]})')


def reference_python():
  """Path of the reference venv's python, or None if it is not built."""
  env = os.environ.get('NT_REFERENCE_PYTHON')
  if env:
    return env
  default = pathlib.Path.home() / '.cache' / 'nt-reference' / 'bin' / 'python'
  return str(default) if default.exists() else None


def run_reference(suite_file, python=None, timeout=1800, inputs=None):
  """Runs the suite under neural-tangents on `inputs` (default: freshly
  generated, `suite_inputs`); returns {key: array}."""
  python = python or reference_python()
  if python is None:
    raise RuntimeError('neural-tangents reference env not found: run '
                       'tools/reference_env.sh or set NT_REFERENCE_PYTHON.')
  if inputs is None:
    inputs = suite_inputs(load_suite(suite_file))
  return run_reference_script(python, RUNNER, inputs, timeout,
                              args=(suite_file,))


def run_reference_script(python, runner, inputs, timeout, args=()):
  """Runs `python runner *args inputs.npz out.npz` (neural-tangents' side)
  in a temporary folder; returns the arrays it wrote to `out.npz`."""
  tmp = tempfile.mkdtemp(prefix='nt_ref_')
  try:
    inp = os.path.join(tmp, 'inputs.npz')
    out = os.path.join(tmp, 'out.npz')
    np.savez(inp, **inputs)
    env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='3')
    proc = subprocess.run([python, str(runner), *map(str, args), inp, out],
                          capture_output=True, text=True, timeout=timeout,
                          env=env)
    if proc.returncode != 0:
      raise RuntimeError(f'reference runner failed:\n{proc.stderr[-4000:]}')
    with np.load(out) as f:
      return {k: f[k] for k in f.files}
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def load_golden(suite_name):
  path = GOLDEN / f'{suite_name}.npz'
  with np.load(path) as f:
    return {k: f[k] for k in f.files}


_OURS_CACHE = {}


def compute_ours(case, dtype=np.float64, inputs=None):
  """nt_gp kernels of a case: {'sym/nngp': ..., 'cross/ntk': ...}.

  Args:
    case: a suite case.
    dtype: the computation dtype.
    inputs: `(x1, x2, patterns)` as from `case_inputs` (default: freshly
      generated).

  Cached per case within a test process (golden and live checks share it).
  """
  if inputs is None:
    inputs = make_inputs(case) + (make_patterns(case),)
  digest = hashlib.sha256()
  for a in _array_leaves(inputs):
    digest.update(np.ascontiguousarray(a).tobytes())
  key = (repr(sorted(case.items())), np.dtype(dtype).name, digest.hexdigest())
  if key not in _OURS_CACHE:
    _OURS_CACHE[key] = _compute_ours(case, dtype, inputs)
  return _OURS_CACHE[key]


def _array_leaves(tree):
  """The arrays of a nested tuple (None skipped)."""
  if tree is None:
    return []
  if isinstance(tree, (tuple, list)):
    return [a for t in tree for a in _array_leaves(t)]
  return [np.asarray(tree)]


def _compute_ours(case, dtype, inputs):
  from nt_gp import stax  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  net = eval(case['net'], {'stax': stax, 'np': np, 'ops': tf.math})  # pylint: disable=eval-used
  kernel_fn = net[2]
  get = tuple(case.get('get', ('nngp', 'ntk')))
  x1, x2, patterns = inputs
  x1, x2 = x1.astype(dtype), x2.astype(dtype)
  out = {}
  for tag, args in (('sym', (x1, None)), ('cross', (x1, x2))):
    kwargs = case_kernel_kwargs(case, patterns, tag)
    # A small input's first call runs as a plain graph, the second compiled
    # (`config.graph_first_call_max_entries`): both are checked, the first
    # against the second within the parity tolerance, the second against
    # the reference by the caller.
    first = kernel_fn(*args, get, **kwargs)
    res = kernel_fn(*args, get, **kwargs)
    for g, v, v1 in zip(get, res, first):
      out[f'{tag}/{g}'] = np.asarray(v)
      rtol = (tolerances.FLOAT32 if np.dtype(dtype) == np.float32 else
              tolerances.DEFAULT)
      both = np.isfinite(v1) & np.isfinite(out[f'{tag}/{g}'])
      assert np.array_equal(np.isfinite(v1), np.isfinite(v)), (
          f'{case["name"]} {tag}/{g}: first and later calls differ in '
          'which entries are finite')
      rel = relative_error(np.asarray(v1)[both], out[f'{tag}/{g}'][both])
      assert rel <= rtol, (f'{case["name"]} {tag}/{g}: the first call '
                           f'differs from later ones by {rel:.3g} > {rtol:g}')
  return out


def relative_error(val, ref) -> float:
  """Largest entrywise relative error of `val` against `ref`, with a floor
  for entries that are ~0 relative to the largest one (those carry no
  relative precision in either library)."""
  val, ref = np.asarray(val), np.asarray(ref)
  scale = max(float(np.max(np.abs(ref))), 1e-300) if ref.size else 1.
  return float(np.max(np.abs(val - ref) / np.maximum(np.abs(ref), 1e-3 * scale),
                      initial=0.))


def worst_error(case, ours, reference):
  """`(relative error, key)` of the worst quantity of a case."""
  name = case['name']
  if f'{name}/error' in reference:
    raise AssertionError(f'reference failed for {name}:\n'
                         f'{reference[f"{name}/error"]}')
  worst = (0., None)
  for key, val in ours.items():
    ref = reference[f'{name}/{key}']
    assert val.shape == ref.shape, (name, key, val.shape, ref.shape)
    worst = max(worst, (relative_error(val, ref), key),
                key=lambda t: t[0])
  return worst


def assert_matches(case, ours, reference, rtol=RTOL):
  """Compares every quantity of a case; reports the worst relative error."""
  rel, key = worst_error(case, ours, reference)
  assert rel <= rtol, (f'{case["name"]} {key}: max relative error {rel:.3g} > '
                       f'{rtol:g}')
