#!/usr/bin/python3
"""check_slides.py: the decks in slides/ agree with the labs they teach, and build to real pages.

Usage:
  check_slides.py --root SRC            check the sources (no build, no browser needed)
  check_slides.py --root SRC --fix      first copy every excerpt (and README diagram) from its source
  check_slides.py --root SRC --built D  check the built decks in D (slides/build.sh D made them)
  check_slides.py --self-test           show that the layout checks fail on decks made to break them

Source checks:
- every lab that labs/manifest.toml marks "available" has slides/NN-topic.md with `marp: true`
  front matter, and 8 to 15 slides;
- every fenced C++ block has `<!-- source: labs/NN-topic/file.cpp#tag -->` on the line above it
  (or `<!-- source: none -->` for code that is not from a lab), and its text equals the region
  between `// [slide:tag]` and `// [/slide:tag]` in that file (a diff is printed when not);
- every fenced block (C++, shell, output) has at most 12 lines of at most 99 columns, so it fits
  a slide unshrunk;
- a paragraph or list item never goes on in the next source line mid-sentence (Marp breaks the
  slide's line at every newline);
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
from the network; no page shows text too small to read from the back of a room (shrunk code,
or a diagram's SVG text once the slide has scaled the image);
each page has text (pdftotext), shows its slide's heading, every word of the slide's Markdown
(Marp clips what runs off the bottom or the right edge) and every Chinese character on the slide
(a missing CJK font draws boxes).
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
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

EXCERPT_LINES = 12
# The theme's code is 20px DejaVu Sans Mono in a 1220px-wide block: 99 columns fit. A longer line
# makes Marp shrink the whole block (or the theme wraps it): every fenced block, C++ or shell
# output, stays within 99 columns (a CJK character counts as two).
CODE_COLUMNS = 99
SLIDES_PER_DECK = (8, 15)
# The smallest text a page may show, as pdftotext's word-box height in points (the page is
# 960 x 540 pt). Code at the theme's 20px is about 17.5; Marp shrinks a block that does not
# fit, and below 12 (text under about 14px on a 720p projector) it is no longer readable.
SMALLEST_TEXT_PT = 12.0
WORD_BOX = re.compile(r'<word xMin="[\d.]+" yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">([^<]*)</word>')
# How the theme (themes/socklab.css) places an image: 1280px slide less 2 x 30px padding, and
# `section img { max-width: 100%; max-height: 520px }`. A diagram's text, scaled with it, must be
# as large as SMALLEST_TEXT_PT too (pdftotext does not see text inside an image).
IMAGE_BOX = (1220.0, 520.0)
SMALLEST_IMAGE_TEXT_PX = SMALLEST_TEXT_PT / 0.75  # the page's 960 pt are the slide's 1280 px
IMAGE_SIZE = re.compile(r"\b(w|h|width|height):(\d+(?:\.\d+)?)(?:px)?\b")
IMAGE_ALT = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)")
SOURCE = re.compile(r"^<!--\s*source:\s*(\S+)\s*-->\s*$")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")
CODE_LANGS = {"c", "cpp", "c++", "h", "hpp", "cc"}
MARK = re.compile(r"^\s*// \[(/?)slide:([a-z0-9-]+)\]\s*$")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)")
REMOTE = re.compile(r"\b(?:https?|ftp)://", re.I)
DIAGRAM_NOTE = re.compile(r"^<!--\s*diagram:\s*(\S+)\s*-->\s*$")
STATE_NOTE = re.compile(r"^\s*Note (?:over|left of|right of) (\w+)\s*:\s*([A-Z_0-9]+)\b")
RENDERED_FROM = (".mmd", ".dot", ".gp")
# Marp breaks a line at every newline of a paragraph: a line that ends mid-sentence and goes on in
# the next source line makes a ragged break on the slide ("holding only" / "the ready fds").
NEW_BLOCK = re.compile(r"^\s*(?:[-*+] |\d+\. |\||#|!\[|<!--|```|~~~|---\s*$|$)")
MID_SENTENCE = re.compile(r"[\w,;(]$")


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


def columns(line: str) -> int:
    """The width of a line in a monospace font: CJK (wide) characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


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
    fence, first = None, len(text[:len(text) - len(body)].split("\n")) - 1
    for i in range(first, len(lines) - 1):
        m = FENCE.match(lines[i])
        if m and (fence is None or m[1].startswith(fence)):
            fence = None if fence else m[1]
            continue
        line, after = lines[i].rstrip(), lines[i + 1]
        if fence or not line or (NEW_BLOCK.match(line) and not re.match(r"\s*(?:[-*+] |\d+\. )", line)):
            continue
        rep.ok(NEW_BLOCK.match(after) is not None or not MID_SENTENCE.search(line),
               f"{name}:{i + 1}: the sentence goes on in the same source line",
               f"  {line.strip()[-50:]!r} / {after.strip()[:50]!r}: Marp breaks the line here; "
               "join the two lines")
    changed = False
    for start, end, lang, src in reversed(code_blocks(lines)):
        where = f"{name}:{start}"
        body_lines = lines[start:end]
        if lang != "mermaid":  # shell sessions and output too: they are on the slide as well
            rep.ok(len(body_lines) <= EXCERPT_LINES, f"{where}: at most {EXCERPT_LINES} code lines",
                   f"  {len(body_lines)} lines: choose a smaller region, trim the output or split the slide")
            wide = [(columns(line), line) for line in body_lines if columns(line) > CODE_COLUMNS]
            rep.ok(not wide, f"{where}: code lines fit in {CODE_COLUMNS} columns",
                   "\n".join(f"  {n} columns: {line}" for n, line in wide)
                   + "\n  (break the command with \\, trim the output, or format the source and --fix)")
        if lang not in CODE_LANGS:
            continue
        if not rep.ok(src is not None, f"{where}: a {lang} block names its source",
                      "  put <!-- source: labs/NN-topic/FILE#tag --> on the line above the fence"):
            continue
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


