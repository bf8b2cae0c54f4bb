"""Grade one submission black-box: run the lab specs (and hidden tests) against its programs.

    /usr/bin/python3 -m harness grade SUBMISSION [--labs 01,02] [-k NAME] [--hidden DIR]
        [--repeat K] [--json F] [--gradescope F] [--junit F] [--student NAME]

SUBMISSION is a bin folder, a build folder or a source tree (built first; submission.py).
Each lab runs in its own pytest process (grade_plugin.py streams the results), with the
submission's programs under resource limits (limits.py) and the lab's run under a wall-clock
limit; whatever happens, the result model (results.py) is complete and every report is written.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import hints, limits, manifest, reports
from .points import Points, func_and_case
from .process import become_subreaper
from .programs import REPO
from .results import FAILED, FLAKY, PASSED, SKIPPED, LabResult, Run, Submission, TestResult
from .submission import prepare

PROBE_SPEC = REPO / "harness" / "specs" / "test_behaviour.py"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def select_labs(spec: str | None) -> list[manifest.Lab]:
    """Available labs of the manifest, optionally only those listed ("01,02" or "1-3")."""
    labs = [l for l in manifest.load() if l.available]
    if not spec:
        return labs
    wanted: set[str] = set()
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            wanted |= {str(n).zfill(2) for n in range(int(a), int(b) + 1)}
        elif part:
            wanted.add(part.zfill(2))
    known = {l.id for l in manifest.load()}
    unknown = wanted - known
    if unknown:
        raise SystemExit(f"grade: no lab {', '.join(sorted(unknown))} in labs/manifest.toml")
    return [l for l in labs if l.id in wanted]


def hidden_files(hidden: Path | None, lab_id: str) -> list[Path]:
    if hidden is None:
        return []
    return sorted(hidden.glob(f"test_{lab_id}_*.py")) + sorted(hidden.glob(f"test_{lab_id}.py"))


def run_lab_once(lab: manifest.Lab, files: list[Path], bin_dir: Path, lim: limits.Limits, *,
                 keyword: str | None, timeout: float, collect_only: bool = False, skip_slow: bool = False,
                 first_failure: bool = False) -> tuple[list[dict], str]:
    """One pytest run of a lab: the JSON records and a note if the run was cut short."""
    with tempfile.NamedTemporaryFile("w", prefix=f"socklab-lab{lab.id}-", suffix=".jsonl", delete=False) as f:
        out = Path(f.name)
    env = dict(os.environ)
    env.update({"SOCKLAB_BIN_DIR": str(bin_dir), "SOCKLAB_GRADE_OUT": str(out),
                "SOCKLAB_LIMITS": lim.to_env(), "SOCKLAB_PROBE_LAB": lab.id,
                "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
                "PYTHONDONTWRITEBYTECODE": "1"})
    cmd = [PYTHON, "-m", "pytest", "-p", "no:cacheprovider", "--noconftest", "-p", "harness.pytest_plugin",
           "-p", "harness.grade_plugin", "--import-mode=importlib", "--rootdir", str(REPO), "-q",
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
        _kill_group(proc.pid)
        console, _ = proc.communicate()
    _kill_group(proc.pid)  # anything of that run still in its session
    text = console.decode("utf-8", "replace")
    records = []
    try:
        for line in out.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    finally:
        out.unlink(missing_ok=True)
    if proc.returncode not in (0, 1, 5) and not note:  # 5: nothing collected
        note = f"pytest ended with status {proc.returncode}"
    if note or (proc.returncode not in (0, 1, 5)):
        note += "\n" + "\n".join(text.splitlines()[-25:])
    if not any(r["event"] == "collected" for r in records) and proc.returncode not in (0, 5):
        note = (note + "\n" if note else "") + "no test was collected:\n" + "\n".join(text.splitlines()[-25:])
    return records, note.strip()


def _kill_group(pgid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.2)


def _combine(test: TestResult, runs: list[tuple[dict | None, str]], flaky_credit: bool) -> dict | None:
    """Set status/score of a test from its K runs; the record of the first failing run (for hints)."""
    outcomes = []
    failing = None
    for rec, note in runs:
        if rec is None:  # started but never finished (the run was stopped), or never started
            outcome = FAILED
            rec = {"outcome": FAILED, "message": note or "the test did not run to the end",
                   "longrepr": note, "sections": {}}
        outcome = rec["outcome"]
        test.runs.append(Run(outcome, float(rec.get("duration", 0.0)), rec.get("credit")))
        outcomes.append(outcome)
        if outcome == FAILED and failing is None:
            failing = rec
        if outcome == SKIPPED and failing is None:
            failing = rec
    if all(o == SKIPPED for o in outcomes):
        test.status, test.score, test.max_score = SKIPPED, 0.0, 0.0
        test.message = (failing or {}).get("message", "")
        return None
    passed = sum(o == PASSED for o in outcomes)
    ran = sum(o != SKIPPED for o in outcomes)
    if passed == ran:
        test.status, test.score = PASSED, test.max_score
        return None
    if passed == 0:
        test.status = FAILED
        credits = [r.credit for r in test.runs if r.outcome == FAILED]
        test.score = round(test.max_score * min(c or 0.0 for c in credits), 4) if credits else 0.0
    else:
        test.status = FLAKY
        test.score = round(test.max_score * passed / ran, 4) if flaky_credit else 0.0
    return failing


def grade_lab(lab: manifest.Lab, bin_dir: Path, lim: limits.Limits, pts: Points, *, hidden: Path | None,
              hidden_visibility: str, keyword: str | None, repeat: int, timeout: float,
              flaky_credit: bool, skip_slow: bool = False, first_failure: bool = False,
              progress=None) -> LabResult:
    result = LabResult(lab.id, lab.title)
    files = [lab.spec] if lab.spec.exists() else []
    hfiles = hidden_files(hidden, lab.id)
    if pts.probes_of(lab.id):
        files.append(PROBE_SPEC)
    files += hfiles
    if not files:
        result.error = f"lab {lab.id} has no spec ({lab.spec.name})"
        return result
    order: list[str] = []
    docs: dict[str, str] = {}
    paths: dict[str, str] = {}
    per_run: list[dict[str, tuple[dict | None, str]]] = []
    notes = []
    for r in range(repeat):
        if progress:
            progress(f"lab {lab.id}" + (f" run {r + 1}/{repeat}" if repeat > 1 else ""))
        records, note = run_lab_once(lab, files, bin_dir, lim, keyword=keyword, timeout=timeout,
                                     skip_slow=skip_slow, first_failure=first_failure)
        if note:
            notes.append(note)
        got: dict[str, tuple[dict | None, str]] = {}
        started = None
        for rec in records:
            if rec["event"] == "collected":
                if rec["id"] not in docs:
                    order.append(rec["id"])
                    docs[rec["id"]] = rec.get("doc", "")
                    paths[rec["id"]] = rec.get("path", "")
            elif rec["event"] == "start":
                started = rec["id"]
            elif rec["event"] == "result":
                got[rec["id"]] = (rec, "")
                started = None
        if started is not None:
            got[started] = (None, f"this test hung and the lab's run was stopped: {note.splitlines()[0] if note else ''}")
        per_run.append(got)
    result.error = "\n".join(dict.fromkeys(notes))
    # Count the cases of every function (for splitting a parametrized test's points).
    siblings: dict[str, int] = {}
    for nid in order:
        siblings[nid.split("[")[0]] = siblings.get(nid.split("[")[0], 0) + 1
    hidden_pts = Points.load(hidden / "points.toml") if hidden else Points()
    n = 0
    for nid in order:
        if all(nid in run and run[nid][0] is not None and run[nid][0].get("outcome") == SKIPPED
               and "empty parameter set" in (run[nid][0].get("message") or "") for run in per_run):
            continue  # a behaviour probe this lab does not use
        is_hidden = _in_hidden(paths.get(nid) or nid.split("::")[0], hidden)
        table = hidden_pts if is_hidden else pts
        entry = table.entry(lab.id, nid, siblings[nid.split("[")[0]])
        n += 1
        func, case = func_and_case(nid)
        test = TestResult(id=nid, lab=lab.id, name=nid.split("::")[-1], number=f"{int(lab.id)}.{n}",
                          hidden=is_hidden, doc=docs.get(nid, ""))
        if entry is None:
            test.max_score = 1.0 if is_hidden else 0.0
            if not is_hidden:
                test.tags.append("no-points")
        else:
            test.max_score = entry.points
            test.tags = list(entry.tags)
        test.visibility = (entry.visibility if entry and entry.visibility else
                           hidden_visibility if is_hidden else "visible")
        if is_hidden and "hidden" not in test.tags:
            test.tags.append("hidden")
        runs = [run.get(nid, (None, "the test did not run (the lab's run ended before it)")) for run in per_run]
        failing = _combine(test, runs, flaky_credit)
        if failing is not None:
            hints.explain(test, failing)
        result.tests.append(test)
    return result


def _in_hidden(path: str, hidden: Path | None) -> bool:
    if hidden is None:
        return False
    p = Path(path)
    cand = p if p.is_absolute() else (REPO / p)
    try:
        cand.resolve().relative_to(hidden.resolve())
        return True
    except ValueError:
        return False


def grade(path: Path, *, student: str | None = None, labs: str | None = None, keyword: str | None = None,
          hidden: Path | None = None, hidden_visibility: str = "after_due_date", repeat: int = 1,
          lab_timeout: float = 600.0, flaky_credit: bool = False, werror: bool = False,
          limits_: limits.Limits | None = None, skip_slow: bool = False, first_failure: bool = False,
          progress=None) -> Submission:
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
        sandbox = limits.Sandbox(f"socklab-{os.getpid()}-{int(time.time() * 1000) % 10**8}", limits_)
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
                            progress=progress)
            killed = sandbox.kill_all()
            if killed:
                res.error = (res.error + "\n" if res.error else "") + \
                    f"{killed} process(es) of the submission were still running after the lab's tests; killed"
            if sandbox.pids_limit_hit():
                res.error = (res.error + "\n" if res.error else "") + \
                    f"the submission hit the process limit (pids.max={sandbox.limits.pids_max}): a fork bomb or too many threads"
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
    p.add_argument("-k", dest="keyword", help="only tests matching this pytest -k expression (e.g. a test name)")
    p.add_argument("--hidden", type=Path, help="folder of instructors' hidden tests (test_NN_*.py, points.toml)")
    p.add_argument("--hidden-visibility", default="after_due_date",
                   choices=["hidden", "after_due_date", "after_published", "visible"],
                   help="Gradescope visibility of hidden tests (default after_due_date)")
    p.add_argument("--repeat", type=int, default=1, metavar="K",
                   help="run every test K times: pass / fail / flaky (flaky scores 0 unless --flaky-credit)")
    p.add_argument("--flaky-credit", action="store_true", help="a flaky test scores the share of runs it passed")
    p.add_argument("--lab-timeout", type=float, default=600.0, help="wall-clock limit of one lab's run (s)")
    p.add_argument("--werror", action="store_true", help="build source trees with -Werror (default: off)")
    p.add_argument("--skip-slow", action="store_true", help="leave out tests marked slow (e.g. waiting out TIME_WAIT)")
    p.add_argument("--first-failure", action="store_true",
                   help="stop each lab at its first failing test (quick feedback; the rest score 0, 'not run')")
    p.add_argument("--nofile", type=int, default=1024, help="RLIMIT_NOFILE of each program (default 1024)")
    p.add_argument("--pids-max", type=int, default=256, help="processes+threads of a submission (cgroup; default 256)")
    p.add_argument("--memory-mib", type=int, default=1024, help="memory of a submission (cgroup; default 1024)")


def limits_from(args: argparse.Namespace) -> limits.Limits:
    return limits.Limits(nofile=args.nofile, pids_max=args.pids_max, nproc=args.pids_max,
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
    p.add_argument("--classroom", help="write GitHub Classroom's grader result JSON here (see harness/classroom/)")
    p.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    p.add_argument("-q", "--quiet", action="store_true", help="no table, only the total")
    p.add_argument("--autolab", action="store_true", help="print Autolab's scores JSON as the last line")
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
                progress=progress)
    write_reports(sub, args)
    color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty() and not os.environ.get("NO_COLOR"))
    if args.quiet:
        print(f"{sub.student}: {sub.score:g}/{sub.max_score:g}")
    else:
        print(reports.terminal(sub, color=color))
    if args.autolab:
        print(reports.autolab(sub), flush=True)
    return 0 if not sub.error else 3


if __name__ == "__main__":
    sys.exit(main())
