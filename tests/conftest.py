"""Shared pytest configuration."""
import os
import subprocess
import sys

import pytest

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


_RSS_LOG = os.environ.get('NT_GP_TEST_RSS_LOG')

if _RSS_LOG:
  # Opt-in: one line per test, "<rss before> <rss after> <nodeid>", to find
  # the tests that grow a test process's memory.
  from nt_gp.solve.memory import current_rss  # pylint: disable=g-import-not-at-top
  @pytest.hookimpl(hookwrapper=True)
  def pytest_runtest_protocol(item, nextitem):  # pylint: disable=unused-argument
    before = current_rss()
    yield
    with open(f'{_RSS_LOG}.{os.getpid()}', 'a') as f:
      f.write(f'{before} {current_rss()} {item.nodeid}\n')


# ----------------------------------------------------------------------------
# `@pytest.mark.isolated`: the test runs in a fresh Python process.
#
# TensorFlow keeps every traced graph and compiled program of a process (and
# the gradient functions registered for each trace) until the process ends.
# Tests that build many second-order graphs would otherwise leave gigabytes
# in the test worker for the rest of the run; in their own process that
# memory is returned when the test ends. The test's outcome (pass, fail with
# its output, skip with its reason) is the subprocess's.
# ----------------------------------------------------------------------------
_IN_SUBPROCESS = 'NT_GP_ISOLATED_TEST'


def pytest_configure(config):
  config.addinivalue_line(
      'markers', 'isolated: run the test in its own Python process (it '
      'builds many graphs whose memory TensorFlow keeps until exit)')


def _run_isolated(item):
  root = str(item.config.rootpath)
  env = dict(os.environ, **{_IN_SUBPROCESS: '1'})
  env.pop('PYTEST_XDIST_WORKER', None)
  proc = subprocess.run(
      [sys.executable, '-m', 'pytest', '-p', 'no:xdist', '-p',
       'no:cacheprovider', '-q', '-rs', '--no-header', item.nodeid],
      cwd=root, env=env, capture_output=True, text=True, check=False)
  out = proc.stdout + proc.stderr
  if proc.returncode == 0 and ' skipped' in out and ' passed' not in out:
    reason = [l for l in out.splitlines() if l.startswith('SKIPPED')]
    pytest.skip(reason[-1].split(': ', 1)[-1] if reason else
                'skipped in its own process')
  if proc.returncode != 0:
    pytest.fail(f'in its own process (exit code {proc.returncode}):\n{out}',
                pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
  if (item.get_closest_marker('isolated') is not None
      and not os.environ.get(_IN_SUBPROCESS)):
    _run_isolated(item)
    item.runtest = lambda: None     # the test body ran in the subprocess
