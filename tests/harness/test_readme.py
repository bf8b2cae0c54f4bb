"""README.md agrees with the lab manifest, and every available lab is complete."""
from __future__ import annotations

import re

from harness import manifest, readme_table
from harness.programs import REPO

README = (REPO / "README.md").read_text()


def test_reading_order_table_matches_the_manifest():
    assert readme_table.rewrite(README) == README, \
        "README.md's reading-order table or its list of Output sections is stale: " \
        "run /usr/bin/python3 -m harness readme --write"


def test_readme_check_command_says_which_file_is_stale(monkeypatch, capsys):
    """readme_table --check exits 1 naming a stale README, 0 when every generated part is current."""
    assert readme_table.main(["--check"]) == 0
    stale = dict(readme_table.generated())
    path = next(p for p in stale if p.parent.name.startswith("04"))
    changed = (stale[path][0] + "x", stale[path][1])
    monkeypatch.setattr(readme_table, "generated", lambda: {**stale, path: changed})
    assert readme_table.main(["--check"]) == 1
    assert "04-udp-echo/README.md" in capsys.readouterr().err


def test_every_available_lab_has_readme_programs_and_spec():
    for lab in manifest.load():
        if not lab.available:
            continue
        folder = REPO / "labs" / lab.dir
        assert (folder / "README.md").is_file(), f"lab {lab.id}: no README.md"
        assert lab.programs, f"lab {lab.id}: the manifest lists no programs"
        cmake = (folder / "CMakeLists.txt").read_text()
        for prog in lab.programs:
            assert re.search(rf"socklab_program\({prog}\b", cmake), f"lab {lab.id}: {prog} is not built"
        assert lab.spec.is_file(), f"lab {lab.id}: no tests/labs/test_{lab.id}_*.py"
        text = (folder / "README.md").read_text()
        sections = ("## The notes", "## 术语 Glossary", "## Build and run", "## Output",
                    "## What to observe", "## What the notes get wrong",
                    "## Claims and the tests that prove them",
                    "## Check your work", "## Exercises", "## Next lab")
        for section in sections:
            assert section in text, f"lab {lab.id}: README.md lacks the section '{section}'"
        assert f"check_{lab.id}" in text, f"lab {lab.id}: README.md does not say how to check the lab"


def test_claims_tables_name_tests_that_exist():
    for lab in manifest.load():
        if not lab.available:
            continue
        text = (REPO / "labs" / lab.dir / "README.md").read_text()
        claims = text.split("## Claims and the tests that prove them", 1)[1].split("\n## ", 1)[0]
        named = set(re.findall(r"`(test_\w+)`", claims))
        assert named, f"lab {lab.id}: the claims table names no tests"
        spec = lab.spec.read_text()
        for name in named:
            assert re.search(rf"^def {name}\(", spec, re.M), (
                f"lab {lab.id}: README cites {name}, which {lab.spec.name} lacks")


IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def test_every_image_a_readme_shows_is_committed_beside_it():
    """A README's plots and diagrams (lab 19's results, the state diagrams) are files in the
    repository, found from the README's own folder: never a remote URL, never a missing file."""
    readmes = [REPO / "README.md", *sorted((REPO / "labs").glob("*/README.md"))]
    bad = [f"{r.relative_to(REPO)}: {target}" for r in readmes for target in IMAGE.findall(r.read_text())
           if "://" in target or not (r.parent / target).is_file()]
    assert not bad, "images that do not resolve:\n" + "\n".join(bad)
