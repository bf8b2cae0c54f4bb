"""python3 -m harness points [--check] [--labs 01,02]: the points of every test, and completeness.

Collects (without running) the spec of every available lab plus its behaviour probes, and lists
each test's points. With --check it exits 1 if a test has no points in labs/points.toml or an
entry there names no test, so a new lab cannot be graded with silent zero-point tests.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import limits, manifest
from .grade import PROBE_SPEC, run_lab_once, select_labs
from .points import Points


def collected(labs: list[manifest.Lab], pts: Points) -> dict[str, list[str]]:
    out = {}
    for lab in labs:
        files = [lab.spec] + ([PROBE_SPEC] if pts.probes_of(lab.id) else [])
        records, note = run_lab_once(lab, files, Path("/nonexistent"), limits.Limits(), keyword=None,
                                     timeout=120, collect_only=True)
        ids = [r["id"] for r in records if r["event"] == "collected"]
        # a probe check this lab does not use is collected as an empty parameter set
        out[lab.id] = [i for i in ids if "NOTSET" not in i]
        if note and not ids:
            print(f"lab {lab.id}: collection failed: {note}", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m harness points")
    p.add_argument("--check", action="store_true", help="exit 1 if a test has no points or an entry no test")
    p.add_argument("--labs", help="only these labs (default: every available lab)")
    args = p.parse_args(argv)
    pts = Points.load()
    found = collected(select_labs(args.labs), pts)
    total = 0.0
    for lab_id, ids in found.items():
        siblings: dict[str, int] = {}
        for i in ids:
            siblings[i.split("[")[0]] = siblings.get(i.split("[")[0], 0) + 1
        lab_total = 0.0
        for i in ids:
            e = pts.entry(lab_id, i, siblings[i.split("[")[0]])
            lab_total += e.points if e else 0
            if not args.check:
                print(f"  {lab_id}  {e.points if e else 0:6.3g}  {i.split('::', 1)[-1]}")
        total += lab_total
        print(f"lab {lab_id}: {len(ids)} tests, {lab_total:g} points")
    print(f"total: {total:g} points")
    problems = pts.check(found)
    for prob in problems:
        print("MISSING: " + prob, file=sys.stderr)
    return 1 if (args.check and problems) else 0


if __name__ == "__main__":
    sys.exit(main())