def tokens(text: str) -> Counter:
    """Every word of two or more letters or digits, and every hanzi, counted. A hyphen inside a
    word is dropped first: pdftotext joins `signal-` and `safety` across a line break."""
    return Counter(re.findall(r"[A-Za-z0-9]{2,}|[\u4e00-\u9fff]", re.sub(r"(?<=\w)-\s*(?=\w)", "", text)))


def slide_text(slide: str) -> Counter:
    """The words a slide's Markdown puts on the page: no comments, image or link targets, fences."""
    text = re.sub(r"<!--.*?-->", " ", slide, flags=re.S)
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return tokens(re.sub(r"^(```+|~~~+)[\w+-]*", " ", text, flags=re.M))


def length(value: str | None) -> float | None:
    m = re.match(r"\s*([\d.]+)\s*(px|pt)?\s*$", value or "")
    return float(m[1]) * (4 / 3 if m[2] == "pt" else 1) if m else None


def svg_text(svg: Path) -> tuple[float, float, float, float, list[tuple[float, str]]]:
    """(viewBox width, height, natural width, height in px, [(font px, text)]) of an SVG file."""
    tree = ET.parse(svg).getroot()
    box = [float(v) for v in re.split(r"[\s,]+", tree.get("viewBox", "").strip()) if v] or None
    width, height = length(tree.get("width")), length(tree.get("height"))
    vw, vh = (box[2], box[3]) if box and len(box) == 4 else (width or 0.0, height or 0.0)
    css = "".join(e.text or "" for e in tree.iter() if e.tag.endswith("style"))
    root_css = re.search(r"#[\w-]+\s*\{[^}]*?font-size:\s*([\d.]+)px", css)
    parents = {child: parent for parent in tree.iter() for child in parent}

    def font(e: ET.Element | None) -> float:
        while e is not None:
            m = re.search(r"font-size:\s*([\d.]+)(px|pt)?", e.get("style", ""))
            size = length(m[1] + (m[2] or "px")) if m else length(e.get("font-size"))
            if size:
                return size
            e = parents.get(e)
        return float(root_css[1]) if root_css else 16.0  # CSS `medium`

    texts = [(font(e), "".join(e.itertext()).strip()) for e in tree.iter()
             if e.tag.split("}")[-1] == "text" and "".join(e.itertext()).strip()]
    return vw, vh, width or vw, height or vh, texts


def image_scale(alt: str, vw: float, vh: float, nat_w: float, nat_h: float) -> float:
    """How much the slide scales an image of this viewBox, given Marp's `h:N`/`w:N` in its alt."""
    given = {k[0]: float(v) for k, v in IMAGE_SIZE.findall(alt)}
    max_w, max_h = IMAGE_BOX
    if "h" in given and "w" in given:
        w, h = min(given["w"], max_w), min(given["h"], max_h)
    elif "h" in given:
        h = min(given["h"], max_h)
        w = min(h * nat_w / nat_h, max_w)
    elif "w" in given:
        w = min(given["w"], max_w)
        h = min(w * nat_h / nat_w, max_h)
    else:
        w, h = nat_w, nat_h
        if w > max_w or h > max_h:
            w, h = min(max_w, max_h * nat_w / nat_h), min(max_h, max_w * nat_h / nat_w)
    return min(w / vw, h / vh)  # an SVG keeps its aspect ratio (preserveAspectRatio meet)


