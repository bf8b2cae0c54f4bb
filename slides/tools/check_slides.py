#!/usr/bin/python3
"""check_slides.py: the decks in slides/ agree with the labs they teach, and build to real pages.

Usage:
  check_slides.py --root SRC            check the sources (no build, no browser needed)
  check_slides.py --root SRC --fix      first copy every excerpt (and README diagram) from its source
  check_slides.py --root SRC --built D  check the built decks in D (slides/build.sh D made them)

Source checks:
- every lab that labs/manifest.toml marks "available" has slides/NN-topic.md with `marp: true`
  front matter, and 8 to 15 slides;
- every fenced C++ block has `<!-- source: labs/NN-topic/file.cpp#tag -->` on the line above it
  (or `<!-- source: none -->` for code that is not from a lab), and its text equals the region
  between `// [slide:tag]` and `// [/slide:tag]` in that file (a diff is printed when not);
  at most 12 lines, so it fits a slide (lines over 100 columns wrap: a warning);
- no remote URL anywhere in a deck; every image exists, or is an .svg made from a .mmd/.dot/.gp
  file beside it;
- diagrams tell the truth the tests assert: a Mermaid file with `%% scenario: NAME` notes the
  states of each end (`Note over C: FIN_WAIT1`) in the order tests/labs/test_09_tcp_states.py
  expects them for that scenario; `%% test: NAME` names a test that exists; the state machine
  marks as observed exactly the states lab 09's tests observe;
- an available lab's README links to its deck; a ```mermaid block under
  `<!-- diagram: slides/diagrams/X.mmd -->` equals that file.
A deck of a lab that is not "available" yet (its sources land later) gets every check but one:
an excerpt whose file or region does not exist yet is listed as PENDING, not failed, and --fix
leaves it alone; once the manifest marks the lab available, the excerpt must match.

Built checks: each deck has .html and .pdf; the PDF has one page per slide; the HTML loads nothing
from the network; no page shows text too small to read from the back of a room (shrunk code);
each page has text (pdftotext), shows its slide's heading and every Chinese character on the
slide (a missing CJK font draws boxes).
The checker ends with `slides: N passed, M failed` and exits 1 when anything failed.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import re
import subprocess
import sys
import tomllib
from pathlib import Path

EXCERPT_LINES = 12
EXCERPT_COLUMNS = 100
SLIDES_PER_DECK = (8, 15)
# The smallest text a page may show, as pdftotext's word-box height in points (the page is
# 960 x 540 pt). Code at the theme's 20px is about 17.5; Marp shrinks a block that does not
# fit, and below 12 (text under about 14px on a 720p projector) it is no longer readable.
SMALLEST_TEXT_PT = 12.0
WORD_BOX = re.compile(r'<word xMin="[\d.]+" yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">([^<]*)</word>')
SOURCE = re.compile(r"^<!--\s*source:\s*(\S+)\s*-->\s*$")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
CODE_LANGS = {"c", "cpp", "c++", "h", "hpp", "cc"}
MARK = re.compile(r"^\s*// \[(/?)slide:([a-z0-9-]+)\]\s*$")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")
REMOTE = re.compile(r"\b(?:https?|ftp)://", re.I)
DIAGRAM_NOTE = re.compile(r"^<!--\s*diagram:\s*(\S+)\s*-->\s*$")
STATE_NOTE = re.compile(r"^\s*Note (?:over|left of|right of) (\w+)\s*:\s*([A-Z_0-9]+)\b")
RENDERED_FROM = (".mmd", ".dot", ".gp")


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def ok(self, cond: bool, what: str, detail: str = "") -> bool:
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL {what}" + (f"\n{detail.rstrip()}" if detail else ""))
        return cond


# ---- decks as slides -------------------------------------------------------------------------

def split_front_matter(text: str) -> tuple[str, str]:
    if not text.startswith("---\n"):
        return "", text
    end = text.find("\n---\n", 4)
    return (text[4:end], text[end + 5:]) if end > 0 else ("", text)


def slides_of(body: str) -> list[str]:
    """The deck's slides: split at `---` lines outside code fences (Marp's rule)."""
    out, cur, fence = [], [], None
    for line in body.split("\n"):
        m = FENCE.match(line)
        if m and (fence is None or m[1].startswith(fence)):
            fence = None if fence else m[1]
        if fence is None and line.strip() == "---":
            out.append("\n".join(cur))
            cur = []
        else:
            cur.append(line)
    out.append("\n".join(cur))
    return [s for s in out if s.strip()]


def code_blocks(lines: list[str]) -> list[tuple[int, int, str, str | None]]:
    """(first body line, end line exclusive, language, source) of each fenced block."""
    blocks, i = [], 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith(m[1]):
            j += 1
        src = SOURCE.match(lines[i - 1]) if i > 0 else None
        blocks.append((i + 1, j, m[2].lower(), src[1] if src else None))
        i = j + 1
    return blocks


def dedent(lines: list[str]) -> list[str]:
    lines = [line.rstrip() for line in lines]
    indents = [len(line) - len(line.lstrip()) for line in lines if line.strip()]
    cut = min(indents, default=0)
    return [line[cut:] for line in lines]


def region(root: Path, ref: str) -> tuple[list[str] | None, str]:
    """The lines of `file#tag` between its slide markers (markers themselves left out)."""
    path, _, tag = ref.partition("#")
    file = root / path
    if not file.is_file():
        return None, f"{path} does not exist"
    if not tag:
        return None, f"{ref}: name the region (#tag)"
    out, inside, found = [], False, False
    for line in file.read_text(encoding="utf-8").splitlines():
        m = MARK.match(line)
        if m and m[2] == tag:
            if m[1] == "" and not found:
                inside = found = True
            elif m[1] == "/" and inside:
                return dedent(out), ""
            continue
        if inside and not m:
            out.append(line)
    if not found:
        return None, f"{path} has no `// [slide:{tag}]` marker"
    return None, f"{path}: `// [slide:{tag}]` is never closed by `// [/slide:{tag}]`"


def check_deck(root: Path, deck: Path, rep: Report, fix: bool, pending: bool = False) -> None:
    name = deck.relative_to(root)
    text = deck.read_text(encoding="utf-8")
    front, body = split_front_matter(text)
    rep.ok(re.search(r"^marp:\s*true\s*$", front, re.M) is not None, f"{name}: front matter has `marp: true`")
    n = len(slides_of(body))
    lo, hi = SLIDES_PER_DECK
    rep.ok(lo <= n <= hi, f"{name}: {lo}-{hi} slides", f"  it has {n}")
    rep.ok(not REMOTE.search(text), f"{name}: no remote URLs",
           "\n".join(f"  {line}" for line in text.splitlines() if REMOTE.search(line)))

    lines = text.split("\n")
    changed = False
    for start, end, lang, src in reversed(code_blocks(lines)):
        where = f"{name}:{start}"
        if lang not in CODE_LANGS:
            continue
        if not rep.ok(src is not None, f"{where}: a {lang} block names its source",
                      "  put <!-- source: labs/NN-topic/FILE#tag --> on the line above the fence"):
            continue
        body_lines = lines[start:end]
        rep.ok(len(body_lines) <= EXCERPT_LINES, f"{where}: at most {EXCERPT_LINES} code lines",
               f"  {len(body_lines)} lines: choose a smaller region")
        wide = [line for line in body_lines if len(line) > EXCERPT_COLUMNS]
        if wide:  # the theme wraps them; clang-format (column limit 100) makes the source fit
            print(f"WARN {where}: {len(wide)} code line(s) over {EXCERPT_COLUMNS} columns wrap on the slide "
                  "(format the source with clang-format, then --fix)")
        if src == "none":
            continue
        want, why = region(root, src)
        if want is None and pending:  # the lab's sources are not on this branch yet
            print(f"PENDING {where}: {why} (lab not available yet; checked once it is)")
            continue
        if not rep.ok(want is not None, f"{where}: region {src} exists", f"  {why}"):
            continue
        if fix and body_lines != want:
            lines[start:end] = want
            changed = True
            continue
        diff = difflib.unified_diff(want, body_lines, f"{src} (the lab)", f"{name} (the slide)", lineterm="")
        rep.ok(body_lines == want, f"{where}: excerpt equals {src}",
               "\n".join(diff) + "\n  (run slides/tools/check_slides.py --fix to copy it from the lab)")
    if changed:
        deck.write_text("\n".join(lines), encoding="utf-8")
        print(f"fixed excerpts in {name}")

    for ref in IMAGE.findall(text):
        target = deck.parent / ref
        made = target.suffix == ".svg" and any(target.with_suffix(s).is_file() for s in RENDERED_FROM)
        rep.ok(target.is_file() or made, f"{name}: image {ref} resolves",
               "  neither the file nor a .mmd/.dot/.gp source of it exists")


# ---- diagrams and the tests' truth -------------------------------------------------------------

def literal(node: ast.AST, names: dict) -> object:
    """Evaluate the list/tuple/dict literals (and `A + [...]`) the lab 09 spec is written in."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return literal(node.left, names) + literal(node.right, names)
    if isinstance(node, ast.Name):
        return names[node.id]
    if isinstance(node, ast.List):
        return [literal(e, names) for e in node.elts]
    if isinstance(node, ast.Tuple):
        return tuple(literal(e, names) for e in node.elts)
    if isinstance(node, ast.Dict):
        return {literal(k, names): literal(v, names) for k, v in zip(node.keys, node.values)}
    return ast.literal_eval(node)


