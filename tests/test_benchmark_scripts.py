"""The benchmark scripts run (at tiny sizes) and write well-formed pages, and
the tables quoted elsewhere (README, scale-out guide) are the pages' own.

The measurements themselves are not tested (timings are never asserted);
these checks keep the scripts working as the library changes.
"""
import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks'))

from report import Report  # pylint: disable=g-import-not-at-top,wrong-import-position


def test_run_one_reports_time_memory_and_checksum():
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / '_run_one.py'), 'nt_gp',
       'myrtle5', 'float32', '4'], capture_output=True, text=True,
      timeout=600, check=True)
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out['shape'] == [4, 16, 16, 3]
  assert len(out['times_s']) == 3 and out['median_s'] > 0
  # Peak memory of this process alone (VmHWM), not the pytest worker's.
  assert 0.1 < out['peak_rss_gb'] < 8
  assert out['ntk_checksum'] > 0 and out['nngp_checksum'] > 0


def test_report_page_has_command_machine_table_and_output(tmp_path):
  r = Report('Title', 'Intro.')
  r.say('line one')
  r.table(['a', 'b'], [[1, 2.5], ['x', 'y']])
  page = tmp_path / 'page.md'
  r.write(page, command='python benchmarks/x.py --n 3')
  text = page.read_text()
  assert text.startswith('# Title\n')
  assert 'Produced by `python benchmarks/x.py --n 3` on ' in text
  assert 'CPU cores visible' in text
  assert '| a | b |\n|---|---|\n| 1 | 2.5 |\n| x | y |' in text
  assert '```text\nline one\n```' in text


def test_run_one_serves_interleaved_calls():
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / '_run_one.py'), 'nt_gp',
       'mlp5', 'float64', '6', '--serve'],
      input='run\nrun\nnew\nnew\ndone\n',
      capture_output=True, text=True, timeout=600, check=True)
  lines = [json.loads(l) for l in proc.stdout.strip().splitlines()]
  assert 'compile_s' in lines[0] and 't' in lines[1] and 't' in lines[2]
  assert 't_new' in lines[3] and 't_new' in lines[4]
  summary = lines[5]
  assert len(summary['times_s']) == 2 and summary['shape'] == [6, 784]
  assert len(summary['new_shape_times_s']) == 2
  assert summary['new_shape_median_s'] > 0
  assert summary['nngp_checksum'] > 0 and summary['ntk_checksum'] > 0


def test_compare_interleaves_and_checks_checksums(tmp_path):
  """A smoke run (8 inputs, 1 call each) writes a page with the checksum
  column; a kernel that differs is a MISMATCH."""
  page = tmp_path / 'kernels.md'
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'compare.py'), 'myrtle5',
       '--dtypes', 'float32', '--n', '4', '--repeats', '1', '--new-shapes',
       '1', '--first-calls', '2', '--out', str(page)], capture_output=True,
      text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  text = page.read_text()
  assert '| checksums |' in text and 'median of 1 calls' in text
  assert '| first-call ratio | new shape (s) | new-shape ratio |' in text
  row = next(l for l in text.splitlines() if l.startswith('| myrtle5 |'))
  assert len(row.strip('|').split('|')) == 15
  assert 'new shape: nt_gp' in text
  # The first call is timed in two fresh processes per library.
  line = next(l for l in text.splitlines() if 'first call: nt_gp' in l)
  each = re.search(r'\(each: nt_gp ([0-9., ]+)[;)]', line)
  assert each and len(each.group(1).split(', ')) == 2, line
  assert 'MISMATCH' not in text
  import compare  # pylint: disable=g-import-not-at-top
  ours = dict(median_s=1., peak_rss_gb=1., nngp_checksum=10.,
              ntk_checksum=20., compile_s=1.)
  same = dict(ours, ntk_checksum=20. * (1 + 1e-9))
  other = dict(ours, ntk_checksum=20.5)
  limits = dict(copy_gbs=1., sgemm_gflops=1., dgemm_gflops=1.)
  r = Report('x')
  assert compare._print_row(r, 'w', 'float64', ours, same, limits)[10]  # pylint: disable=protected-access
  assert compare._print_row(r, 'w', 'float64', ours, same, limits)[  # pylint: disable=protected-access
      10].startswith('agree')
  assert compare._print_row(r, 'w', 'float32', ours, other, limits)[  # pylint: disable=protected-access
      10].startswith('MISMATCH')


