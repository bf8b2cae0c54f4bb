"""Helpers of the grader's self-tests: copy the reference tree, apply a variant, run the grader."""
from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

from harness.grading.handout import tree_files
from harness.programs import REPO

PYTHON = "/usr/bin/python3"
VARIANTS = Path(__file__).resolve().parent / "variants"


def copy_tree(dst: Path, labs: list[str] | None = None) -> Path:
    """The reference source tree (tracked files, as in the working tree); only `labs` if given."""
    for rel in tree_files(REPO):
        parts = rel.parts
        if labs is not None and parts[0] == "labs" and len(parts) > 2 and parts[1][:2] not in labs:
            continue
        out = dst / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes((REPO / rel).read_bytes())
        out.chmod((REPO / rel).stat().st_mode)
    return dst


def load_variant(path: Path) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def apply_variant(tree: Path, variant: dict) -> None:
    for r in variant["replace"]:
        f = tree / r["file"]
        text = f.read_text()
        assert text.count(r["old"]) == 1, f"{r['file']}: the text to replace occurs {text.count(r['old'])} times: {r['old']!r}"
        f.write_text(text.replace(r["old"], r["new"]))


def grade(submission: Path, out: Path, *args: str, timeout: float = 600) -> tuple[dict, subprocess.CompletedProcess]:
    """Run `python3 -m harness grade` on a submission; its JSON result model and the process."""
    cmd = [PYTHON, "-m", "harness", "grade", str(submission), "--json", str(out), "--color", "never", *args]
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert out.exists(), f"no JSON report was written\n{proc.stdout[-3000:]}"
    return json.loads(out.read_text()), proc


def every_test(result: dict) -> list[dict]:
    return [t for lab in result["labs"] for t in lab["tests"]]
