"""Every report, written from the one result model (results.py).

  terminal(sub, color)   the human table (ANSI colour on a tty)
  gradescope(sub)        Gradescope results.json (the autograder format: score, tests[], output)
  junit(sub)             JUnit XML for CI (one testsuite per lab)
  markdown(sub)          a Markdown summary (GitHub step summary / Classroom)
  csv rows               batch.py (student, per-lab scores, total)
"""
from __future__ import annotations

import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from .results import FAILED, FLAKY, PASSED, SKIPPED, Submission

_C = {"green": "\033[32m", "red": "\033[31m", "yellow": "\033[33m", "dim": "\033[2m", "bold": "\033[1m",
      "reset": "\033[0m", "cyan": "\033[36m"}
_MARK = {PASSED: ("PASS", "green"), FAILED: ("FAIL", "red"), FLAKY: ("FLAKY", "yellow"),
         SKIPPED: ("SKIP", "dim")}


def write_text(path: Path, text: str) -> None:
    """Write atomically: a report is either the old file or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")
    os.replace(tmp, path)


def short_name(name: str, width: int = 70) -> str:
    """A test's name in `width` columns: a long name is cut in its function part, so that its
    parameter (`[connected-65507]`, what tells the cases apart) always shows."""
    if len(name) <= width:
        return name
    func, bracket, case = name.partition("[")
    case = bracket + case
    if len(case) > width // 2:
        case = case[:width // 2 - 4] + "...]"
    return func[:width - len(case) - 3] + "..." + case


def summary_text(sub: Submission) -> str:
    """Whole-submission notes: build, limits, lab-level problems."""
    lines = [f"{sub.student}: {sub.score:g}/{sub.max_score:g} points"]
    if sub.kind == "source":
        lines.append("build: " + ("ok" if sub.build_ok else "FAILED (score 0 for what did not build)"))
        if not sub.build_ok and sub.build_log:
            lines.append("build log (errors first):\n" + sub.build_log)
    if sub.limits:
        lines.append("limits: " + sub.limits)
    if sub.repeat > 1:
        lines.append(f"each test ran {sub.repeat} times: "
                     "passed in all = passed, in none = failed, in some = flaky")
    for lab in sub.labs:
        if lab.error:
            lines.append(f"lab {lab.id}: {lab.error}")
    if sub.error:
        lines.append(sub.error)
    return "\n".join(lines)


def terminal(sub: Submission, color: bool = False, evidence_lines: int = 12) -> str:
    def c(text: str, name: str) -> str:
        return f"{_C[name]}{text}{_C['reset']}" if color else text

    out = [c(f"socklab grading: {sub.student}", "bold") + f"  ({sub.source})"]
    if sub.kind == "source":
        out.append("build: " + (c("ok", "green") if sub.build_ok else c("FAILED", "red")))
        if not sub.build_ok and sub.build_log:
            out += ["  " + l for l in sub.build_log.splitlines()[:30]]
    for lab in sub.labs:
        out.append("")
        out.append(c(f"Lab {lab.id}  {lab.title}", "bold") + f"   {lab.score:g}/{lab.max_score:g}")
        for t in lab.tests:
            mark, col = _MARK.get(t.status, ("?", "dim"))
            vis = "" if t.visibility == "visible" else f" [{t.visibility}]"
            out.append(f"  {c(f'{mark:5}', col)} {t.number:>6}  {short_name(t.name):70} "
                       f"{_pts(t.score):>5}/{_pts(t.max_score):<4} {t.duration:5.1f}s{vis}")
            if t.status in (FAILED, FLAKY):
                if t.status == FLAKY:
                    ok = sum(r.outcome == PASSED for r in t.runs)
                    out.append(c(f"           flaky: passed {ok} of {len(t.runs)} runs", "yellow"))
                if t.expected:
                    out.append(f"           expected: {_one(t.expected)}")
                if t.actual:
                    out.append(f"           actual:   {_one(t.actual)}")
                if t.hint:
                    out.append(c(f"           hint:     {t.hint}", "cyan"))
                if t.evidence and evidence_lines:
                    ev = t.evidence.splitlines()
                    out += [c("           | " + l[:150], "dim") for l in ev[:evidence_lines]]
                    if len(ev) > evidence_lines:
                        more = len(ev) - evidence_lines
                        out.append(c(f"           | ... ({more} more lines in the JSON report)", "dim"))
        if lab.error:
            out.append(c("  note: " + lab.error.replace("\n", "\n        "), "yellow"))
    if sub.limits:
        out.append("\nlimits: " + sub.limits)
    if sub.error:
        out.append(c(sub.error, "red"))
    tests = sub.tests()
    counts = {s: sum(t.status == s for t in tests) for s in (PASSED, FAILED, FLAKY, SKIPPED)}
    out.append("")
    out.append(c(f"TOTAL {sub.score:g}/{sub.max_score:g}", "bold") +
               f"   {counts[PASSED]} passed, {counts[FAILED]} failed, {counts[FLAKY]} flaky, "
               f"{counts[SKIPPED]} skipped   ({sub.execution_time:.0f}s)")
    return "\n".join(out)


def _pts(x: float) -> str:
    return f"{round(x, 2):g}"


def _one(text: str, limit: int = 160) -> str:
    t = " / ".join(l.strip() for l in text.splitlines() if l.strip())
    return t if len(t) <= limit else t[:limit] + "..."


def gradescope(sub: Submission) -> dict:
    """Gradescope's results.json; `score` is set only when there are no tests to sum."""
    tests = []
    for t in sub.tests():
        name = t.name + (f": {t.doc}" if t.doc else "")
        entry = {
            "number": t.number,
            "name": name,
            "score": t.score,
            "max_score": t.max_score,
            "status": ("passed" if t.status == PASSED or (t.status == SKIPPED and t.max_score == 0)
                       else "failed"),
            "output": t.output(),
            "output_format": "text",
            "tags": [f"lab{t.lab}", *t.tags, *([t.status] if t.status in (FLAKY, SKIPPED) else [])],
            "visibility": t.visibility,
            "extra_data": {"id": t.id, "lab": t.lab, "hidden": t.hidden, "status": t.status,
                           "runs": [r.outcome for r in t.runs], "duration": round(t.duration, 3)},
        }
        tests.append(entry)
    out = {
        "execution_time": round(sub.execution_time),
        "output": summary_text(sub),
        "output_format": "text",
        "test_output_format": "text",
        "test_name_format": "text",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "extra_data": {"student": sub.student, "labs": {l.id: [l.score, l.max_score] for l in sub.labs},
                       "limits": sub.limits, "build_ok": sub.build_ok, "repeat": sub.repeat},
        "tests": tests,
    }
    if not tests:
        out["score"] = 0.0
    return out


