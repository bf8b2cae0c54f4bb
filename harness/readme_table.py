"""The reading-order table of README.md, made from labs/manifest.toml.

    /usr/bin/python3 -m harness.readme_table          print the table
    /usr/bin/python3 -m harness.readme_table --write  rewrite it in README.md between the markers

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


def main() -> int:
    if "--write" in sys.argv[1:]:
        readme = REPO / "README.md"
        readme.write_text(rewrite(readme.read_text()))
    else:
        print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
