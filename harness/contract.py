"""Checks of the CLI contract every lab program follows (README.md, "The contract").

  --help            exit 0, usage on stdout
  a bad option      exit 2, usage on stderr
  a port in use     exit 1, `prog: what: strerror [EADDRINUSE]` and a hint line on stderr
"""
from __future__ import annotations

import socket
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def occupy_udp(host: str = "127.0.0.1") -> Iterator[int]:
    """A UDP port that is bound (by us) while the block runs."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        yield s.getsockname()[1]


@contextmanager
def occupy_tcp(host: str = "127.0.0.1") -> Iterator[int]:
    """A TCP port with a listener (ours) while the block runs."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        s.listen()
        yield s.getsockname()[1]


def assert_help_and_usage(lab, name: str) -> None:
    helped = lab.run(name, "--help")
    assert helped.popen.returncode == 0, f"{name} --help should exit 0\n{helped.report()}"
    assert "usage" in helped.stdout.lower(), f"{name} --help should print usage on stdout\n{helped.report()}"
    bad = lab.run(name, "--no-such-option")
    assert bad.popen.returncode == 2, (
        f"{name} with an unknown option should exit 2 (usage error)\n{bad.report()}")
    assert "usage" in bad.stderr.lower(), (
        f"{name} should print usage on stderr for a bad option\n{bad.report()}")


def assert_port_taken_fails(lab, name: str, port: int, *extra: str) -> None:
    proc = lab.run(name, "--port", str(port), *extra, timeout=5)
    rc = proc.popen.returncode
    assert rc == 1, (f"{name} on a port in use should exit 1, got {rc}. Likely cause: the error is "
                     f"not reported, or the program exits 0 on failure\n{proc.report()}")
    lines = proc.stderr.splitlines()
    assert any(line.startswith(f"{name}: ") and line.rstrip().endswith("[EADDRINUSE]") for line in lines), \
        f"expected a line '{name}: bind ...: Address already in use [EADDRINUSE]'\n{proc.report()}"
    assert any(line.startswith(f"{name}: hint: ") for line in lines), f"expected a hint line\n{proc.report()}"


def assert_cli_contract(lab, name: str, taken_port: int | None = None, *extra: str) -> None:
    """--help, a bad option, and (for programs that bind) a port that is taken."""
    assert_help_and_usage(lab, name)
    if taken_port is not None:
        assert_port_taken_fails(lab, name, taken_port, *extra)
