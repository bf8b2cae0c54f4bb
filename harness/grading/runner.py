"""The one pytest runner of the harness: one lab's spec files in a pytest process of their own,
with Debian's Python, the submission's programs under limits, one JSON line per test streamed by
grade_plugin.py, and a wall-clock limit on the whole run. grade, check and points all use it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .. import manifest
from ..programs import REPO
from ..rlimits import Limits

PROBE_SPEC = REPO / "harness" / "grading" / "specs" / "test_behaviour.py"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def run_lab_once(lab: manifest.Lab, files: list[Path], bin_dir: Path, lim: Limits | None, *,
                 keyword: str | None, timeout: float, collect_only: bool = False, skip_slow: bool = False,
                 first_failure: bool = False) -> tuple[list[dict], str]:
    """One pytest run of a lab: the JSON records and a note if the run was cut short."""
    with tempfile.NamedTemporaryFile("w", prefix=f"socklab-lab{lab.id}-", suffix=".jsonl", delete=False) as f:
        out = Path(f.name)
    env = dict(os.environ)
    for name in ("SOCKLAB_LIMITS", "SOCKLAB_DURATIONS", "SOCKLAB_ENTRY", "SOCKLAB_SHARD"):  # a CTest entry's
        env.pop(name, None)
    if lim is not None:   # None: the programs run with the caller's own limits (`harness check`)
        env["SOCKLAB_LIMITS"] = lim.to_env()
    env.update({"SOCKLAB_BIN_DIR": str(bin_dir), "SOCKLAB_GRADE_OUT": str(out), "SOCKLAB_PROBE_LAB": lab.id,
                "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
                "PYTHONDONTWRITEBYTECODE": "1"})
    cmd = [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "--noconftest", "-p", "harness.pytest_plugin",
           "-p", "harness.grading.grade_plugin", "--import-mode=importlib", "--rootdir", str(REPO), "-q",
           "--no-header", "-o", "console_output_style=classic", *map(str, files)]
    if keyword:
        cmd += ["-k", keyword]
    if skip_slow:
        cmd += ["-m", "not slow"]
    if first_failure:
        cmd.append("-x")
    if collect_only:
        cmd.append("--collect-only")
    note = ""
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        console, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        note = f"the lab's test run was stopped after {timeout:g} s"
        kill_group(proc.pid)
        console, _ = proc.communicate()
    kill_group(proc.pid)  # anything of that run still in its session
    text = console.decode("utf-8", "replace")
    try:
        records = read_records(out)
    finally:
        out.unlink(missing_ok=True)
    if proc.returncode not in (0, 1, 5) and not note:  # 5: nothing collected
        note = f"pytest ended with status {proc.returncode}"
    if note or (proc.returncode not in (0, 1, 5)):
        note += "\n" + "\n".join(text.splitlines()[-25:])
    if not any(r["event"] == "collected" for r in records) and proc.returncode not in (0, 5):
        note = (note + "\n" if note else "") + "no test was collected:\n" + "\n".join(text.splitlines()[-25:])
    return records, note.strip()


def recorded_runs(folder: Path, lab: manifest.Lab, files: list[Path]) -> list[tuple[list[dict], str]]:
    """The records a CTest run of the suite left for one lab: folder/labNN-ENTRY.jsonl, one file per
    entry (a shard of the lab's spec, or its behaviour probes), each streamed by grade_plugin.py as
    in a grading run. Only tests of `files` count (lab 19's second spec is not graded). A lab without
    a record is a note: its entries did not run."""
    keep = {str(f.relative_to(REPO)) if f.is_relative_to(REPO) else str(f) for f in files}
    runs = []
    for path in sorted(folder.glob(f"lab{lab.id}-*.jsonl")):
        runs.append(([r for r in read_records(path) if r.get("id", "").split("::")[0] in keep], ""))
    if not runs:
        return [([], f"no records of lab {lab.id} in {folder}: its CTest entries did not run")]
    return runs


def read_records(path: Path) -> list[dict]:
    """The records grade_plugin.py streamed to `path`, one JSON object a line; a line cut short (a
    run stopped while it wrote) is left out."""
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return records


def kill_group(pgid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.2)
