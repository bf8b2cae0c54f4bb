"""A small LAN of Linux network namespaces for multi-host tests, always torn down.

    from harness.netns import Lan, unavailable_reason

    if (reason := unavailable_reason()):
        pytest.skip(reason)
    with Lan() as lan:
        lan.switch("a")                                       # a bridge: one Ethernet link
        h1 = lan.host("h1", ("a", "192.0.2.1/24"))            # a namespace with eth0 on that link
        h2 = lan.host("h2", ("a", "192.0.2.2/24"))
        receiver = lan.start(h2, "broadcast_receiver", "--host", "0.0.0.0")   # a LabProcess in h2
        receiver.wait_ready()
        lan.start(h1, "broadcast_sender", "--host", "192.0.2.255", "--message", "hi")

Isolation: nothing is created in the namespace the tests run in. Each switch is a bridge inside a
namespace of its own; each veth pair is created inside the switch's namespace with its host end
placed straight into the host's namespace. Traffic between hosts therefore never leaves the LAN.

Names: every namespace is called `socklab-<pid>-<n>-<name>` (pid of the test process), so parallel
runs never collide. Lan.close() (run by `with`, also when the test fails) stops the programs it
started, kills whatever else still runs inside its namespaces, and deletes every namespace; that
deletes the bridges and veth pairs too. Namespaces left by a test process that died (its pid is
gone) are removed the next time a Lan is created.

Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2's `ip`. unavailable_reason() says why a
LAN cannot be built here, so a test can skip with that reason instead of passing or failing.
"""
from __future__ import annotations

import functools
import itertools
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from ..process import LabProcess
from ..programs import program

PREFIX = "socklab-"
_sequence = itertools.count()
_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")


class NetnsError(RuntimeError):
    """An `ip` command failed while building or tearing down the LAN; the message has its stderr."""


