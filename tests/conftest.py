"""Makes the harness importable and loads its pytest plugin for every spec under tests/."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.pytest_plugin import (  # noqa: E402,F401  (fixtures and hooks, found by name)
    lab, per_test_limit, pytest_configure, pytest_runtest_logreport, pytest_runtest_makereport,
    pytest_sessionfinish, steps)
