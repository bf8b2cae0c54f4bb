"""Where lab programs are found: $SOCKLAB_BIN_DIR, else build/dev/bin of this checkout."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class ProgramMissing(Exception):
    """A lab program is not built (or not executable)."""


def bin_dir() -> Path:
    return Path(os.environ.get("SOCKLAB_BIN_DIR") or REPO / "build" / "dev" / "bin")


def program(name: str) -> Path:
    """Path of a built lab program, or ProgramMissing with the command that builds it."""
    path = bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise ProgramMissing(
            f"program '{name}' not found in {bin_dir()}: build it first "
            f"(cmake --build --preset dev), or point SOCKLAB_BIN_DIR at your build's bin folder")
    return path