@pytest.mark.slow
def test_device_script_runs_on_the_cpu(tmp_path):
  """`device.py --size tiny` without a GPU: parity against the goldens,
  timings, and `nt-gp kernel --devices -1` on two virtual CPU devices equal
  to `--devices 1`; the page goes to --out, never to the docs."""
  page = tmp_path / 'device.md'
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'device.py'), '--size',
       'tiny', '--out', str(page)], capture_output=True, text=True,
      timeout=600, env=env)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  text = page.read_text()
  assert 'CPU (2 logical devices), no GPU' in text
  parity_rows = [l for l in text.splitlines()
                 if l.startswith(('| fc/', '| conv/', '| attention/'))]
  assert len(parity_rows) == 6 and all('| ok |' in l for l in parity_rows)
  for name in ('mlp5', 'cnn3_flatten', 'myrtle5', 'cnn21_gap',
               'cnn21_flatten'):
    assert sum(l.startswith(f'| {name} |') for l in text.splitlines()) == 2
  cli = next(l for l in text.splitlines() if l.startswith('| fcn |'))
  assert cli.endswith('| ok |') and '| 2 |' in cli
  assert 'TF32 allowed: False' in text


def _round_to_tf32(a):
  """float32 values rounded to TensorFloat-32's 10 mantissa bits."""
  bits = np.asarray(a, np.float32).copy().view(np.int32)
  bits += 0x1000
  bits &= ~0x1FFF
  return bits.view(np.float32).astype(np.float64)


@pytest.mark.parametrize('suite,name', [
    ('fc', 'relu_mlp'), ('conv', 'conv2d_same_gap'),
    ('attention', 'transformer_1d_gap')])
def test_device_float32_parity_would_catch_tf32(suite, name):
  """device.py's float32 tolerance passes float32 and fails TF32: rounding
  only the inputs to TF32 (then computing in float64) already exceeds it."""
  import device  # pylint: disable=g-import-not-at-top
  from tests.parity import harness  # pylint: disable=g-import-not-at-top
  case, golden = device.parity_case(suite, name)
  x1, x2, patterns = harness.case_inputs(case, golden)
  _, rel32 = device.case_errors(case, golden, (x1, x2, patterns), np.float32)
  assert rel32 <= device.FLOAT32_RTOL
  assert _round_to_tf32(1 + 2. ** -12) == 1.  # 10 bits: 1 + 2^-10 is next
  _, rel_tf32 = device.case_errors(
      case, golden, (_round_to_tf32(x1), _round_to_tf32(x2), patterns),
      np.float64)
  assert rel_tf32 > 2 * device.FLOAT32_RTOL


def test_device_script_refuses_tiny_runs_into_the_docs():
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'device.py'), '--size',
       'tiny', '--out', str(ROOT / 'docs' / 'benchmarks' / 'gpu.md')],
      capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and '--size full' in proc.stderr


