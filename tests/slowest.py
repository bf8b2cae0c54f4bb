"""After a CTest run: the ten slowest tests and what the run's entries cost in all.

Run by CTest itself after the tests (CTEST_CUSTOM_POST_TEST, tests/CMakeLists.txt); each pytest
entry leaves one JSON file in DIR (pytest_plugin.py, $SOCKLAB_DURATIONS):
{"entry": CTest name, "seconds": wall time of the entry, "tests": [[pytest node id, seconds], ...]}.

    /usr/bin/python3 tests/slowest.py DIR [N]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    count = int(argv[1]) if len(argv) > 1 else 10
    entries = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    if not entries:
        return 0
    tests = sorted(((secs, e["entry"], nodeid) for e in entries for nodeid, secs in e["tests"]), reverse=True)
    total = sum(e["seconds"] for e in entries)
    print(f"\nThe {min(count, len(tests))} slowest tests (of {len(tests)} in {len(entries)} pytest entries, "
          f"{total:.0f} s of entry time in all):")
    for secs, entry, nodeid in tests[:count]:
        print(f"  {secs:7.1f} s  {nodeid.split('::', 1)[-1][:80]:80}  ({entry})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
