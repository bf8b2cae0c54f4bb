"""The ready line: one format for the whole suite.

A server prints exactly one line `READY <tcp|udp> <host> <port>` on stdout, flushed, once it
can take work; <port> is the port the kernel really bound (so `--port 0` works). Example:
    READY tcp 127.0.0.1 40117
common/lab.hpp announce_ready() prints it; this module is the one place that parses it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

READY_RE = re.compile(r"^READY (tcp|udp) (\S+) (\d{1,5})$")


@dataclass(frozen=True)
class Ready:
    proto: str
    host: str
    port: int

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


def parse_ready(line: str) -> Ready | None:
    """The Ready of a ready line, or None if the line is something else."""
    m = READY_RE.match(line.rstrip("\r\n"))
    if not m:
        return None
    port = int(m.group(3))
    if not 0 < port < 65536:
        return None
    return Ready(m.group(1), m.group(2), port)
