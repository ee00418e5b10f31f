"""Measures the worst float64 parity error of every suite, to set tolerances.

Usage: python tools/parity_errors.py [--live] [FAMILY ...]

FAMILY is a kernel suite (fc, fc_spatial, conv, index_resize, attention,
graph, masking), `apply` (the `apply_fn` cases of attention/graph/masking),
`predict` or `empirical` (default: all). For each it prints the worst and the
median per-case relative error of nt_gp against the golden files and, with
`--live`, against a fresh neural-tangents run (needs the reference env of
tools/reference_env.sh). tests/parity/tolerances.py records the numbers
this printed and the tolerances chosen from them.
"""
import argparse
import os
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')

KERNEL_SUITES = ('fc', 'fc_spatial', 'conv', 'index_resize', 'attention',
                 'graph', 'masking')
APPLY_SUITES = ('attention', 'graph', 'masking')


def _summary(label, errors, above=1e-12):
  """Worst case, median over cases, and every case above `above`."""
  if not errors:
    return f'{label:28s} (no cases)'
  worst = max(errors, key=errors.get)
  lines = [f'{label:28s} worst {errors[worst]:.2e} ({worst}), median '
           f'{float(np.median(list(errors.values()))):.2e}, '
           f'{len(errors)} cases']
  lines += [f'    {name}: {err:.2e}' for name, err in
            sorted(errors.items(), key=lambda t: -t[1]) if err > above]
  return '\n'.join(lines)


def kernel_errors(name, live):
  from tests.parity.suite_tests import ParitySuite  # pylint: disable=g-import-not-at-top
  suite = ParitySuite(name)
  out = {'golden': {c['name']: suite.worst_error(c, suite.golden)[0]
                    for c in suite.cases}}
  if live:
    ref = suite.reference('kernel')
    out['live'] = {c['name']: suite.worst_error(c, ref)[0]
                   for c in suite.cases}
  return out


def apply_errors(live):
  from tests.parity import apply_harness, harness  # pylint: disable=g-import-not-at-top
  from tests.parity.suite_tests import ParitySuite  # pylint: disable=g-import-not-at-top
  out = {'golden': {}, 'live': {}} if live else {'golden': {}}
  for name in APPLY_SUITES:
    suite = ParitySuite(name)
    ref = suite.reference('apply') if live else None
    for case in suite.apply_cases:
      ours = apply_harness.compute_ours(case, suite.apply_data(case))
      out['golden'][f'{name}/{case["name"]}'] = harness.relative_error(
          ours['out'], suite.golden_apply[f'{case["name"]}/out'])
      if live:
        ours = apply_harness.compute_ours(case,
                                          apply_harness.suite_data([case]))
        out['live'][f'{name}/{case["name"]}'] = harness.relative_error(
            ours['out'], ref[f'{case["name"]}/out'])
  return out


def predict_errors(live):
  from tests import test_predict_parity as tp  # pylint: disable=g-import-not-at-top
  from tests.parity import harness  # pylint: disable=g-import-not-at-top
  out = {}
  sources = [('golden', tp._golden(), True)]  # pylint: disable=protected-access
  if live:
    sources.append(('live', tp._live(), False))  # pylint: disable=protected-access
  for label, ref, golden_inputs in sources:
    for case in tp.CASES:
      ours = tp._ours(case['name'], golden_inputs=golden_inputs)  # pylint: disable=protected-access
      kind = 'ode' if case['kind'] == 'ode' else 'closed_form'
      out.setdefault(f'{label} {kind}', {})[case['name']] = harness.worst_error(
          case, ours, ref)[0]
  return out


def empirical_errors(live):
  from tests import test_empirical_parity as te  # pylint: disable=g-import-not-at-top
  from tests.parity import empirical_harness as eh  # pylint: disable=g-import-not-at-top
  out = {}
  sources = [('golden', eh.load_golden())]
  if live:
    sources.append(('live', te._live()))  # pylint: disable=protected-access
  for label, ref in sources:
    errs = out.setdefault(label, {})
    for i, case in enumerate(te.SUITE):
      worst = 0.
      for key, val in te._ours(i).items():  # pylint: disable=protected-access
        opt, tag, g, _ = key.split('/')
        r = ref[f'{case["name"]}/{opt}/{tag}/{g}']
        worst = max(worst, float(np.max(np.abs(val - r))) /
                    max(float(np.max(np.abs(r))), 1e-300))
      errs[case['name']] = worst
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('families', nargs='*')
  p.add_argument('--live', action='store_true',
                 help='also compare with a fresh neural-tangents run')
  args = p.parse_args(argv)
  families = args.families or list(KERNEL_SUITES) + ['apply', 'predict',
                                                     'empirical']
  for fam in families:
    if fam in KERNEL_SUITES:
      res = kernel_errors(fam, args.live)
    elif fam == 'apply':
      res = apply_errors(args.live)
    elif fam == 'predict':
      res = predict_errors(args.live)
    elif fam == 'empirical':
      res = empirical_errors(args.live)
    else:
      p.error(f'unknown family {fam!r}')
    for label, errors in res.items():
      print(_summary(f'{fam} {label}', errors), flush=True)


if __name__ == '__main__':
  main()