def junit(sub: Submission) -> str:
    tests = sub.tests()
    root = ET.Element("testsuites", name=f"socklab {sub.student}", tests=str(len(tests)),
                      failures=str(sum(t.status in (FAILED, FLAKY) for t in tests)),
                      time=f"{sub.execution_time:.3f}")
    if sub.error or not sub.build_ok:
        suite = ET.SubElement(root, "testsuite", name="submission", tests="1",
                              failures="1", errors="0", skipped="0", time="0")
        case = ET.SubElement(suite, "testcase", classname="submission",
                             name="build" if not sub.build_ok else "grading", time="0")
        failure = ET.SubElement(case, "failure",
                                message="build failed" if not sub.build_ok else "grading failed")
        failure.text = _xml_safe(sub.build_log if not sub.build_ok else sub.error)
        root.set("tests", str(len(tests) + 1))
    for lab in sub.labs:
        suite = ET.SubElement(root, "testsuite", name=f"lab{lab.id} {lab.title}", tests=str(len(lab.tests)),
                              failures=str(sum(t.status in (FAILED, FLAKY) for t in lab.tests)), errors="0",
                              skipped=str(sum(t.status == SKIPPED for t in lab.tests)),
                              time=f"{sum(t.duration for t in lab.tests):.3f}")
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="score", value=f"{lab.score:g}")
        ET.SubElement(props, "property", name="max_score", value=f"{lab.max_score:g}")
        for t in lab.tests:
            case = ET.SubElement(suite, "testcase", classname=f"lab{lab.id}", name=t.name,
                                 time=f"{t.duration:.3f}")
            p = ET.SubElement(case, "properties")
            for k, v in (("number", t.number), ("score", f"{t.score:g}"), ("max_score", f"{t.max_score:g}"),
                         ("visibility", t.visibility), ("status", t.status), ("tags", ",".join(t.tags))):
                ET.SubElement(p, "property", name=k, value=v)
            if t.status in (FAILED, FLAKY):
                msg = ("flaky: " if t.status == FLAKY else "") + (t.hint or t.message or "failed")
                ET.SubElement(case, "failure", message=_xml_safe(msg[:300])).text = _xml_safe(t.output())
            elif t.status == SKIPPED:
                ET.SubElement(case, "skipped", message=_xml_safe(t.message[:300]))
        if lab.error:
            ET.SubElement(suite, "system-err").text = _xml_safe(lab.error)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")


def _xml_safe(text: str) -> str:
    """XML 1.0 cannot hold most control characters (program output may contain any byte)."""
    return "".join(ch if ch in "\t\n\r" or ord(ch) >= 0x20 and ch not in "\ufffe\uffff"
                   else f"\\x{ord(ch):02x}"
                   for ch in text)


