"""python3 -m harness bench ...: lab 19's benchmark driver (labs/19-server-benchmark/bench/).

The driver lives with its lab; this verb only finds it when it is called, so that nothing in
the harness imports lab 19 (or needs it built) until someone runs a benchmark.
"""
from __future__ import annotations

import importlib
import sys

from .programs import REPO

LAB_DIR = REPO / "labs" / "19-server-benchmark"


def main(argv: list[str]) -> int:
    if not (LAB_DIR / "bench" / "driver.py").is_file():
        print(f"python3 -m harness bench: {LAB_DIR / 'bench'} is missing", file=sys.stderr)
        return 2
    sys.path.insert(0, str(LAB_DIR))
    return importlib.import_module("bench.driver").main(argv)