def test_device_script_require_gpu_stops_without_one():
  """`--require-gpu` on a machine where TensorFlow sees no GPU: exit status
  2 before any work, one `error:` line last, naming what a GPU would need
  (TensorFlow's own CUDA build versions), and no report."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, CUDA_VISIBLE_DEVICES='')
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'device.py'),
       '--require-gpu'], capture_output=True, text=True, timeout=120,
      env=env)
  assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: TensorFlow sees no GPU'), last
  info = tf.sysconfig.get_build_info()
  if info.get('is_cuda_build'):
    assert f'CUDA {info["cuda_version"]}' in last
    assert f'tensorflow[and-cuda]=={tf.__version__}' in last
  assert 'Parity' not in proc.stdout


def test_compare_refuses_smoke_runs_into_the_docs():
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'compare.py'), 'mlp5',
       '--repeats', '2'], capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2 and 'at least 5 repeats' in proc.stderr


def test_quoted_tables_match_their_pages():
  """README's performance table is docs/benchmarks/kernels.md's, the
  scale-out guide's table is docs/benchmarks/scale_out.md's: every block
  that quotes a benchmark page equals what the page says now."""
  import report  # pylint: disable=g-import-not-at-top
  quoted = {}
  for path in report.quoting_files():
    for page, columns, body in report.quoted_blocks(path.read_text()):
      want = report.quote((ROOT / page).read_text(), columns)
      assert body == want, (f'{path.relative_to(ROOT)} quotes an old table '
                            f'of {page}; rerun the benchmark script, or '
                            f'report.refresh_quotes')
      quoted.setdefault(page, []).append(path.relative_to(ROOT).as_posix())
  assert 'README.md' in quoted.get('docs/benchmarks/kernels.md', [])
  assert 'docs/scale_out.md' in quoted.get('docs/benchmarks/scale_out.md', [])


def test_report_write_refreshes_quotes(tmp_path, monkeypatch):
  import report  # pylint: disable=g-import-not-at-top
  docs = tmp_path / 'docs'
  (docs / 'benchmarks').mkdir(parents=True)
  (tmp_path / 'README.md').write_text(
      'x\n<!-- table from docs/benchmarks/b.md: b -->\nold\n'
      '<!-- end of table -->\ny\n')
  monkeypatch.setattr(report, 'ROOT', tmp_path)
  monkeypatch.setattr(report, 'DOCS', docs / 'benchmarks')
  r = Report('B')
  r.table(['a', 'b'], [[1, 2]])
  r.write(docs / 'benchmarks' / 'b.md', command='python b.py', machine='m')
  text = (tmp_path / 'README.md').read_text()
  assert text.startswith('x\n<!-- table from docs/benchmarks/b.md: b -->\n'
                         'Produced by `python b.py` on m, ')
  assert '| b |\n|---|\n| 2 |\n<!-- end of table -->\ny\n' in text


def test_numerical_memory_measures_each_library_in_a_fresh_process(tmp_path):
  """A tiny run (N=8, deg 3, one layer) of benchmarks/numerical_memory.py
  writes a row per library with first-call time, median, peak memory and
  the kernels' agreement with the first row."""
  page = tmp_path / 'numerical.md'
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'numerical_memory.py'),
       '--n', '8', '--deg', '3', '--layers', '1', '--repeats', '1', '--out',
       str(page)], capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  text = page.read_text()
  assert '| hidden layers | N | library | first call (s) |' in text
  assert '| 1 | 8 | nt_gp | ' in text and 'failed' not in text
  assert 'NON-FINITE' not in text


