"""Grade a folder of submissions in parallel: one CSV row and one JSON file per submission.

    /usr/bin/python3 -m harness batch SUBMISSIONS/ -j 4 --out grades/ [--labs 01,02] [grade options]

Every sub-folder of SUBMISSIONS is one submission (its name is the student). Each is graded by
its own `python3 -m harness grade` process (one grading per Python process: LabProcess.stop()
relies on it), with its own cgroup; every program runs with --port 0 and announces its port on
the ready line, so parallel gradings never collide on ports. A submission that crashes, hangs
or cannot be built still gets its row and JSON (score 0 and the reason); the batch goes on.
Output: OUT/grades.csv (student, per-lab scores, total, max, counts, status, and the previous total
and the change when OUT held an earlier batch: a regrade that drops a score is visible, catching
nondeterminism) and OUT/<student>.json. A grading that failed never replaces an earlier good result.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import reports
from ..programs import REPO
from .grade import add_common_options
from .runner import PYTHON
from .selection import select_labs
from .results import Submission


def _passthrough(args: argparse.Namespace) -> list[str]:
    out = []
    for opt, val in (("--labs", args.labs), ("-k", args.keyword), ("--hidden", args.hidden),
                     ("--hidden-visibility", args.hidden_visibility), ("--repeat", args.repeat),
                     ("--lab-timeout", args.lab_timeout), ("--nofile", args.nofile),
                     ("--pids-max", args.pids_max), ("--memory-mib", args.memory_mib)):
        if val is not None:
            out += [opt, str(val)]
    if args.flaky_credit:
        out.append("--flaky-credit")
    if args.werror:
        out.append("--werror")
    if args.skip_slow:
        out.append("--skip-slow")
    if args.first_failure:
        out.append("--first-failure")
    return out


def _load(path: Path) -> Submission | None:
    try:
        return Submission.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def grade_one(sub_dir: Path, out_dir: Path, extra: list[str],
              timeout: float) -> tuple[Submission, Submission | None]:
    """Grade one submission; (the result, the previous result of an earlier batch into OUT, if any).

    A grading that failed (the grader's fault, not the submission's) never replaces a good earlier
    result: the earlier JSON stays and the failed one is kept beside it as <student>.failed.json."""
    student = sub_dir.name
    final = out_dir / f"{student}.json"
    previous = _load(final)
    json_path = out_dir / f"{student}.new.json"
    gs_path = out_dir / "gradescope" / f"{student}.json"
    cmd = [PYTHON, "-m", "harness", "grade", str(sub_dir), "--student", student, "--json", str(json_path),
           "--gradescope", str(gs_path), "--quiet", "--color", "never", *extra]
    json_path.unlink(missing_ok=True)
    log = ""
    try:
        p = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                           start_new_session=True)
        log = p.stdout.decode("utf-8", "replace")
        rc = p.returncode
    except subprocess.TimeoutExpired as e:
        rc = None
        log = (e.output or b"").decode("utf-8", "replace") + f"\n(grading stopped after {timeout:g} s)"
    sub = _load(json_path) if json_path.exists() else None
    if sub is None:
        sub = Submission(student=student, source=str(sub_dir), build_ok=False,
                         error=f"grading did not finish (status {rc}):\n" + "\n".join(log.splitlines()[-30:]))
        reports.write_text(json_path, json.dumps(sub.to_dict(), indent=2))
        reports.write_text(gs_path, json.dumps(reports.gradescope(sub), indent=2))
    if sub.error and previous is not None and not previous.error:
        json_path.replace(out_dir / f"{student}.failed.json")
        previous.error = ""  # the kept result is the earlier good one
        return previous, previous
    json_path.replace(final)
    return sub, previous


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m harness batch", description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="one sub-folder per submission (bin, build or source tree)")
    p.add_argument("-j", "--jobs", type=int, default=2, help="submissions graded at once (default 2)")
    p.add_argument("--out", type=Path, default=Path("grades"), help="output folder (default ./grades)")
    p.add_argument("--timeout", type=float, default=3600, help="wall-clock limit of one submission (s)")
    add_common_options(p)
    args = p.parse_args(argv)
    subs = sorted(d for d in args.folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subs:
        p.error(f"no submissions (sub-folders) in {args.folder}")
    args.out.mkdir(parents=True, exist_ok=True)
    lab_ids = [l.id for l in select_labs(args.labs)]
    extra = _passthrough(args)
    done: list[Submission] = []
    lock = threading.Lock()
    t0 = time.monotonic()
    tty = sys.stderr.isatty()

    def one(d: Path) -> tuple[Submission, Submission | None]:
        sub, previous = grade_one(d, args.out, extra, args.timeout)
        with lock:
            done.append(sub)
            status = "ERROR" if sub.error else "BUILD FAILED" if not sub.build_ok else ""
            line = (f"[{len(done)}/{len(subs)}] {sub.student}: {sub.score:g}/{sub.max_score:g} {status}"
                    f"  ({time.monotonic() - t0:.0f}s)")
            if previous is not None and previous.score != sub.score:
                line += f"  (was {previous.score:g}: {'DROPPED' if sub.score < previous.score else 'rose'})"
            print(("\r\033[K" if tty else "") + line, file=sys.stderr, flush=True)
        return sub, previous

    print(f"grading {len(subs)} submissions, {args.jobs} at a time, labs {','.join(lab_ids)}",
          file=sys.stderr)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, subs))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(reports.csv_header(lab_ids) + ["previous", "change"])
    for sub, previous in results:
        change = "" if previous is None else f"{sub.score - previous.score:+g}"
        before = "" if previous is None else f"{previous.score:g}"
        w.writerow(reports.csv_row(sub, lab_ids) + [before, change])
    reports.write_text(args.out / "grades.csv", buf.getvalue())
    print(f"wrote {args.out / 'grades.csv'} and {len(results)} JSON files in {time.monotonic() - t0:.0f}s",
          file=sys.stderr)
    return 0
