"""labs/points.toml: points, tags and visibility of every graded test, and the behaviour probes;
and `python3 -m harness points [--check] [--labs 01,02]`, which lists them and checks completeness.

Points.entry(lab, node_id, siblings) gives a test's max score: the entry of its function name
(split equally over the cases of a parametrized test) or of `name[case]`. Points.check() lists
what is missing or stale. The command collects (without running) the spec of every available lab
plus its behaviour probes and lists each test's points; with --check it exits 1 if a test has no
points in labs/points.toml or an entry there names no test, so a new lab cannot be graded with
silent zero-point tests.
"""
from __future__ import annotations

import argparse
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import manifest
from ..programs import REPO
from ..rlimits import Limits
from .runner import PROBE_SPEC, run_lab_once
from .selection import select_labs

POINTS = REPO / "labs" / "points.toml"


@dataclass
class Entry:
    points: float
    tags: list[str] = field(default_factory=list)
    visibility: str | None = None


@dataclass
class Probe:
    lab: str
    program: str
    args: list[str] = field(default_factory=list)
    proto: str = "tcp"
    checks: list[str] = field(default_factory=list)


def func_and_case(node_id: str) -> tuple[str, str | None]:
    """'path::test_x[a-b]' -> ('test_x', 'a-b'); 'path::Class::test_y' -> ('test_y', None)."""
    last = node_id.split("::")[-1]
    m = re.match(r"^([^\[]+)(?:\[(.*)\])?$", last)
    return (m[1], m[2]) if m else (last, None)


class Points:
    def __init__(self, data: dict[str, Any] | None = None, path: Path | None = None) -> None:
        self.path = path
        data = data or {}
        self.labs: dict[str, dict[str, Entry]] = {}
        for lab_id, table in (data.get("lab") or {}).items():
            self.labs[lab_id.zfill(2)] = {k: _entry(v, f"{path}: [lab.{lab_id}] {k}")
                                          for k, v in table.items()}
        self.probes = [Probe(**p) for p in data.get("probe", [])]

    @classmethod
    def load(cls, path: Path = POINTS) -> "Points":
        if not path.exists():
            return cls({}, path)
        with open(path, "rb") as f:
            return cls(tomllib.load(f), path)

    def merged(self, other: "Points") -> "Points":
        out = Points({}, self.path)
        out.labs = {k: dict(v) for k, v in self.labs.items()}
        for lab_id, table in other.labs.items():
            out.labs.setdefault(lab_id, {}).update(table)
        out.probes = self.probes + other.probes
        return out

    def entry(self, lab: str, node_id: str, siblings: int = 1) -> Entry | None:
        """The entry of one test; `siblings` = how many cases its function has in this run."""
        table = self.labs.get(lab, {})
        func, case = func_and_case(node_id)
        if case is not None and f"{func}[{case}]" in table:
            return table[f"{func}[{case}]"]
        e = table.get(func)
        if e is None:
            return None
        explicit = sum(e2.points for k, e2 in table.items() if k.startswith(func + "["))
        n_explicit = sum(1 for k in table if k.startswith(func + "["))
        share = max(siblings - n_explicit, 1)
        points = max(e.points - explicit, 0) / share if case is not None else e.points
        return Entry(points, e.tags, e.visibility)

    def probes_of(self, lab: str) -> list[Probe]:
        return [p for p in self.probes if p.lab.zfill(2) == lab]

    def check(self, collected: dict[str, list[str]]) -> list[str]:
        """Problems: tests without points, entries without tests. `collected`: lab -> node ids."""
        problems = []
        for lab, ids in sorted(collected.items()):
            table = self.labs.get(lab, {})
            funcs = {func_and_case(i)[0] for i in ids}
            cases = {f"{func_and_case(i)[0]}[{func_and_case(i)[1]}]"
                     for i in ids if func_and_case(i)[1] is not None}
            for func in sorted(funcs):
                if func not in table and not any(c.startswith(func + "[") for c in table):
                    problems.append(f"lab {lab}: test {func} has no points in {self.path} "
                                    f"([lab.{lab}] {func} = N)")
            for key in sorted(table):
                if key not in funcs and key not in cases:
                    problems.append(f"lab {lab}: {self.path} gives points to {key}, "
                                    "but no such test was collected")
        return problems


def _entry(value: Any, where: str) -> Entry:
    if isinstance(value, (int, float)):
        return Entry(float(value))
    if isinstance(value, dict) and "points" in value:
        vis = value.get("visibility")
        if vis not in (None, "visible", "hidden", "after_due_date", "after_published"):
            raise ValueError(f"{where}: visibility must be visible|hidden|after_due_date|after_published")
        return Entry(float(value["points"]), list(value.get("tags", [])), vis)
    raise ValueError(f"{where}: expected a number or {{points = N, tags = [...]}}")


def collected(labs: list[manifest.Lab], pts: Points) -> dict[str, list[str]]:
    out = {}
    for lab in labs:
        files = [lab.spec] + ([PROBE_SPEC] if pts.probes_of(lab.id) else [])
        records, note = run_lab_once(lab, files, Path("/nonexistent"), Limits(), keyword=None,
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
