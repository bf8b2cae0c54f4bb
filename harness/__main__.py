"""python3 -m harness VERB ...   (every tool of the harness; `python3 -m harness VERB --help`)

  check [--labs 01,02]   the per-lab pass/fail table of a build (the README's first command)
  grade SUBMISSION       grade one bin folder, build folder or source tree
  batch FOLDER           grade every submission in FOLDER in parallel (-j N): CSV + one JSON each
  handout OUT            write the student tree: solution regions replaced by TODO stubs
  points [--check]       the points of every test; --check: none missing (labs/points.toml)
  gradescope OUT.zip     pack the Gradescope autograder
  readme [--check]       README.md's reading-order table, made from labs/manifest.toml
  bench [--quick]        lab 19's benchmark: every server model and peer, CSV + Markdown + SVG

This is the only module of the core that reaches into harness.grading (the grader's tools):
the verbs are the user interface of both halves.
"""
from __future__ import annotations

import importlib
import sys

VERBS = {
    "check": "harness.grading.check",
    "grade": "harness.grading.grade",
    "batch": "harness.grading.batch",
    "handout": "harness.grading.handout",
    "points": "harness.grading.points",
    "gradescope": "harness.grading.gradescope.pack",
    "readme": "harness.readme_table",
    "bench": "harness.bench",
}


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    verb, rest = argv[0], argv[1:]
    if verb not in VERBS:
        print(f"python3 -m harness: unknown verb '{verb}'\n\n{__doc__.strip()}", file=sys.stderr)
        return 2
    return importlib.import_module(VERBS[verb]).main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
