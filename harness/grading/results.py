"""The one result model every grading report is written from.

    Submission -> labs: [LabResult] -> tests: [TestResult] -> runs: [Run]

A TestResult is one test (a pytest node) of one lab with its points; with --repeat K it has K
runs and its status is passed (all runs), failed (none) or flaky (some). Reports (reports.py)
only read this model; `to_dict`/`from_dict` round-trip it through the per-submission JSON file.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PASSED, FAILED, FLAKY, SKIPPED = "passed", "failed", "flaky", "skipped"


@dataclass
class Run:
    outcome: str                 # passed | failed | skipped
    duration: float = 0.0
    credit: float | None = None  # partial credit 0..1 recorded by the test (None: all or nothing)


@dataclass
class TestResult:
    id: str                      # pytest node id, e.g. tests/labs/test_02_udp_send_recv.py::test_x[a]
    lab: str                     # "02"
    name: str                    # test_x[a]
    number: str = ""             # "2.5" (Gradescope ordering)
    max_score: float = 0.0
    score: float = 0.0
    status: str = FAILED
    visibility: str = "visible"  # visible | hidden | after_due_date | after_published
    hidden: bool = False         # from the instructors' hidden-test folder
    tags: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    doc: str = ""                # the test's one-line description (its docstring)
    expected: str = ""           # what the test wanted
    actual: str = ""             # what happened
    evidence: str = ""           # program output, steps, /proc snapshot
    hint: str = ""               # one line, in the student's terms
    message: str = ""            # the failure's short message

    @property
    def duration(self) -> float:
        return sum(r.duration for r in self.runs)

    def output(self) -> str:
        """The text a student sees for this test (Gradescope `output`, JUnit failure text)."""
        if self.status == PASSED:
            return f"passed ({self.score:g}/{self.max_score:g})" + (f"\n{self.doc}" if self.doc else "")
        parts = []
        if self.status == FLAKY:
            ok = sum(r.outcome == PASSED for r in self.runs)
            parts.append(f"FLAKY: passed {ok} of {len(self.runs)} runs. A flaky test scores as failed; "
                         "the program's behaviour depends on timing.")
        if self.status == SKIPPED:
            parts.append("skipped: " + (self.message or "not run"))
        if self.expected:
            parts.append("Expected: " + self.expected)
        if self.actual:
            parts.append("Actual:   " + self.actual)
        if self.hint:
            parts.append("Hint:     " + self.hint)
        if self.evidence:
            parts.append("Evidence:\n" + self.evidence)
        return "\n".join(parts)


@dataclass
class LabResult:
    id: str
    title: str = ""
    tests: list[TestResult] = field(default_factory=list)
    error: str = ""              # why the lab could not be graded (missing program, run stopped, ...)

    @property
    def score(self) -> float:
        return round(sum(t.score for t in self.tests), 4)

    @property
    def max_score(self) -> float:
        return round(sum(t.max_score for t in self.tests), 4)


@dataclass
class Submission:
    student: str
    source: str = ""             # path graded
    kind: str = ""               # bin | source
    labs: list[LabResult] = field(default_factory=list)
    build_ok: bool = True
    build_log: str = ""          # the compiler's message when the build failed
    error: str = ""              # a crash of the grading itself (still reported, score 0)
    limits: str = ""             # which resource limits applied (cgroup or fallback)
    execution_time: float = 0.0
    repeat: int = 1
    started: str = ""            # ISO time

    @property
    def score(self) -> float:
        return round(sum(l.score for l in self.labs), 4)

    @property
    def max_score(self) -> float:
        return round(sum(l.max_score for l in self.labs), 4)

    def tests(self) -> list[TestResult]:
        return [t for l in self.labs for t in l.tests]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["score"], d["max_score"] = self.score, self.max_score
        for ld, lab in zip(d["labs"], self.labs):
            ld["score"], ld["max_score"] = lab.score, lab.max_score
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Submission":
        d = dict(d)
        d.pop("score", None)
        d.pop("max_score", None)
        labs = []
        for ld in d.pop("labs", []):
            ld = dict(ld)
            ld.pop("score", None)
            ld.pop("max_score", None)
            tests = []
            for td in ld.pop("tests", []):
                td = dict(td)
                runs = [Run(**r) for r in td.pop("runs", [])]
                tests.append(TestResult(**td, runs=runs))
            labs.append(LabResult(**ld, tests=tests))
        return cls(**d, labs=labs)
