"""python3 -m harness COMMAND ...   (the instructors' grading tools; see harness/README.md)

  grade SUBMISSION   grade one bin folder, build folder or source tree
  batch FOLDER       grade every submission in FOLDER in parallel (-j N): CSV + one JSON each
  handout OUT        write the student tree: solution regions replaced by TODO stubs
  points --check     every collected test of every available lab has points (labs/points.toml)
"""
from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "grade":
        from .grade import main as run
    elif cmd == "batch":
        from .batch import main as run
    elif cmd == "handout":
        from .handout import main as run
    elif cmd == "points":
        from .pointscheck import main as run
    else:
        print(f"python3 -m harness: unknown command '{cmd}'\n\n{__doc__.strip()}", file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
