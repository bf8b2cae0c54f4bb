"""The output contract of each lab: every line, exit status and stderr text its specs check.

One file per lab, labs/NN-topic/output.toml, is the only source: specs take their patterns from
it (contract("04").line("callback")), and the lab README's Output section is made from it.

    [[line]]
    program  = "udp_echo_server"     # which program prints it
    name     = "callback"            # how specs name it
    stream   = "stdout"              # or "stderr"
    template = 'callback <n> from <host>:<port> len <len> data "<bytes, C-escaped>"'
    pattern  = '^callback (\\d+) from (\\S+):(\\d+) len (\\d+) data "(.*)"$'
    example  = 'callback 1 from 127.0.0.1:40117 len 5 data "hello"'
    when     = "after each datagram it echoes"

    [[exit]]
    program = "udp_echo_client"
    status  = 1
    when    = "no echo arrived within --timeout-ms"
    stderr  = "timeout"              # optional: the [[line]] (stream stderr) it prints first
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from . import manifest
from .programs import REPO


@dataclass(frozen=True)
class Line:
    lab: str
    program: str
    name: str
    stream: str
    template: str
    pattern: re.Pattern[str]
    example: str
    when: str

    def match(self, text: str) -> re.Match[str] | None:
        """The first match of this line's pattern in one printed line, or None."""
        return self.pattern.search(text)

    @property
    def where(self) -> str:
        """Where a student reads this line's format."""
        return f"Output section of labs/{manifest.by_id(self.lab).dir}/README.md"


@dataclass(frozen=True)
class Exit:
    program: str
    status: int
    when: str
    stderr: str = ""


@dataclass(frozen=True)
class Contract:
    lab: str
    path: Path
    lines: dict[str, Line]
    exits: list[Exit]

    def line(self, name: str) -> Line:
        try:
            return self.lines[name]
        except KeyError:
            raise KeyError(f"{self.path} declares no line named {name!r}") from None

    __getitem__ = line


def load(path: Path, lab_id: str) -> Contract:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    lines: dict[str, Line] = {}
    for entry in data.get("line", []):
        line = Line(lab=lab_id, program=entry["program"], name=entry["name"],
                    stream=entry.get("stream", "stdout"), template=entry["template"],
                    pattern=re.compile(entry["pattern"]), example=entry["example"],
                    when=entry["when"])
        if line.name in lines:
            raise ValueError(f"{path}: two lines are named {line.name!r}")
        lines[line.name] = line
    exits = [Exit(**entry) for entry in data.get("exit", [])]
    return Contract(lab_id, path, lines, exits)


@cache
def contract(lab_id: str) -> Contract:
    """The output contract of lab `lab_id` ("04")."""
    lab = manifest.by_id(lab_id)
    return load(REPO / "labs" / lab.dir / "output.toml", lab.id)