def expected_states(root: Path) -> dict[str, list[tuple[str, str]]]:
    spec = root / "tests/labs/test_09_tcp_states.py"
    names: dict = {}
    for node in ast.parse(spec.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("OPENED", "EXPECTED", "RFC_TO_LINUX"):
                names[node.targets[0].id] = literal(node.value, names)
    return names.get("EXPECTED", {})


def runs(states: list[str]) -> list[str]:
    return [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]


def check_diagrams(root: Path, rep: Report) -> None:
    diagrams = root / "slides/diagrams"
    expected = expected_states(root)
    tests = "\n".join(p.read_text(encoding="utf-8") for p in sorted((root / "tests/labs").glob("test_*.py")))
    for mmd in sorted(diagrams.glob("*.mmd")):
        text = mmd.read_text(encoding="utf-8")
        name = mmd.relative_to(root)
        for test in re.findall(r"^%% test: (\w+)", text, re.M):
            rep.ok(f"def {test}(" in tests, f"{name}: the test it cites, {test}, exists")
        m = re.search(r"^%% scenario: (\S+) ends (\w+)=(\w+) (\w+)=(\w+)", text, re.M)
        if not m:
            continue
        scenario, ends = m[1], {m[2]: (m[3], 0), m[4]: (m[5], 1)}
        if not rep.ok(scenario in expected, f"{name}: scenario {scenario} is one test_09 checks"):
            continue
        for actor, (end, column) in ends.items():
            noted = [sm[2] for line in text.splitlines() if (sm := STATE_NOTE.match(line)) and sm[1] == actor]
            truth = runs([row[column] for row in expected[scenario]])
            ok = any(truth[i:i + len(noted)] == noted for i in range(len(truth) - len(noted) + 1)) and noted
            rep.ok(bool(ok), f"{name}: the {end}'s states follow test_09's {scenario}",
                   f"  diagram: {' -> '.join(noted)}\n  tests:   {' -> '.join(truth)}")

    dot = diagrams / "tcp-states.dot"
    if dot.is_file():
        text = dot.read_text(encoding="utf-8")
        marked = set(re.findall(r"^\s*(\w+)\s*\[[^\]]*class=\"?observed", text, re.M))
        seen = {s for seq in expected.values() for row in seq for s in row}
        rep.ok(marked == seen, f"{dot.relative_to(root)}: marks as observed the states lab 09 observes",
               f"  marked: {sorted(marked)}\n  tests observe: {sorted(seen)}")
        nodes = set(re.findall(r"^\s*(\w+)\s*\[", text, re.M)) - {"node", "edge", "graph"}
        rep.ok(len(nodes) == 11, f"{dot.relative_to(root)}: the eleven RFC 793 states", f"  {sorted(nodes)}")


def check_committed_svg(root: Path, svg: Path, rep: Report, fix: bool) -> None:
    """A README's SVG drawn from slides/diagrams/NAME.dot shows every node and label of it."""
    dot = root / "slides/diagrams" / svg.with_suffix(".dot").name
    if not dot.is_file():
        return
    if fix and subprocess.run(["dot", "-Tsvg", "-o", str(svg), str(dot)]).returncode == 0:
        print(f"redrew {svg.relative_to(root)}")
    source = dot.read_text(encoding="utf-8")
    labels = [part for label in re.findall(r'label="([^"]+)"', source)  # records: a|b, lines: a\nb
              for part in re.split(r"\\n|\|", label)]
    wanted = {re.sub(r"<\w+>", "", part).strip() for part in labels} - {""}
    wanted |= set(re.findall(r"^\s*(\w+)\s*\[", source, re.M))
    drawn = svg.read_text(encoding="utf-8").replace("&#45;", "-").replace("&amp;", "&")
    stale = sorted(w for w in wanted - {"node", "edge", "graph"} if w not in drawn)
    rep.ok(not stale, f"{svg.relative_to(root)}: drawn from the current {dot.relative_to(root)}",
           f"  missing: {stale} (run check_slides.py --fix, which runs dot)")


def check_readmes(root: Path, rep: Report, fix: bool, available: set[str]) -> None:
    for readme in sorted((root / "labs").glob("[0-9][0-9]-*/README.md")):
        deck = root / "slides" / f"{readme.parent.name}.md"
        text = readme.read_text(encoding="utf-8")
        name = readme.relative_to(root)
        if deck.is_file() and readme.parent.name in available:
            rep.ok(f"slides/{deck.name}" in text, f"{name}: links to its deck slides/{deck.name}")
        lines, changed = text.split("\n"), False
        for i, line in enumerate(lines):
            m = DIAGRAM_NOTE.match(line)
            if not m:
                continue
            src = root / m[1]
            if not rep.ok(src.is_file(), f"{name}:{i + 1}: diagram {m[1]} exists"):
                continue
            if src.suffix == ".svg":
                check_committed_svg(root, src, rep, fix)
                continue
            j = i + 2
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            block, want = lines[i + 2:j], src.read_text(encoding="utf-8").rstrip("\n").split("\n")
            if rep.ok(i + 1 < len(lines) and lines[i + 1].strip() == "```mermaid",
                      f"{name}:{i + 2}: a ```mermaid block follows the diagram note"):
                if fix and block != want:
                    lines[i + 2:j], changed = want, True
                    continue
                rep.ok(block == want, f"{name}:{i + 1}: the Mermaid block equals {m[1]}",
                       "\n".join(difflib.unified_diff(want, block, m[1], str(name), lineterm="")))
        if changed:
            readme.write_text("\n".join(lines), encoding="utf-8")
            print(f"fixed diagrams in {name}")


def check_sources(root: Path, rep: Report, fix: bool) -> list[Path]:
    manifest = tomllib.loads((root / "labs/manifest.toml").read_text(encoding="utf-8"))
    decks = []
    for lab in manifest["lab"]:
        if lab.get("status") != "available":
            continue
        deck = root / "slides" / f"{lab['dir']}.md"
        if rep.ok(deck.is_file(), f"lab {lab['id']} has a deck slides/{lab['dir']}.md"):
            decks.append(deck)
    available = {lab["dir"] for lab in manifest["lab"] if lab.get("status") == "available"}
    extra = sorted(set(root.glob("slides/[0-9][0-9]-*.md")) - set(decks))
    for deck in decks + extra:
        check_deck(root, deck, rep, fix, pending=deck.stem not in available)
    check_diagrams(root, rep)
    check_readmes(root, rep, fix, available)
    return decks + extra


# ---- built output ------------------------------------------------------------------------------

def tool(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def words(text: str) -> set[str]:
    return set(re.findall(r"[A-Za-z0-9_]{3,}|[\u4e00-\u9fff]", text))


def check_built(root: Path, built: Path, rep: Report) -> None:
    for deck in sorted(root.glob("slides/[0-9][0-9]-*.md")):
        stem = deck.stem
        html, pdf = built / f"{stem}.html", built / f"{stem}.pdf"
        if not rep.ok(html.is_file() and pdf.is_file(), f"{stem}: built {stem}.html and {stem}.pdf"):
            continue
        slides = slides_of(split_front_matter(deck.read_text(encoding="utf-8"))[1])
        page = html.read_text(encoding="utf-8")
        in_html = page.count("<svg data-marpit-svg")
        pages = int(re.search(r"^Pages:\s+(\d+)", tool("pdfinfo", str(pdf)), re.M)[1])
        rep.ok(pages == len(slides) == in_html, f"{stem}: one PDF page per slide",
               f"  deck {len(slides)} slides, HTML {in_html}, PDF {pages} pages")
        remote = re.findall(r"""(?:src|href)\s*=\s*["']?((?:https?:)?//[^"'\s>]+)""", page)
        rep.ok(not remote, f"{stem}: the HTML loads nothing from the network", "\n".join(remote))
        rep.ok("```mermaid" not in page, f"{stem}: no unrendered Mermaid block")
        boxes = tool("pdftotext", "-bbox", str(pdf), "-").split("<page ")[1:]
        for number, page_boxes in enumerate(boxes, 1):
            small = [(float(b) - float(a), w) for a, b, w in WORD_BOX.findall(page_boxes)
                     if float(b) - float(a) < SMALLEST_TEXT_PT]
            rep.ok(not small, f"{stem}: page {number} has no text smaller than {SMALLEST_TEXT_PT} pt",
                   f"  {len(small)} words, e.g. {small[:3]}: too much on the slide (code is shrunk "
                   "to fit, a diagram scaled down): split it")
        for number, slide in enumerate(slides[:pages], 1):
            text = tool("pdftotext", "-f", str(number), "-l", str(number), "-layout", str(pdf), "-")
            heading = re.search(r"^#+\s+(.+)$", slide, re.M)
            expect = words(re.sub(r"[`*_]", "", heading[1])) if heading else set()
            got = words(text)
            ok = len(got) >= 3 and (not expect or len(expect & got) >= max(1, len(expect) // 2))
            rep.ok(ok, f"{stem}: page {number} shows text and its heading",
                   f"  heading words {sorted(expect)}\n  page text: {text.strip()[:200]!r}")
            # A character the fonts lack is drawn as a box and drops out of the text layer.
            hanzi = set(re.findall(r"[\u4e00-\u9fff]", slide)) - set(text)
            rep.ok(not hanzi, f"{stem}: page {number} renders its Chinese text",
                   f"  missing from the page: {''.join(sorted(hanzi))} (apt-get install fonts-wqy-microhei)")
        for ref in IMAGE.findall(deck.read_text(encoding="utf-8")):
            rep.ok((built / ref).is_file(), f"{stem}: image {ref} was built")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    ap.add_argument("--built", type=Path, help="check the decks slides/build.sh built here")
    ap.add_argument("--fix", action="store_true", help="copy excerpts and README diagrams from their sources")
    args = ap.parse_args()
    rep = Report()
    root = args.root.resolve()
    if args.built:
        check_built(root, args.built.resolve(), rep)
    else:
        check_sources(root, rep, args.fix)
    print(f"slides: {rep.passed} passed, {rep.failed} failed")
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
