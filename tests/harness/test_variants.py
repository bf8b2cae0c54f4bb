"""The grader catches classic bugs: each broken variant (variants/*.toml) of a reference program is
graded below full points, with a failing test whose hint names the bug.

Each variant is built by compiling only the program it changes (grading_tools.build_variant), and
the variants of this run are graded in parallel (two at a time) once per session; each test then
checks one variant's result model. SOCKLAB_SHARD=i/n (set by CTest, which runs n entries side by
side) takes every n-th variant from the i-th on.
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grading_tools import VARIANTS, build_variant, grade, load_variant, every_test
from harness import manifest
from harness.programs import REPO

AVAILABLE = {l.id for l in manifest.load() if l.available}
ALL = sorted(VARIANTS.glob("*.toml"))
USABLE = [p for p in ALL if load_variant(p)["lab"] in AVAILABLE]
SHARD, SHARDS = map(int, os.environ.get("SOCKLAB_SHARD", "1/1").split("/"))
MINE = USABLE[SHARD - 1::SHARDS]


EXCEPTION_NAME = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Timeout|Expired|Exit)\b")
NAMED_BUGS = {"06_second_receiver_without_reuseaddr", "04_echo_to_the_wrong_address", "07_backlog_ignored",
              "08_half_close_with_shut_rdwr", "02_receive_buffer_1024"}


def test_there_are_at_least_ten_variants():
    assert len(ALL) >= 10, [p.name for p in ALL]
    assert NAMED_BUGS <= {p.stem for p in ALL}, "issue 9's bugs each have a variant"
    for p in ALL:
        v = load_variant(p)
        assert {"lab", "bug", "hint", "replace"} <= set(v), f"{p.name} lacks a field"


@pytest.mark.parametrize("variant", [p.stem for p in ALL])
def test_each_replaced_text_occurs_once_in_the_reference(variant):
    """A reference line rewritten since the variant was made shows here, by name, in a second; in
    the graded fixture it would stop every variant of the shard."""
    for r in load_variant(VARIANTS / f"{variant}.toml")["replace"]:
        times = (REPO / r["file"]).read_text().count(r["old"])
        assert times == 1, f"{variant}: {r['file']} holds the text to replace {times} times: {r['old']!r}"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("variants")

    def one(path: Path):
        v = load_variant(path)
        programs = build_variant(v, base / path.stem)
        args = ["--labs", v["lab"]] + (["-k", v["keyword"]] if v.get("keyword") else [])
        result, proc = grade(programs, base / path.stem / "result.json", *args)
        return path.stem, (v, result, proc.stdout)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, MINE))


@pytest.mark.limit(900)
@pytest.mark.parametrize("variant", [p.stem for p in MINE])
def test_variant_scores_below_full_with_the_hint_that_names_its_bug(graded, variant):
    v, result, console = graded[variant]
    assert result["max_score"] > 0, console
    assert result["score"] < result["max_score"], f"{v['bug']}: graded full points\n{console}"
    failing = [t for t in every_test(result) if t["status"] != "passed"]
    hints = [t["hint"] for t in failing]
    assert any(re.search(v["hint"], h or "") for h in hints), (
        f"{v['bug']}: no failing test's hint matches /{v['hint']}/; hints were:\n" + "\n".join(hints))


@pytest.mark.limit(900)
def test_no_hint_or_actual_is_raw_exception_text(graded):
    """What a student reads is a sentence: never a Python exception class name, a `$ command`
    report or pytest's `that was false`."""
    bad = []
    for variant, (_, result, _) in sorted(graded.items()):
        for t in every_test(result):
            if t["status"] == "passed":
                continue
            for field in ("hint", "actual", "expected"):
                text = (t.get(field) or "").strip()
                raw = EXCEPTION_NAME.match(text) or text.startswith(("$ ", "AssertionError"))
                # a hint made of a bare assert's text: a repr or pytest's rewritten expression
                raw = raw or (field == "hint" and text.startswith(("assert ", "[", "(", "{")))
                if raw or "that was false" in text:
                    bad.append(f"{variant} {t['name']} {field}: {text[:120]}")
    assert not bad, "\n".join(bad)
