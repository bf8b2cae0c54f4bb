"""The harness's layout is its architecture: the core (harness/) never imports the grader
(harness/grading/), the lab specs import only the core, and no module reaches into another's
private names. Checked on the source (ast), so a new import breaks this test, not a student's run."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.programs import REPO

HARNESS = REPO / "harness"
GRADING = HARNESS / "grading"
ENTRY = HARNESS / "__main__.py"   # the verbs of `python3 -m harness`: the one door to both halves


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, text: str | None = None) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every import in a file; relative ones resolved."""
    tree = ast.parse(path.read_text() if text is None else text, str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [a.name for a in node.names]
            found.append((node.lineno, base, names))
            # `from harness import grading` / `from . import grading` names a subpackage
            found += [(node.lineno, f"{base}.{n}", []) for n in names]
    return found


def core_modules() -> list[Path]:
    return sorted(p for p in HARNESS.rglob("*.py") if GRADING not in p.parents and p != ENTRY)


def test_the_core_never_imports_the_grader():
    modules = core_modules()
    assert len(modules) >= 12, f"expected the core modules under {HARNESS}, found {modules}"
    bad = [f"{p.relative_to(REPO)}:{line}: imports {mod}" for p in modules for line, mod, _ in imports(p)
           if mod == "harness.grading" or mod.startswith("harness.grading.")]
    assert not bad, ("the core (harness/) must not import harness.grading (grading may import the core, "
                     "never the reverse):\n  " + "\n  ".join(bad))


def test_the_lab_specs_import_only_the_core():
    specs = sorted((REPO / "tests" / "labs").glob("test_*.py"))
    bad = [f"{p.relative_to(REPO)}:{line}: imports {mod}" for p in specs for line, mod, _ in imports(p)
           if mod.startswith("harness.grading")]
    assert not bad, "a lab spec imports the grader; specs use the core only:\n  " + "\n  ".join(bad)


def test_no_module_imports_another_modules_private_names():
    bad = []
    for p in sorted(HARNESS.rglob("*.py")):
        for line, mod, names in imports(p):
            if mod.startswith("harness") and mod != module_name(p):
                bad += [f"{p.relative_to(REPO)}:{line}: from {mod} import {n}" for n in names
                        if n.startswith("_") and not n.startswith("__")]
    assert not bad, "private names (_x) stay in their module; export what others need:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("snippet, expected", [
    ("from ..grading import scoring\n", True),
    ("from harness.grading.points import Points\n", True),
    ("import harness.grading.reports\n", True),
    ("from .. import grading\n", True),
    ("from . import probes\n", False),
])
def test_the_layout_check_sees_every_import_style(snippet, expected):
    """The checker itself: every way of importing the grader from a core module is caught."""
    found = [mod for _, mod, _ in imports(HARNESS / "netns" / "lan.py", snippet)]
    assert any(m == "harness.grading" or m.startswith("harness.grading.") for m in found) == expected, found
