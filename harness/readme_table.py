"""The generated parts of the READMEs: README.md's reading-order table (from labs/manifest.toml)
and each lab README's Output section (from the lab's output contract, labs/NN-topic/output.toml).

    /usr/bin/python3 -m harness readme            print the reading-order table
    /usr/bin/python3 -m harness readme --write    rewrite every generated part between its markers
    /usr/bin/python3 -m harness readme --check    exit 1 (naming the files) when one is stale

tests/harness/test_readme.py and tests/harness/test_contracts.py fail when a README is stale.
"""
from __future__ import annotations

import sys
from pathlib import Path

from . import manifest
from .output import Contract, Line, contract
from .programs import REPO

BEGIN, END = "<!-- reading-order: begin -->", "<!-- reading-order: end -->"
LINKS_BEGIN, LINKS_END = "<!-- output-links: begin -->", "<!-- output-links: end -->"
OUTPUT_BEGIN, OUTPUT_END = "<!-- output: begin (made from output.toml) -->", "<!-- output: end -->"


def table() -> str:
    rows = ["| Lab | The notes' section | What it teaches | Programs | Status |", "|---|---|---|---|---|"]
    for lab in manifest.load():
        title = f"{lab.id} {lab.title}"
        name = f"[{title}](labs/{lab.dir}/README.md)" if lab.available else title
        programs = ", ".join(f"`{p}`" for p in lab.programs) or "—"
        state = "available" if lab.available else "coming"
        rows.append(f"| {name} | {lab.notes} | {lab.concept} | {programs} | {state} |")
    return "\n".join(rows)


def links() -> str:
    """README.md's list of every lab's Output section (labs with an output contract)."""
    found = [f"[{lab.id}](labs/{lab.dir}/README.md#output)" for lab in manifest.load()
             if lab.available and (REPO / "labs" / lab.dir / "output.toml").is_file()]
    return "Each lab's lines: " + ", ".join(found) + "."


def _code(text: str) -> str:
    """`text` as one Markdown code span, whatever backticks it holds."""
    fence = "``" if "`" in text else "`"
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _prose(text: str) -> str:
    """Plain text for Markdown: <values>, backslashes and asterisks shown as typed, `code` kept."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):   # even parts are outside code spans
        parts[i] = (parts[i].replace("\\", "\\\\").replace("<", "&lt;").replace(">", "&gt;")
                    .replace("*", "\\*").replace("_", "\\_"))
    return "`".join(parts)


def _free(line: Line) -> str:
    rx = line.pattern.pattern
    start, end = rx.startswith("^"), rx.endswith("$") and not rx.endswith("\\$")
    if start and end:
        return "the whole line"
    if start:
        return "the line starts so; free text may follow"
    if end:
        return "the line ends so; free text may come before"
    return "anywhere in a line; free text around it"


def output_section(c: Contract) -> str:
    """The lab README's Output section body, made from its contract."""
    lab = manifest.by_id(c.lab)
    out = [f"What the specs read from each program, one printed line at a time (made from "
           f"`labs/{lab.dir}/output.toml`; edit that file, then `/usr/bin/python3 -m harness readme "
           f"--write`). Print these lines exactly; any other line is free text. `<name>` marks a value; "
           f"the pattern is the Python regular expression matched against one line. The ready line, "
           f"the error line `<prog>: <what>: <strerror> [<ENAME>]` and the exit statuses 0/1/2 are the "
           f"suite's (README.md, [The contract](../../README.md#the-contract-for-your-own-programs))."]
    for program in lab.programs:
        lines = c.of(program)
        exits = [e for e in c.exits if e.program == program]
        if not lines and not exits:
            continue
        out += ["", f"### `{program}`"]
        for line in lines:
            out += ["", f"- **{line.name}** ({line.stream}): {_code(line.template)}",
                    f"  - when: {_prose(line.when)}",
                    f"  - example: {_code(line.example)}",
                    f"  - pattern ({_free(line)}): {_code(line.pattern.pattern)}"]
        if exits:
            out += ["", "Exit statuses:", ""]
            for e in exits:
                after = f", after the **{e.stderr}** line" if e.stderr else ""
                out.append(f"- **{e.status}**: {_prose(e.when)}{after}")
    return "\n".join(out)


def _between(text: str, begin: str, end: str, body: str, where: Path) -> str:
    if begin not in text or end not in text:
        raise ValueError(f"{where} lacks the markers {begin} ... {end}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def rewrite(text: str) -> str:
    """README.md with its reading-order table and its list of Output sections regenerated."""
    text = _between(text, BEGIN, END, table(), REPO / "README.md")
    return _between(text, LINKS_BEGIN, LINKS_END, links(), REPO / "README.md")


def rewrite_lab(text: str, lab_id: str) -> str:
    """A lab README with its Output section regenerated from the lab's contract."""
    lab = manifest.by_id(lab_id)
    return _between(text, OUTPUT_BEGIN, OUTPUT_END, output_section(contract(lab.id)),
                    REPO / "labs" / lab.dir / "README.md")


def generated() -> dict[Path, tuple[str, str]]:
    """Every README with a generated part: path -> (text now, text it should have)."""
    readme = REPO / "README.md"
    files = {readme: (readme.read_text(), rewrite(readme.read_text()))}
    for lab in manifest.load():
        path = REPO / "labs" / lab.dir / "README.md"
        if lab.available and (REPO / "labs" / lab.dir / "output.toml").is_file():
            files[path] = (path.read_text(), rewrite_lab(path.read_text(), lab.id))
    return files


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if "-h" in args or "--help" in args:
        print(__doc__.strip())
        return 0
    if "--write" in args:
        for path, (now, wanted) in generated().items():
            if now != wanted:
                path.write_text(wanted)
                print(f"rewrote {path.relative_to(REPO)}")
    elif "--check" in args:
        stale = [p for p, (now, wanted) in generated().items() if now != wanted]
        for path in stale:
            print(f"{path.relative_to(REPO)}: a generated part is stale; run "
                  f"/usr/bin/python3 -m harness readme --write", file=sys.stderr)
        return 1 if stale else 0
    else:
        print(table())
    return 0
