"""Student handouts from the reference solutions.

    /usr/bin/python3 -m harness handout OUT [--labs 01,02]    write the student tree to OUT
    /usr/bin/python3 -m harness handout --check                only check that markers balance

Markers (C++ `//` or Python `#` comments, on lines of their own; `BEGIN SOLUTION` and
`END SOLUTION` are accepted as older spellings):
  | // SOLUTION: what the student writes here      (the text after ':' becomes the TODO)
  | ...the reference code...
  | // STUB return 0;                              (optional: the stub body, one line each)
  | // END
In the handout the region becomes `// TODO: <what>` and the stub lines, every line at the
indentation of the SOLUTION marker, so the file still compiles. A region without STUB lines gets
the default stub, `throw std::runtime_error("<function> is not written yet");` (Python:
`raise NotImplementedError(...)`), naming the function the region sits in, so a check of the
handout fails with a message naming what is left to write. A bare `// STUB` line means "no stub".
The handout is built with -Wno-unused-parameter -Wno-unused-variable -Wno-unused-function (the
file `.handout` at its top tells CMakeLists.txt), so stubs need no `(void)x;` lines.
`# BEGIN HIDDEN TESTS` ... `# END HIDDEN TESTS` regions in Python specs are removed. Unbalanced,
nested or unterminated markers are errors (file:line). The handout leaves out build folders, .git,
tests/harness/ (the grader's own tests and variants) and slides/ (the decks show the solutions' code).
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..programs import REPO

MARK = re.compile(r"^(?P<indent>\s*)(?://|#)\s*(?P<what>BEGIN SOLUTION|END SOLUTION|BEGIN HIDDEN TESTS|"
                  r"END HIDDEN TESTS|SOLUTION(?=:|\s*$)|END(?=\s*$)|STUB)\b(?::?\s?)(?P<rest>.*)$")
# The old and the short spellings of the same two markers.
CANONICAL = {"SOLUTION": "BEGIN SOLUTION", "END": "END SOLUTION"}
KEYWORDS = {"if", "for", "while", "switch", "catch", "return", "sizeof"}
SCANNED = (".cpp", ".hpp", ".h", ".cc", ".py")
# slides/: the decks quote the reference solutions (their excerpts are the labs' marked code).
EXCLUDE = ("build/", ".git/", "tests/harness/", "slides/")


class MarkerError(ValueError):
    pass


@dataclass
class Region:
    start: int
    end: int
    kind: str   # SOLUTION | HIDDEN TESTS


def regions(text: str, name: str = "<text>") -> list[Region]:
    """The marked regions of a file; MarkerError for unbalanced markers."""
    out, open_at, open_kind = [], None, None
    for i, line in enumerate(text.splitlines(), 1):
        m = MARK.match(line)
        if not m:
            continue
        what = CANONICAL.get(m["what"], m["what"])
        if what.startswith("BEGIN"):
            kind = what[6:]
            if open_at is not None:
                raise MarkerError(f"{name}:{i}: BEGIN {kind} inside the {open_kind} region opened at "
                                  f"line {open_at}")
            open_at, open_kind = i, kind
        elif what.startswith("END"):
            kind = what[4:]
            if open_at is None:
                raise MarkerError(f"{name}:{i}: END {kind} without a BEGIN")
            if kind != open_kind:
                raise MarkerError(f"{name}:{i}: END {kind} closes the {open_kind} region opened at "
                                  f"line {open_at}")
            out.append(Region(open_at, i, kind))
            open_at = None
        elif what == "STUB" and open_kind != "SOLUTION":
            raise MarkerError(f"{name}:{i}: STUB outside a SOLUTION region")
    if open_at is not None:
        raise MarkerError(f"{name}:{open_at}: BEGIN {open_kind} is never closed")
    return out


def enclosing_function(lines: list[str], at: int) -> str:
    """The name of the function whose body holds line `at` (0-based), or "this part"."""
    indent = len(lines[at]) - len(lines[at].lstrip())
    j = at - 1
    while j >= 0:
        if lines[j].rstrip().endswith("{"):
            head, k = lines[j], j
            while head.count("(") < head.count(")") and k > 0:  # a signature over several lines
                k -= 1
                head = lines[k] + head
            own = len(lines[k]) - len(lines[k].lstrip())
            if own < indent:
                names = [n for n in re.findall(r"([A-Za-z_]\w*)\s*\(", head) if n not in KEYWORDS]
                start = head.lstrip()
                lambda_ = start.startswith("[") and not start.startswith("[[")  # [[noreturn]] is no lambda
                opener = lambda_ or start.startswith(("if", "for", "while", "switch", "}", "else"))
                if names and not opener:
                    return names[0]
                indent = own
            j = k
        j -= 1
    return "this part"


def default_stub(lines: list[str], at: int, python: bool) -> str:
    name = enclosing_function(lines, at)
    if python:
        return f'raise NotImplementedError("{name} is not written yet")'
    return f'throw std::runtime_error("{name} is not written yet");'


def strip(text: str, name: str = "<text>") -> str:
    """The handout version of a file's text."""
    regions(text, name)  # validate first
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    inside, indent, stubs, start = None, "", None, 0
    for i, line in enumerate(lines):
        m = MARK.match(line)
        what = CANONICAL.get(m["what"], m["what"]) if m else None
        if what and what.startswith("BEGIN"):
            inside, indent, stubs, start = what[6:], m["indent"], [], i
            if inside == "SOLUTION":
                comment = "//" if line.strip().startswith("//") else "#"
                todo = m["rest"].strip() or "your code here"
                out.append(f"{indent}{comment} TODO: {todo}\n")
            continue
        if what and what.startswith("END"):
            if inside == "SOLUTION":
                if not stubs:
                    python = not line.strip().startswith("//")
                    stubs = [default_stub([ln.rstrip("\n") for ln in lines], start, python)]
                out.extend(f"{indent}{s}\n" for s in stubs if s)
            inside = None
            continue
        if inside is None:
            out.append(line)
        elif inside == "SOLUTION" and what == "STUB":
            stubs.append(m["rest"].strip())
    return "".join(out)


