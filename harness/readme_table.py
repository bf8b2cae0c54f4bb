"""The reading-order table of README.md, made from labs/manifest.toml.

    /usr/bin/python3 -m harness readme            print the table
    /usr/bin/python3 -m harness readme --write    rewrite it in README.md between the markers
    /usr/bin/python3 -m harness readme --check    exit 1 if README.md's table is stale

tests/harness/test_readme.py fails when README.md and the manifest disagree.
"""
from __future__ import annotations

import sys

from . import manifest
from .programs import REPO

BEGIN, END = "<!-- reading-order: begin -->", "<!-- reading-order: end -->"


def table() -> str:
    rows = ["| Lab | The notes' section | What it teaches | Programs | Status |", "|---|---|---|---|---|"]
    for lab in manifest.load():
        name = f"[{lab.id} {lab.title}](labs/{lab.dir}/README.md)" if lab.available else f"{lab.id} {lab.title}"
        programs = ", ".join(f"`{p}`" for p in lab.programs) or "—"
        rows.append(f"| {name} | {lab.notes} | {lab.concept} | {programs} | {'available' if lab.available else 'coming'} |")
    return "\n".join(rows)


def rewrite(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "-h" in args or "--help" in args:
        print(__doc__.strip())
        return 0
    readme = REPO / "README.md"
    if "--check" in args:
        stale = rewrite(readme.read_text()) != readme.read_text()
        if stale:
            print("README.md is stale: run /usr/bin/python3 -m harness readme --write", file=sys.stderr)
        return 1 if stale else 0
    if "--write" in args:
        readme.write_text(rewrite(readme.read_text()))
    else:
        print(table())
    return 0
