r"""Pack the Gradescope autograder zip:

    /usr/bin/python3 -m harness gradescope autograder.zip [--hidden DIR] [--labs 01,02] \
        [--extra "--skip-slow"]

The zip holds setup.sh and run_autograder at its root, socklab/ (the tracked files of this
checkout: labs, harness, specs) and, with --hidden, hidden/ (your hidden tests and their points).
Upload it as the assignment's autograder ("Zip file upload", Ubuntu base image).
"""
from __future__ import annotations

import argparse
import zipfile
from pathlib import Path

from ...programs import REPO
from ..handout import tree_files

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m harness gradescope", description=__doc__.split("\n\n")[0])
    p.add_argument("zip", type=Path)
    p.add_argument("--hidden", type=Path, help="folder of hidden tests (test_NN_*.py, points.toml)")
    p.add_argument("--labs", default="", help="labs to grade (default: every available lab)")
    p.add_argument("--extra", default="", help="more grade options, e.g. \"--skip-slow --repeat 2\"")
    args = p.parse_args(argv)
    with zipfile.ZipFile(args.zip, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("setup.sh", "run_autograder"):
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o755 << 16
            z.writestr(info, (HERE / name).read_bytes())
        z.writestr("grading.env", f"LABS={args.labs}\nEXTRA=\"{args.extra}\"\n")
        for rel in tree_files(REPO):
            src = REPO / rel
            info = zipfile.ZipInfo(f"socklab/{rel}")
            info.external_attr = (src.stat().st_mode & 0o777) << 16
            z.writestr(info, src.read_bytes())
        if args.hidden:
            for f in sorted(args.hidden.rglob("*")):
                if f.is_file():
                    z.write(f, f"hidden/{f.relative_to(args.hidden)}")
    print(f"wrote {args.zip}")
    return 0
