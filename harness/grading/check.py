"""The per-lab check table: every available lab's spec against a build, pass / fail / skipped.

    /usr/bin/python3 -m harness check [--build build/dev] [--labs 01,02 | 1-4] [--slow]

This is what the README's first command ends with. It is a view over the grader's runner: each
lab runs exactly as `harness grade` runs it (runner.py: Debian's Python, one pytest process per
lab, the lab's behaviour probes; scoring.py: the result model and the hint of each failure), but
without the submission's resource limits and with no points shown. A skipped test is listed with
its reason, never counted as passed. Exit status 0 only if no checked test failed.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from .. import manifest
from ..process import become_subreaper
from ..programs import REPO
from .points import Points
from .results import FAILED, FLAKY, PASSED, SKIPPED, LabResult
from .scoring import grade_lab
from .selection import select_labs


def colour(text: str, code: str) -> str:
    return f"\033[{code}m{text}\033[0m" if sys.stdout.isatty() else text


def verdict(result: LabResult) -> str:
    statuses = [t.status for t in result.tests]
    if result.error or FAILED in statuses or FLAKY in statuses or not statuses:
        return "FAIL"
    return "PASS" if PASSED in statuses else "SKIP"


def counts(result: LabResult) -> str:
    passed = sum(t.status == PASSED for t in result.tests)
    ran = sum(t.status != SKIPPED for t in result.tests)
    skipped = len(result.tests) - ran
    return f"{passed}/{ran}" + (f" ({skipped} skipped)" if skipped else "")


def one_line(text: str, limit: int = 150) -> str:
    flat = " / ".join(part.strip() for part in text.splitlines() if part.strip())
    return flat if len(flat) <= limit else flat[:limit] + "..."


def details(result: LabResult, bin_dir: Path) -> list[str]:
    """What a student reads under the table: each failure (expected, actual, hint), each skip (why)."""
    out = []
    for t in result.tests:
        if t.status in (FAILED, FLAKY):
            out.append(f"  FAIL {t.name}")
            for label, text in (("expected", t.expected), ("actual", t.actual), ("hint", t.hint)):
                if text:
                    out.append(f"       {label + ':':<9} {one_line(text)}")
            if not (t.expected or t.actual or t.hint):
                out.append(f"       {one_line(t.message)}")
        elif t.status == SKIPPED:
            out.append(f"  SKIP {t.name}: {one_line(t.message.removeprefix('Skipped: '))}")
    if result.error:
        out.append("  note: " + one_line(result.error, 400))
    if any(t.status in (FAILED, FLAKY) for t in result.tests) or result.error:
        out.append(f"  rerun: cmake --build --preset dev --target check_{result.id}   (evidence of one "
                   f"test: /usr/bin/python3 -m harness grade {bin_dir} --labs {result.id} -k TEST)")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m harness check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=str(REPO / "build" / "dev"), help="build folder (default build/dev)")
    ap.add_argument("--labs", help="labs to check, e.g. 01,02 or 1-4 (default: every available lab)")
    ap.add_argument("--slow", action="store_true",
                    help="also run tests marked slow (e.g. the 60 s TIME_WAIT wait)")
    ap.add_argument("--lab-timeout", type=float, default=600.0, help="wall-clock limit of one lab's run (s)")
    args = ap.parse_args(argv)
    bin_dir = Path(args.build).resolve() / "bin"
    become_subreaper()

    rows: list[tuple[str, str, str, str]] = []
    notes: list[tuple[str, list[str]]] = []
    failed = False
    unit = bin_dir / "unit_tests"
    if unit.exists() and args.labs is None:
        ok = subprocess.run([unit, "--minimal"], capture_output=True).returncode == 0
        rows.append(("--", "common/ unit tests (doctest)", "", "PASS" if ok else "FAIL"))
        if not ok:
            failed = True
            notes.append(("unit", [f"  run {unit} to see which"]))
    chosen = {lab.id for lab in select_labs(args.labs)}
    pts = Points.load()
    for lab in manifest.load():
        if not lab.available and args.labs is None:
            rows.append((lab.id, lab.title, "", "coming"))
        if lab.id not in chosen:
            continue
        print(f"checking lab {lab.id} ({lab.title}) ...", flush=True)
        result = grade_lab(lab, bin_dir, None, pts, hidden=None, hidden_visibility="visible", keyword=None,
                           repeat=1, timeout=args.lab_timeout, flaky_credit=False, skip_slow=not args.slow)
        shown = verdict(result)
        failed |= shown == "FAIL"
        rows.append((lab.id, lab.title, counts(result), shown))
        lines = details(result, bin_dir)
        if lines:
            notes.append((lab.id, lines))

    print()
    print(f"{'lab':<4} {'title':<34} {'tests':<18} result")
    for lab_id, title, tally, shown in rows:
        code = {"PASS": "32", "FAIL": "31", "SKIP": "33"}.get(shown, "90")
        print(f"{lab_id:<4} {title:<34} {tally:<18} {colour(shown, code)}")
    for lab_id, lines in notes:
        print(f"\n--- lab {lab_id} ---")
        print("\n".join(lines))
    return 1 if failed else 0