def check_images(stem: str, deck_text: str, built: Path, rep: Report) -> None:
    for alt, ref in IMAGE_ALT.findall(deck_text):
        image = built / ref.removeprefix("../")  # build.sh copies ../labs/... images to labs/...
        if not rep.ok(image.is_file(), f"{stem}: image {ref} was built") or image.suffix != ".svg":
            continue
        vw, vh, nat_w, nat_h, texts = svg_text(image)
        if not texts or not vw or not vh:
            continue
        scale = image_scale(alt, vw, vh, nat_w, nat_h)
        size, sample = min(texts)
        rep.ok(size * scale >= SMALLEST_IMAGE_TEXT_PX - 0.05,
               f"{stem}: {ref}'s text is at least {SMALLEST_IMAGE_TEXT_PX:.0f}px on the slide",
               f"  {size:g}px text scaled by {scale:.2f} is {size * scale:.1f}px, e.g. {sample!r}: "
               "too small to read from the back of a room: larger fonts in the diagram source, "
               "fewer or shorter labels, or a larger h: on the slide")


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
            # Marp clips what does not fit: text past the bottom or the right edge is not drawn.
            # (In reading order, not -layout: a table's wrapped cell stays in one piece.)
            drawn = tool("pdftotext", "-f", str(number), "-l", str(number), str(pdf), "-")
            cut = slide_text(slide) - tokens(drawn)
            rep.ok(not cut, f"{stem}: page {number} shows all of its slide's text",
                   f"  missing from the page: {' '.join(sorted(cut.elements())[:12])}: cut off at the "
                   "bottom or the right edge: split the slide or shorten it")
            # A character the fonts lack is drawn as a box and drops out of the text layer.
            hanzi = set(re.findall(r"[\u4e00-\u9fff]", slide)) - set(text)
            rep.ok(not hanzi, f"{stem}: page {number} renders its Chinese text",
                   f"  missing from the page: {''.join(sorted(hanzi))} (apt-get install fonts-wqy-microhei)")
        check_images(stem, deck.read_text(encoding="utf-8"), built, rep)


def self_test() -> int:
    """Each layout check fails on a deck or an image made to break it (so none can pass vacuously)."""
    import contextlib
    import io
    import tempfile
    bad = ["---", "marp: true", "---", "", "# Too much", "", "```text"] + [f"line {i}" for i in range(13)] + [
        "x" * 100, "```", "", "a sentence that goes on", "in the next source line.", ""]
    small = ('<svg xmlns="http://www.w3.org/2000/svg" width="960" height="600" viewBox="0 0 960 600">'
             '<g font-size="11.00"><text x="10" y="20">MiB/s</text></g></svg>')
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "slides").mkdir()
        deck = root / "slides/99-bad.md"
        deck.write_text("\n".join(bad), encoding="utf-8")
        (root / "slides/small.svg").write_text(small, encoding="utf-8")
        rep = Report()
        with contextlib.redirect_stdout(io.StringIO()) as out:
            check_deck(root, deck, rep, fix=False)
            check_images("99-bad", "![h:470](small.svg)", root / "slides", rep)
        said = out.getvalue()
        for what in ("at most 12 code lines", f"code lines fit in {CODE_COLUMNS} columns",
                     "the sentence goes on in the same source line", "text is at least"):
            failed = [line for line in said.splitlines() if line.startswith("FAIL") and what in line]
            results.append((what, bool(failed)))
    cut = slide_text("# Cut\n\n- one line\n- two lines\n- three lines") - tokens("Cut\none line\ntwo lines")
    results.append(("shows all of its slide's text", cut == Counter({"three": 1, "lines": 1})))
    for what, failed in results:
        print(f"{'ok' if failed else 'FAIL'} self-test: the check '{what}' fails on a bad input")
    return 0 if all(failed for _, failed in results) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2])
    ap.add_argument("--built", type=Path, help="check the decks slides/build.sh built here")
    ap.add_argument("--fix", action="store_true", help="copy excerpts and README diagrams from their sources")
    ap.add_argument("--self-test", action="store_true", help="show that the layout checks fail on bad input")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
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