def test_layer_breakdown_times_every_layer_of_the_network(tmp_path):
  """A tiny run of benchmarks/layer_breakdown.py: one table row per layer of
  the workload, and the readouts and entry counts it uses."""
  import layer_breakdown  # pylint: disable=g-import-not-at-top
  page = tmp_path / 'breakdown.md'
  subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'layer_breakdown.py'),
       '--tiny', '--workloads', 'mlp5,myrtle5', '--dtypes', 'float32',
       '--out', str(page)], capture_output=True, text=True, timeout=600,
      check=True)
  rows = [line for line in page.read_text().splitlines()
          if line.startswith('| ') and not line.startswith('| layer')]
  names = [r.split('|')[1].strip() for r in rows]
  mlp = [f'{i} {n}' for i, n in enumerate(['Dense', 'Relu'] * 5 + ['Dense'])]
  myrtle = [f'{i} {n}' for i, n in enumerate(
      ['Conv', 'Relu', 'Conv', 'Relu', 'AvgPool', 'Conv', 'Relu', 'AvgPool',
       'Conv', 'Relu'])] + ['readout GlobalAvgPool+Dense']
  assert names == mlp + myrtle
  body, readout = layer_breakdown._split(layer_breakdown.layers_of(
      layer_breakdown.WORKLOADS['cnn3_flatten']['net']))
  assert [n for n, _ in readout] == ['Flatten', 'Dense'] and len(body) == 6
  # 4 inputs: 10 pairs; 8x8 spatial: 64 entries per pair on the diagonal,
  # 64^2 for the full spatial covariance; no spatial axes: 1.
  assert layer_breakdown._entries((4, 8, 8, 1), True) == 640
  assert layer_breakdown._entries((4, 8, 8, 1), False) == 40960
  assert layer_breakdown._entries((4, 16), False) == 10


def test_hypergrad_measures_both_libraries_and_a_base_tree(tmp_path):
  """A tiny run of benchmarks/hypergrad.py (a few inputs, one process per
  library/mode; the MLP and the first-step attention workload) writes a row
  per workload and nt_gp mode, including the base tree's (here this
  checkout itself), with time, peak memory, first calls and the gradients'
  agreement with neural-tangents where its environment exists; a smoke run
  may not write the docs page, and an unknown workload is refused."""
  import compare  # pylint: disable=g-import-not-at-top
  page = tmp_path / 'hypergrad.md'
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'benchmarks' / 'hypergrad.py'), 'mlp3',
       'attention', '--dtypes', 'float64', '--gets', 'ntk', '--modes',
       'eager', '--tiny', '--base', str(ROOT), '--out', str(page)],
      capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
  text = page.read_text()
  assert '| workload | dtype | get | mode | nt_gp (s) |' in text
  for workload in ('mlp3', 'attention'):
    rows = [l for l in text.splitlines() if l.startswith(f'| {workload} |')]
    assert [r.split('|')[4].strip() for r in rows] == ['eager',
                                                       'eager (base)']
    assert all(len(r.strip('|').split('|')) == 13 for r in rows)
    if compare.reference_python():
      assert all('| agree (' in r for r in rows)
  assert 'first calls, each process: nt_gp ' in text
  for argv, why in ((['--tiny'], 'docs page'),
                    (['mlp4', '--tiny', '--out', ''], 'unknown workload')):
    refused = subprocess.run(
        [sys.executable, str(ROOT / 'benchmarks' / 'hypergrad.py')] + argv,
        capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and why in refused.stderr, refused.stderr


def test_hypergrad_arbitrates_a_float32_disagreement_by_float64():
  """Where the libraries' float32 gradients differ, the float64 run of the
  same configuration (in which they agree) says which one is off; only an
  nt_gp that is the closer one, within 1e-2, escapes the failure."""
  import hypergrad  # pylint: disable=g-import-not-at-top

  def res(dtype, ours, theirs, mode='eager'):
    pack = lambda v: dict(value=1.0, d_W_std=v, d_b_std=2.0)
    return dict(workload='myrtle5', get='ntk', mode=mode, dtype=dtype,
                nt_gp=pack(ours), neural_tangents=pack(theirs))
  ref = res('float64', 100.0, 100.0)
  close, far = res('float32', 100.1, 95.0), res('float32', 90.0, 100.0)
  assert hypergrad.arbitrate(close, [close, ref]).startswith(
      'nt_gp closer to float64: 1.0e-03 vs 5.0e-02')
  assert hypergrad.arbitrate(far, [far, ref]).startswith(
      'neural-tangents closer')
  # No float64 run of the same mode: no verdict.
  assert hypergrad.arbitrate(close, [close, res('float64', 100., 100.,
                                                'function')]) is None
