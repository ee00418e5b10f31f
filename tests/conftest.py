"""Shared pytest configuration."""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')


def _rss_bytes():
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('VmRSS:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


_RSS_LOG = os.environ.get('NT_GP_TEST_RSS_LOG')

if _RSS_LOG:
  # Opt-in: one line per test, "<rss before> <rss after> <nodeid>", to find
  # the tests that grow a test process's memory.
  import pytest  # pylint: disable=g-import-not-at-top

  @pytest.hookimpl(hookwrapper=True)
  def pytest_runtest_protocol(item, nextitem):  # pylint: disable=unused-argument
    before = _rss_bytes()
    yield
    with open(f'{_RSS_LOG}.{os.getpid()}', 'a') as f:
      f.write(f'{before} {_rss_bytes()} {item.nodeid}\n')
