"""The grader catches classic bugs: each broken variant (variants/*.toml) of a reference program is
graded below full points, with a failing test whose hint names the bug.

All variants are built and graded in parallel (two at a time) once per session; each test then
checks one variant's result model.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grading_tools import VARIANTS, apply_variant, copy_tree, grade, load_variant, every_test
from harness import manifest

AVAILABLE = {l.id for l in manifest.load() if l.available}
ALL = sorted(VARIANTS.glob("*.toml"))
USABLE = [p for p in ALL if load_variant(p)["lab"] in AVAILABLE]


def test_there_are_at_least_ten_variants():
    assert len(ALL) >= 10, [p.name for p in ALL]
    for p in ALL:
        v = load_variant(p)
        assert {"lab", "bug", "hint", "replace"} <= set(v), f"{p.name} lacks a field"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("variants")

    def one(path: Path):
        v = load_variant(path)
        tree = copy_tree(base / path.stem / "src", labs=[v["lab"]])
        apply_variant(tree, v)
        args = ["--labs", v["lab"]] + (["-k", v["keyword"]] if v.get("keyword") else [])
        result, proc = grade(tree, base / path.stem / "result.json", *args)
        return path.stem, (v, result, proc.stdout)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, USABLE))


@pytest.mark.limit(900)
@pytest.mark.parametrize("variant", [p.stem for p in USABLE])
def test_variant_scores_below_full_with_the_hint_that_names_its_bug(graded, variant):
    v, result, console = graded[variant]
    assert result["build_ok"], f"the variant did not build:\n{result['build_log']}"
    assert result["max_score"] > 0, console
    assert result["score"] < result["max_score"], f"{v['bug']}: graded full points\n{console}"
    failing = [t for t in every_test(result) if t["status"] != "passed"]
    hints = [t["hint"] for t in failing]
    assert any(re.search(v["hint"], h or "") for h in hints), (
        f"{v['bug']}: no failing test's hint matches /{v['hint']}/; hints were:\n" + "\n".join(hints))
