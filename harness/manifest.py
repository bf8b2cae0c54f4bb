"""labs/manifest.toml: the labs in reading order, their programs and status."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .programs import REPO

MANIFEST = REPO / "labs" / "manifest.toml"


@dataclass(frozen=True)
class Lab:
    id: str
    dir: str
    title: str
    notes: str
    concept: str
    programs: list[str] = field(default_factory=list)
    status: str = "coming"

    @property
    def available(self) -> bool:
        return self.status == "available"

    @property
    def spec(self) -> Path:
        """The lab's pytest spec: tests/labs/test_NN_*.py."""
        found = sorted((REPO / "tests" / "labs").glob(f"test_{self.id}_*.py"))
        return found[0] if found else REPO / "tests" / "labs" / f"test_{self.id}_missing.py"


def load(path: Path = MANIFEST) -> list[Lab]:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    return [Lab(**entry) for entry in data["lab"]]


def by_id(lab_id: str, path: Path = MANIFEST) -> Lab:
    for lab in load(path):
        if lab.id == lab_id.zfill(2):
            return lab
    raise KeyError(f"no lab {lab_id} in {path}")
