"""Grade one submission black-box: run the lab specs (and hidden tests) against its programs.

    /usr/bin/python3 -m harness grade SUBMISSION [--labs 01,02] [-k NAME] [--hidden DIR]
        [--repeat K] [--json F] [--gradescope F] [--junit F] [--student NAME]

SUBMISSION is a bin folder, a build folder or a source tree (built first; submission.py).
Each lab runs in its own pytest process (runner.py; grade_plugin.py streams the results), with
the submission's programs under resource limits (harness/rlimits.py, sandbox.py) and the lab's
run under a wall-clock limit; scoring.py turns the runs into the result model (results.py), which
is complete whatever happens, and every report is written from it.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import reports
from ..process import become_subreaper
from ..rlimits import Limits
from .points import Points
from .results import PASSED, Submission
from .sandbox import Sandbox
from .scoring import grade_lab
from .selection import select_labs
from .submission import prepare


def grade(path: Path, *, student: str | None = None, labs: str | None = None, keyword: str | None = None,
          hidden: Path | None = None, hidden_visibility: str = "after_due_date", repeat: int = 1,
          lab_timeout: float = 600.0, flaky_credit: bool = False, werror: bool = False,
          limits_: Limits | None = None, skip_slow: bool = False, first_failure: bool = False,
          progress=None, records: Path | None = None) -> Submission:
    """Grade one submission; never raises for anything the submission does."""
    t0 = time.monotonic()
    default_name = path.resolve().parent.name if path.resolve().name == "bin" else path.resolve().name
    sub = Submission(student=student or default_name, source=str(path), repeat=repeat,
                     started=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    prepared = None
    sandbox = None
    cleanup: list[Path] = []
    try:
        selected = select_labs(labs)
        programs = [p for l in selected for p in l.programs]
        if progress:
            progress("build" if (path / "CMakeLists.txt").is_file() else "prepare")
        prepared = prepare(path, programs, werror=werror)
        sub.kind, sub.build_ok, sub.build_log = prepared.kind, prepared.build_ok, prepared.build_log
        pts = Points.load()
        sandbox = Sandbox(f"socklab-{os.getpid()}-{int(time.time() * 1000) % 10**8}", limits_)
        sub.limits = sandbox.note
        bin_dir = prepared.bin_dir
        if sandbox.limits.run_as is not None:
            # The unprivileged uid must reach the programs: a copy in a world-readable folder.
            reach = Path(tempfile.mkdtemp(prefix="socklab-bin-"))
            os.chmod(reach, 0o755)
            bin_dir = reach / "bin"
            if prepared.bin_dir.is_dir():
                shutil.copytree(prepared.bin_dir, bin_dir, symlinks=True)
            else:
                bin_dir.mkdir()
            cleanup.append(reach)
        for lab in selected:
            res = grade_lab(lab, bin_dir, sandbox.limits, pts, hidden=hidden,
                            hidden_visibility=hidden_visibility, keyword=keyword, repeat=repeat,
                            timeout=lab_timeout, flaky_credit=flaky_credit, skip_slow=skip_slow,
                            first_failure=first_failure,
                            progress=progress, records=records)
            killed = sandbox.kill_all()
            if killed:
                res.error = (res.error + "\n" if res.error else "") + \
                    f"{killed} process(es) of the submission were still running after the lab's tests; killed"
            if sandbox.pids_limit_hit():
                res.error = (res.error + "\n" if res.error else "") + \
                    (f"the submission hit the process limit (pids.max={sandbox.limits.pids_max}): "
                     "a fork bomb or too many threads")
            if not sub.build_ok:
                for t in res.tests:
                    if t.status != PASSED and "not found in" in (t.message + t.evidence):
                        t.hint = "the program did not build: see the build log in the report's header"
            sub.labs.append(res)
    except SystemExit:
        raise
    except Exception:  # the grader itself failed: still a report, score 0, with the reason
        sub.error = "the grader failed: " + traceback.format_exc()[-3000:]
    finally:
        if sandbox is not None:
            sandbox.close()
        if prepared is not None:
            prepared.cleanup()
        for d in cleanup:
            shutil.rmtree(d, ignore_errors=True)
        sub.execution_time = round(time.monotonic() - t0, 2)
    return sub


def write_reports(sub: Submission, args: argparse.Namespace) -> None:
    if args.json:
        reports.write_text(Path(args.json), json.dumps(sub.to_dict(), indent=2))
    if args.gradescope:
        reports.write_text(Path(args.gradescope), json.dumps(reports.gradescope(sub), indent=2))
    if args.junit:
        reports.write_text(Path(args.junit), reports.junit(sub))
    if args.markdown:
        reports.write_text(Path(args.markdown), reports.markdown(sub))
    if args.classroom:
        reports.write_text(Path(args.classroom), json.dumps(reports.classroom(sub)))


def add_common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labs", help="labs to grade, e.g. 01,02 or 1-4 (default: every available lab)")
    p.add_argument("-k", dest="keyword",
                   help="only tests matching this pytest -k expression (e.g. a test name)")
    p.add_argument("--hidden", type=Path,
                   help="folder of instructors' hidden tests (test_NN_*.py, points.toml)")
    p.add_argument("--hidden-visibility", default="after_due_date",
                   choices=["hidden", "after_due_date", "after_published", "visible"],
                   help="Gradescope visibility of hidden tests (default after_due_date)")
    p.add_argument("--repeat", type=int, default=1, metavar="K",
                   help="run every test K times: pass / fail / flaky (flaky scores 0 unless --flaky-credit)")
    p.add_argument("--flaky-credit", action="store_true",
                   help="a flaky test scores the share of runs it passed")
    p.add_argument("--lab-timeout", type=float, default=600.0, help="wall-clock limit of one lab's run (s)")
    p.add_argument("--werror", action="store_true", help="build source trees with -Werror (default: off)")
    p.add_argument("--skip-slow", action="store_true",
                   help="leave out tests marked slow (e.g. waiting out TIME_WAIT)")
    p.add_argument("--first-failure", action="store_true",
                   help=("stop each lab at its first failing test "
                         "(quick feedback; the rest score 0, 'not run')"))
    p.add_argument("--nofile", type=int, default=1024, help="RLIMIT_NOFILE of each program (default 1024)")
    p.add_argument("--pids-max", type=int, default=256,
                   help="processes+threads of a submission (cgroup; default 256)")
    p.add_argument("--memory-mib", type=int, default=1024,
                   help="memory of a submission (cgroup; default 1024)")


def limits_from(args: argparse.Namespace) -> Limits:
    return Limits(nofile=args.nofile, pids_max=args.pids_max, nproc=args.pids_max,
                         memory_mib=args.memory_mib)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m harness grade", description=__doc__.split("\n\n")[0])
    p.add_argument("submission", type=Path, help="bin folder, build folder or source tree")
    p.add_argument("--student", help="name in reports (default: the folder's name)")
    add_common_options(p)
    p.add_argument("--json", help="write the result model (JSON) here")
    p.add_argument("--gradescope", help="write Gradescope results.json here")
    p.add_argument("--junit", help="write JUnit XML here")
    p.add_argument("--markdown", help="write a Markdown summary here (e.g. $GITHUB_STEP_SUMMARY)")
    p.add_argument("--classroom",
                   help="write GitHub Classroom's grader result JSON here (see harness/grading/classroom/)")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.add_argument("-q", "--quiet", action="store_true", help="no table, only the total")
    p.add_argument("--autolab", action="store_true", help="print Autolab's scores JSON as the last line")
    p.add_argument("--records", type=Path, metavar="DIR",
                   help="score the records a CTest run of the specs left in DIR (labNN-ENTRY.jsonl, one "
                        "per entry) instead of running them: the suite's self-test of the reference "
                        "build does this, so the dev workflow runs each spec once")
    args = p.parse_args(argv)
    if not args.submission.exists():
        p.error(f"{args.submission} does not exist")
    become_subreaper()
    tty = sys.stderr.isatty()
    progress = (lambda what: print(f"  grading {args.student or args.submission.name}: {what}...",
                                   file=sys.stderr, flush=True)) if tty or not args.quiet else None
    sub = grade(args.submission, student=args.student, labs=args.labs, keyword=args.keyword,
                hidden=args.hidden, hidden_visibility=args.hidden_visibility, repeat=max(1, args.repeat),
                lab_timeout=args.lab_timeout, flaky_credit=args.flaky_credit, werror=args.werror,
                limits_=limits_from(args), skip_slow=args.skip_slow, first_failure=args.first_failure,
                progress=progress, records=args.records)
    write_reports(sub, args)
    auto = args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    color = args.color == "always" or auto
    if args.quiet:
        print(f"{sub.student}: {sub.score:g}/{sub.max_score:g}")
    else:
        print(reports.terminal(sub, color=color))
    if args.autolab:
        print(reports.autolab(sub), flush=True)
    return 0 if not sub.error else 3
