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
    hint     = "..."                 # optional: what the grader tells a student whose program
                                     # printed this line (an [ENAME] error line's classic cause)

    [[exit]]
    name    = "timeout"              # optional: how specs name it (C.exit("timeout").status)
    program = "udp_echo_client"
    status  = 1
    when    = "no echo arrived within --timeout-ms"
    stderr  = "timeout"              # optional: the [[line]] (stream stderr) it prints first

A pattern is matched against one printed line at a time (re.search): text outside its `^` and
`$` anchors is free, so a student may print more there. Lines no pattern matches are free text.
Suite-wide lines (the ready line, the `prog: what: strerror [ENAME]` error line and its hint
line, the usage text) are part of README.md's contract: READY, ERROR, HINT and USAGE here.

In a spec (tests/harness/test_contracts.py fails on a pattern literal of its own, or an exit
status 1 or 2 written as a number):

    C = contract("04")
    m = server.expect(C["callback"])          # wait for the line; m[1].. are the pattern's groups
    m = C["identical"].find(proc.stdout)      # the first line of that format in a whole output, or None
    rows = C["datagram"].findall(proc.stdout) # every line of that format
    rows = C["echo"].only(proc.stdout)        # every line, all of that format, or None
    assert proc.popen.returncode == C.status("timeout")

A look-up that finds nothing is remembered (misses()): the grader tells a format mismatch ("expected
a line like <template>; the closest line it printed was ...") from a missing behaviour.
The lab README's Output section is made from the file: /usr/bin/python3 -m harness readme --write.
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
    hint: str = ""

    def match(self, text: str) -> re.Match[str] | None:
        """The first match of this line's pattern in one printed line, or None."""
        return self.pattern.search(text)

    def find(self, text: str) -> re.Match[str] | None:
        """The match of the first line of `text` (a program's whole stdout or stderr) that has
        this line's format, or None (remembered as a miss: the grader's evidence)."""
        found = next(iter(self.findall(text)), None)
        if found is None:
            missed(self, text)
        return found

    def findall(self, text: str) -> list[re.Match[str]]:
        """The matches of every line of `text` that has this line's format, in order."""
        return [m for m in map(self.pattern.search, text.splitlines()) if m]

    def only(self, text: str) -> list[re.Match[str]] | None:
        """The matches if every line of `text` has this line's format, else None."""
        rows = text.splitlines()
        found = self.findall(text)
        if len(found) != len(rows):
            missed(self, text)
            return None
        return found

    @property
    def where(self) -> str:
        """Where a student reads this line's format."""
        if not self.lab:
            return "README.md, The contract for your own programs"
        return f"Output section of labs/{manifest.by_id(self.lab).dir}/README.md"


@dataclass(frozen=True)
class Exit:
    program: str
    status: int
    when: str
    stderr: str = ""
    name: str = ""


# The latest look-ups of a contract line that found none: (line, the text searched). The grader
# reads them at a failure to tell a format mismatch ("expected a line like ...") from a behaviour.
_misses: list[tuple[Line, str]] = []


def missed(line: Line, text: str) -> None:
    """Remember that `text` (what a program printed) holds no line of `line`'s format."""
    _misses.append((line, text[-8000:]))
    del _misses[:-10]


def misses() -> list[tuple[Line, str]]:
    """The latest misses, oldest first (cleared by clear_misses() at each test's start)."""
    return list(_misses)


def clear_misses() -> None:
    _misses.clear()


# The suite-wide lines of README.md's contract, as Lines of no lab.
READY = Line("", "any server", "ready", "stdout", "READY <tcp|udp> <host> <port>",
             re.compile(r"^READY (tcp|udp) (\S+) (\d{1,5})$"), "READY udp 127.0.0.1 40117",
             "once, when the server can take work; <port> is the port it really bound")
ERROR = Line("", "any program", "error", "stderr", "<prog>: <what>: <strerror> [<ENAME>]",
             re.compile(r"^(?P<prog>[\w.-]+): (?P<what>.+): (?P<reason>.*) \[(?P<ename>E[A-Z0-9]+)\]$"),
             "udp_recv: bind 127.0.0.1:8088: Address already in use [EADDRINUSE]",
             "a runtime failure, before exit status 1")
HINT = Line("", "any program", "hint", "stderr", "<prog>: hint: <advice>",
            re.compile(r"^(?P<prog>[\w.-]+): hint: (?P<advice>.+)$"),
            "udp_recv: hint: another program holds the port; pick another with --port, or 0",
            "optionally, right after an error line")

USAGE = Line("", "any program", "usage", "stderr", "<usage text that contains the word usage>",
             re.compile(r"(?i)\busage\b"), "usage: udp_recv [options]",
             ("a bad or unknown option: the usage text on stderr (exit 2); "
              "--help prints it on stdout (exit 0)"))


def error_line(ename: str, program: str | None = None) -> re.Pattern[str]:
    """The suite-wide error line with one errno name (and program), as a pattern."""
    prog = re.escape(program) if program else r"[\w.-]+"
    return re.compile(rf"^{prog}: .+: .* \[{ename}\]$")


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

    def exit(self, name: str) -> Exit:
        for entry in self.exits:
            if entry.name == name:
                return entry
        raise KeyError(f"{self.path} declares no exit named {name!r}")

    def status(self, name: str) -> int:
        """The exit status of the [[exit]] entry `name`."""
        return self.exit(name).status

    def of(self, program: str) -> list[Line]:
        """The lines `program` prints, in the file's order."""
        return [line for line in self.lines.values() if line.program == program]


def load(path: Path, lab_id: str) -> Contract:
    with open(path, "rb") as f:
        data = tomllib.load(f)
    lines: dict[str, Line] = {}
    for entry in data.get("line", []):
        line = Line(lab=lab_id, program=entry["program"], name=entry["name"],
                    stream=entry.get("stream", "stdout"), template=entry["template"],
                    pattern=re.compile(entry["pattern"]), example=entry["example"],
                    when=entry["when"], hint=entry.get("hint", ""))
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