def tree_files(root: Path) -> list[Path]:
    """Files of the tree (git's list when it is a checkout, so builds and scratch files stay out)."""
    try:
        p = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, check=True)
        names = [n for n in p.stdout.decode().split("\0") if n]
    except (subprocess.CalledProcessError, OSError):
        names = [str(f.relative_to(root)) for f in root.rglob("*") if f.is_file()]
    return [Path(n) for n in names if not n.startswith(EXCLUDE) and "/hidden/" not in n
            and (root / n).is_file()]


def check(root: Path = REPO) -> tuple[list[str], dict[str, int]]:
    """Marker errors, and how many solution regions each lab folder has."""
    errors, counts = [], {}
    for rel in tree_files(root):
        if rel.suffix not in SCANNED:
            continue
        try:
            found = regions((root / rel).read_text(), str(rel))
        except MarkerError as e:
            errors.append(str(e))
            continue
        except UnicodeDecodeError:
            continue
        n = sum(r.kind == "SOLUTION" for r in found)
        if n and rel.parts[0] == "labs":
            lab = rel.parts[1][:2]
            counts[lab] = counts.get(lab, 0) + n
    return errors, counts


def make(out: Path, root: Path = REPO) -> dict[str, int]:
    """Write the handout tree to `out`; how many solution regions were replaced per lab."""
    errors, counts = check(root)
    if errors:
        raise MarkerError("unbalanced markers:\n" + "\n".join(errors))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / ".handout").write_text("A student handout (python3 -m harness handout): CMakeLists.txt\n"
                                  "turns off the unused-parameter, -variable and -function warnings\n"
                                  "for its stubs.\n")
    for rel in tree_files(root):
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        src = root / rel
        if rel.suffix in SCANNED:
            try:
                text = src.read_text()
            except UnicodeDecodeError:
                shutil.copy2(src, dst)
                continue
            dst.write_text(strip(text, str(rel)))
            shutil.copymode(src, dst)
        else:
            shutil.copy2(src, dst)
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m harness handout", description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, nargs="?", help="folder to write the student tree to (replaced)")
    p.add_argument("--check", action="store_true", help="only check that the markers balance")
    p.add_argument("--root", type=Path, default=REPO, help="the reference tree (default: this checkout)")
    args = p.parse_args(argv)
    if args.check or not args.out:
        errors, counts = check(args.root)
        for e in errors:
            print(e, file=sys.stderr)
        listed = ", ".join(f"lab {k}: {v}" for k, v in sorted(counts.items()))
        print("solution regions: " + (listed or "none"))
        return 1 if errors else 0
    try:
        counts = make(args.out, args.root)
    except MarkerError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"wrote the handout to {args.out}; solution regions replaced: " +
          (", ".join(f"lab {k}: {v}" for k, v in sorted(counts.items())) or "none"))
    return 0