def _ip(*args: str, check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise NetnsError(f"`ip {' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _unique(name: str) -> str:
    return f"{PREFIX}{os.getpid()}-{next(_sequence)}-{name}"


def unavailable_reason() -> str | None:
    """None if this machine can build a Lan, else a one-line reason (for pytest.skip) that says
    how to run the test instead. The machine is probed once."""
    if os.geteuid() != 0:
        return ("needs root: it builds a LAN of named network namespaces (ip netns add); "
                f"run it as root: {as_root_command()}")
    return _probe()


@functools.cache
def _probe() -> str | None:
    if shutil.which("ip") is None:
        return "network namespaces unavailable: iproute2's `ip` is not installed (apt-get install iproute2)"
    probe = _unique("probe")
    try:
        _ip("netns", "add", probe)
        _ip("-n", probe, "link", "add", "br0", "type", "bridge")
        _ip("-n", probe, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
        return None
    except (NetnsError, OSError, subprocess.TimeoutExpired) as e:
        return f"network namespaces unavailable here: {e}"
    finally:
        _ip("netns", "del", probe, check=False)


def as_root_command() -> str:
    """How to run the current test's lab as root, e.g. `sudo ctest --preset dev -L lab06`."""
    current = os.environ.get("PYTEST_CURRENT_TEST", "")
    found = re.search(r"test_(\d\d)_\w+\.py", current)
    return f"sudo ctest --preset dev -L lab{found[1]}" if found else "sudo ctest --preset dev"


def cleanup_stale() -> list[str]:
    """Delete socklab namespaces whose creating process is gone; returns their names."""
    listed = _ip("netns", "list", check=False).stdout.split("\n")
    removed = []
    for netns in (line.split()[0] for line in listed if line.startswith(PREFIX)):
        pid = netns[len(PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            _kill_inside(netns)
            _ip("netns", "del", netns, check=False)
            removed.append(netns)
    return removed


def _kill_inside(netns: str) -> None:
    """SIGKILL every process still running in `netns` (bounded: a few rounds)."""
    for _ in range(10):
        pids = [int(p) for p in _ip("netns", "pids", netns, check=False).stdout.split() if p.isdigit()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)


@dataclass
class Host:
    """One machine of the LAN: a network namespace with one interface (eth0, eth1...) per link."""
    name: str
    netns: str
    addresses: list[str] = field(default_factory=list)  # "192.0.2.1/24", in link order

    @property
    def address(self) -> str:
        """The first address, without its prefix length: "192.0.2.1"."""
        return self.addresses[0].split("/")[0]

    def argv(self, *command: str | os.PathLike[str]) -> list[str]:
        """`command` prefixed so that it runs inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *map(os.fspath, command)]

    def run(self, *command: str, check: bool = True,
            timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        """Run a short command inside the host and wait for it."""
        proc = subprocess.run(self.argv(*command), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise NetnsError(f"in {self.name}: `{' '.join(command)}` failed ({proc.returncode}): "
                             f"{proc.stderr.strip()}")
        return proc


class Lan:
    """Switches (bridges) and hosts (namespaces) wired with veth pairs; a context manager."""

    def __init__(self) -> None:
        self.switches: dict[str, str] = {}  # switch name -> its namespace
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        self._ports = itertools.count()
        self._started: list[LabProcess] = []

    def __enter__(self) -> "Lan":
        cleanup_stale()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _namespace(self, name: str) -> str:
        """Create the namespace for a new switch or host (use the Lan in a `with`, so close() deletes it)."""
        if not _NAME_RE.match(name) or name in self.switches or name in self.hosts:
            raise ValueError(f"a switch or host name is new, lowercase, 1-12 letters/digits: {name!r}")
        netns = _unique(name)
        _ip("netns", "add", netns)
        self._namespaces.append(netns)
        _ip("-n", netns, "link", "set", "lo", "up")
        return netns

    def switch(self, name: str) -> str:
        """A new Ethernet segment: a bridge (STP off, so ports forward at once). Returns `name`."""
        netns = self._namespace(name)
        _ip("-n", netns, "link", "add", "br0", "type", "bridge", "stp_state", "0")
        _ip("-n", netns, "link", "set", "br0", "up")
        self.switches[name] = netns
        return name

    def host(self, name: str, *links: tuple[str, str], gateway: str | None = None,
             forwarding: bool = False) -> Host:
        """A new host with one interface per (switch, "ADDRESS/PREFIX") link, in order eth0, eth1...

        gateway: the default route's next hop. forwarding: route IPv4 between its links (a router)."""
        for switch, _ in links:
            if switch not in self.switches:
                raise ValueError(f"no switch {switch!r}: create it with lan.switch({switch!r}) first")
        netns = self._namespace(name)
        host = Host(name, netns)
        for index, (switch, cidr) in enumerate(links):
            port, dev = f"p{next(self._ports)}", f"eth{index}"
            _ip("-n", self.switches[switch], "link", "add", port, "type", "veth",
                "peer", "name", dev, "netns", netns)
            _ip("-n", self.switches[switch], "link", "set", port, "master", "br0", "up")
            _ip("-n", netns, "addr", "add", cidr, "dev", dev)
            _ip("-n", netns, "link", "set", dev, "up")
            host.addresses.append(cidr)
        if gateway:
            _ip("-n", netns, "route", "add", "default", "via", gateway)
        if forwarding:
            host.run("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        self.hosts[name] = host
        return host

    def start(self, host: Host, name: str, *args: str | int, lab: Any = None, **kw: Any) -> LabProcess:
        """Start lab program `name` inside `host`. Lan.close() stops it; pass the pytest `lab`
        fixture as `lab` to have it stopped there too and listed in the failure report."""
        proc = LabProcess(host.argv(program(name), *map(str, args)), **kw)
        proc.name = name
        self._started.append(proc)
        if lab is not None:
            lab.started.append(proc)
        return proc

    def close(self) -> None:
        """Stop what runs inside, delete every namespace (bridges and veths go with them). Idempotent."""
        for proc in self._started:
            proc.stop()
        self._started.clear()
        errors = []
        for netns in reversed(self._namespaces):
            _kill_inside(netns)
            result = _ip("netns", "del", netns, check=False)
            if result.returncode != 0:
                errors.append(f"{netns}: {result.stderr.strip()}")
        self._namespaces.clear()
        if errors:
            raise NetnsError("could not delete namespaces: " + "; ".join(errors))


def namespaces_of_this_process() -> list[str]:
    """The socklab namespaces this process created and has not deleted (for leak checks)."""
    mine = f"{PREFIX}{os.getpid()}-"
    listed = _ip("netns", "list", check=False).stdout.splitlines()
    return [line.split()[0] for line in listed if line.startswith(mine)]


__all__ = ["Host", "Lan", "NetnsError", "cleanup_stale", "namespaces_of_this_process", "unavailable_reason"]
