"""Makes the harness importable and loads its pytest plugin for every spec under tests/."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Fixtures and hooks, which pytest finds by name in this module (__all__ marks them as used).
from harness.pytest_plugin import (  # noqa: E402
    lab, per_test_limit, pytest_collection_modifyitems, pytest_configure, pytest_runtest_logreport,
    pytest_runtest_makereport, pytest_sessionfinish, steps)

__all__ = ["lab", "per_test_limit", "pytest_collection_modifyitems", "pytest_configure",
           "pytest_runtest_logreport",
           "pytest_runtest_makereport", "pytest_sessionfinish", "steps"]
