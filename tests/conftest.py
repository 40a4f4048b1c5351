"""Makes the modules in tests/ (service_process) importable from tests/charts and tests/cluster,
and declares the `serial` marker."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_configure(config):
    # `make test-deploy` runs the tests so marked first, alone, then the others on every core
    # (pytest-xdist): theirs are time bounds that a busy machine would break, not a test's fault.
    config.addinivalue_line("markers", "serial: time bounds that assume no other test runs beside it "
                                       "(make test-deploy runs these first, alone)")
