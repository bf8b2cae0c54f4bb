"""Which labs and test files a grading run covers: the manifest's available labs, a --labs
selection ("01,02" or "1-4"), the instructors' hidden tests of each lab."""
from __future__ import annotations

from pathlib import Path

from .. import manifest
from ..programs import REPO


def select_labs(spec: str | None) -> list[manifest.Lab]:
    """Available labs of the manifest, optionally only those listed ("01,02" or "1-3")."""
    labs = [l for l in manifest.load() if l.available]
    if not spec:
        return labs
    wanted: set[str] = set()
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-", 1)
            wanted |= {str(n).zfill(2) for n in range(int(a), int(b) + 1)}
        elif part:
            wanted.add(part.zfill(2))
    known = {l.id for l in manifest.load()}
    unknown = wanted - known
    if unknown:
        raise SystemExit(f"grade: no lab {', '.join(sorted(unknown))} in labs/manifest.toml")
    return [l for l in labs if l.id in wanted]


def hidden_files(hidden: Path | None, lab_id: str) -> list[Path]:
    if hidden is None:
        return []
    return sorted(hidden.glob(f"test_{lab_id}_*.py")) + sorted(hidden.glob(f"test_{lab_id}.py"))


def in_hidden(path: str, hidden: Path | None) -> bool:
    if hidden is None:
        return False
    p = Path(path)
    cand = p if p.is_absolute() else (REPO / p)
    try:
        cand.resolve().relative_to(hidden.resolve())
        return True
    except ValueError:
        return False