def markdown(sub: Submission) -> str:
    lines = [f"## socklab: {sub.student} — {sub.score:g}/{sub.max_score:g}", "",
             "| Lab | Score | Passed | Failed | Flaky |", "|---|---|---|---|---|"]
    for lab in sub.labs:
        lines.append(f"| {lab.id} {lab.title} | {lab.score:g}/{lab.max_score:g} | "
                     f"{sum(t.status == PASSED for t in lab.tests)} | "
                     f"{sum(t.status == FAILED for t in lab.tests)} | "
                     f"{sum(t.status == FLAKY for t in lab.tests)} |")
    bad = [t for t in sub.tests() if t.status in (FAILED, FLAKY) and t.visibility == "visible"]
    if bad:
        lines += ["", "### What failed", ""]
        for t in bad:
            lines.append(f"- **{t.number} {t.name}** ({t.score:g}/{t.max_score:g}): {t.hint or t.message}")
    if not sub.build_ok:
        lines += ["", "### Build log", "", "```", sub.build_log, "```"]
    return "\n".join(lines)


def csv_header(lab_ids: list[str]) -> list[str]:
    return ["student", *[f"lab{l}" for l in lab_ids], "total", "max", "passed", "failed", "flaky", "status"]


def csv_row(sub: Submission, lab_ids: list[str]) -> list[str]:
    by = {l.id: l for l in sub.labs}
    tests = sub.tests()
    status = "error" if sub.error else "build-failed" if not sub.build_ok else "ok"
    return [sub.student, *[f"{by[l].score:g}" if l in by else "" for l in lab_ids], f"{sub.score:g}",
            f"{sub.max_score:g}", str(sum(t.status == PASSED for t in tests)),
            str(sum(t.status == FAILED for t in tests)), str(sum(t.status == FLAKY for t in tests)), status]


_GS_TOP = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
           "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
_GS_TEST = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
            "tags", "visibility", "extra_data"}
_GS_FORMATS = {"text", "html", "simple_format", "md", "ansi"}
_GS_VIS = {"hidden", "after_due_date", "after_published", "visible"}


def validate_gradescope(d: dict) -> list[str]:
    """Problems of a results.json against Gradescope's documented fields (empty list: valid)."""
    errs = [f"unknown top-level field {k}" for k in d if k not in _GS_TOP]
    if "score" not in d and "tests" not in d:
        errs.append("either score or tests is required")
    for k in ("output_format", "test_output_format", "test_name_format"):
        if k in d and d[k] not in _GS_FORMATS:
            errs.append(f"{k}={d[k]!r}")
    for k in ("visibility", "stdout_visibility"):
        if k in d and d[k] not in _GS_VIS:
            errs.append(f"{k}={d[k]!r}")
    if "extra_data" in d and not isinstance(d["extra_data"], dict):
        errs.append("extra_data must be an object")
    for i, t in enumerate(d.get("tests", [])):
        where = f"tests[{i}]"
        errs += [f"{where}: unknown field {k}" for k in t if k not in _GS_TEST]
        for k in ("score", "max_score"):
            if k in t and not isinstance(t[k], (int, float)):
                errs.append(f"{where}.{k} is not a number")
        if t.get("status") not in (None, "passed", "failed"):
            errs.append(f"{where}.status={t.get('status')!r}")
        if "number" in t and not isinstance(t["number"], str):
            errs.append(f"{where}.number must be a string")
        if "tags" in t and not (isinstance(t["tags"], list) and all(isinstance(x, str) for x in t["tags"])):
            errs.append(f"{where}.tags must be a list of strings")
        if "visibility" in t and t["visibility"] not in _GS_VIS:
            errs.append(f"{where}.visibility={t['visibility']!r}")
        if "output_format" in t and t["output_format"] not in _GS_FORMATS:
            errs.append(f"{where}.output_format={t['output_format']!r}")
        for k in ("name", "output"):
            if k in t and not isinstance(t[k], str):
                errs.append(f"{where}.{k} must be a string")
    for i, e in enumerate(d.get("leaderboard", [])):
        if not {"name", "value"} <= set(e) or e.get("order", "desc") not in ("asc", "desc"):
            errs.append(f"leaderboard[{i}] needs name, value and order asc|desc")
    return errs


def classroom(sub: Submission) -> dict:
    """GitHub Classroom's grader result (what the autograding-grading-reporter action reads, base64)."""
    tests = []
    for t in sub.tests():
        tests.append({"name": f"{t.number} {t.name}", "status": "pass" if t.status == PASSED else "fail",
                      "message": "" if t.status == PASSED else (t.hint or t.message)[:500],
                      "test_code": t.id, "filename": t.id.split("::")[0], "line_no": 0,
                      "duration": round(t.duration * 1000), "score": t.score})
    return {"version": 1, "status": "pass" if sub.score >= sub.max_score and not sub.error else "fail",
            "max_score": sub.max_score, "tests": tests}


def autolab(sub: Submission) -> str:
    """Autolab's last stdout line: {"scores": {problem: score}, "scoreboard": [...]}."""
    import json
    return json.dumps({"scores": {f"lab{l.id}": l.score for l in sub.labs},
                       "scoreboard": [sub.score, *[l.score for l in sub.labs]]})
