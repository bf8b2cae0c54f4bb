"""The per-lab check table: run every available lab's spec against a build, print pass/fail.

    /usr/bin/python3 -m harness check [--build build/dev] [--labs 01,02] [--slow]

This is what the README's first command ends with. Exit status 0 only if every checked lab passes.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from .. import manifest
from ..programs import REPO


def colour(text: str, code: str) -> str:
    return f"\033[{code}m{text}\033[0m" if sys.stdout.isatty() else text


def run_spec(spec: Path, bin_dir: Path, slow: bool) -> tuple[int, int, int, str]:
    """(passed, failed, skipped, tail of pytest's output) for one spec file."""
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "junit.xml"
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfEs", str(spec), f"--junitxml={xml}"]
        if not slow:
            argv += ["-m", "not slow"]
        env = dict(os.environ, SOCKLAB_BIN_DIR=str(bin_dir), PYTHONDONTWRITEBYTECODE="1")
        run = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
        if not xml.exists():
            return 0, 1, 0, run.stdout[-3000:] + run.stderr[-2000:]
        suite = ET.parse(xml).getroot()
        suite = suite if suite.tag == "testsuite" else suite[0]
        total, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
        failed = failures + errors
        return total - failed - skipped, failed, skipped, "\n".join(run.stdout.splitlines()[-25:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m harness check", description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=str(REPO / "build" / "dev"), help="build folder (default build/dev)")
    ap.add_argument("--labs", help="comma-separated lab numbers (default: every available lab)")
    ap.add_argument("--slow", action="store_true", help="also run tests marked slow (e.g. the 60 s TIME_WAIT wait)")
    args = ap.parse_args(argv)
    bin_dir = Path(args.build).resolve() / "bin"
    wanted = {n.zfill(2) for n in args.labs.split(",")} if args.labs else None

    rows, failures = [], []
    unit = bin_dir / "unit_tests"
    if unit.exists() and wanted is None:
        ok = subprocess.run([unit, "--minimal"], capture_output=True).returncode == 0
        rows.append(("--", "common/ unit tests (doctest)", "", "PASS" if ok else "FAIL"))
        if not ok:
            failures.append(("unit", f"run {unit} to see which"))
    for lab in manifest.load():
        if wanted is not None and lab.id not in wanted:
            continue
        if not lab.available:
            rows.append((lab.id, lab.title, "", "coming"))
            continue
        print(f"checking lab {lab.id} ({lab.title}) ...", flush=True)
        passed, failed, skipped, tail = run_spec(lab.spec, bin_dir, args.slow)
        verdict = "PASS" if failed == 0 and passed > 0 else "FAIL"
        counts = f"{passed}/{passed + failed}" + (f" ({skipped} skipped)" if skipped else "")
        rows.append((lab.id, lab.title, counts, verdict))
        if verdict == "FAIL":
            failures.append((lab.id, tail))

    print()
    print(f"{'lab':<4} {'title':<34} {'tests':<16} result")
    for lab_id, title, counts, verdict in rows:
        shown = colour(verdict, "32" if verdict == "PASS" else "31" if verdict == "FAIL" else "90")
        print(f"{lab_id:<4} {title:<34} {counts:<16} {shown}")
    for lab_id, tail in failures:
        print(f"\n--- lab {lab_id}: what failed (rerun: cmake --build --preset dev --target check_{lab_id}) ---\n{tail}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
