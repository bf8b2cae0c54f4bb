"""Per-submission resource limits: rlimits in every program the harness starts, plus a cgroup.

The grader decides the limits once per submission and hands them to the pytest run in the
environment variable SOCKLAB_LIMITS (JSON). LabProcess (process.py) calls `preexec()` in each
child between fork and exec, so every lab program of that submission:
  - joins the submission's cgroup (pids.max stops a fork bomb; memory.max caps memory),
  - gets RLIMIT_NOFILE, RLIMIT_AS, RLIMIT_CPU, RLIMIT_NPROC and RLIMIT_CORE=0,
  - when no cgroup could be made and we are root (RLIMIT_NPROC does not bind root), runs as
    an unprivileged user so that RLIMIT_NPROC does bind.
A test's own preexec (e.g. one that raises RLIMIT_NOFILE on purpose) runs after ours and wins.

Cgroups: cgroup v2 (a child of our own cgroup or of the root, with +pids +memory enabled), else
the v1 `pids` and `memory` hierarchies, else none; `Sandbox.note` says which, for the report.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

ENV = "SOCKLAB_LIMITS"
CGROOT = Path("/sys/fs/cgroup")
NOBODY = 65534


@dataclass
class Limits:
    nofile: int = 1024              # open files per process
    address_space_mib: int = 4096   # RLIMIT_AS (skipped for sanitizer builds: ASan reserves terabytes)
    cpu_seconds: int = 120          # RLIMIT_CPU per process: an endless loop dies by SIGXCPU/SIGKILL
    nproc: int = 256                # RLIMIT_NPROC (binds non-root users only)
    pids_max: int = 256             # cgroup pids.max for all programs of one submission
    memory_mib: int = 1024          # cgroup memory.max
    cgroup_dirs: list[str] = field(default_factory=list)  # cgroup folders to join ("cgroup.procs")
    run_as: int | None = None       # uid/gid to switch to (fallback when no cgroup and root)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, text: str) -> "Limits":
        return cls(**json.loads(text))


def _apply(lim: Limits, keep_nofile_hard: bool = False) -> None:
    """In the child, between fork and exec. Must not raise for a missing cgroup. keep_nofile_hard:
    lower only the soft RLIMIT_NOFILE, so that a test's own preexec may raise it again (raising a
    hard limit needs CAP_SYS_RESOURCE, which even root may lack in a container)."""
    for d in lim.cgroup_dirs:
        try:
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write("0")
        except OSError:
            pass
    def setlim(which: int, value: int) -> None:
        try:
            soft, hard = resource.getrlimit(which)
            resource.setrlimit(which, (value, value if hard == resource.RLIM_INFINITY or hard > value else hard))
        except (ValueError, OSError):
            pass
    if keep_nofile_hard:
        try:
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(lim.nofile, hard), hard))
        except (ValueError, OSError):
            pass
    else:
        setlim(resource.RLIMIT_NOFILE, lim.nofile)
    if not os.environ.get("SOCKLAB_SANITIZE"):
        setlim(resource.RLIMIT_AS, lim.address_space_mib << 20)
    setlim(resource.RLIMIT_CPU, lim.cpu_seconds)
    setlim(resource.RLIMIT_NPROC, lim.nproc)
    setlim(resource.RLIMIT_CORE, 0)


def _drop_privileges(lim: Limits) -> None:
    if lim.run_as is not None and os.getuid() == 0:
        os.setgroups([])
        os.setgid(lim.run_as)
        os.setuid(lim.run_as)


def wrap_preexec(preexec: Callable[[], None] | None) -> Callable[[], None] | None:
    """The preexec LabProcess should use: the limits from $SOCKLAB_LIMITS, then the test's own."""
    text = os.environ.get(ENV)
    if not text:
        return preexec
    lim = Limits.from_env(text)

    def both() -> None:
        _apply(lim, keep_nofile_hard=preexec is not None)
        if preexec is not None:
            preexec()  # before the switch to run_as: raising a hard limit on purpose needs root
        _drop_privileges(lim)
    return both


# ---------------------------------------------------------------- cgroups (grader side)

def _own_v2_path() -> str | None:
    try:
        for line in open("/proc/self/cgroup"):
            if line.startswith("0::"):
                return line[3:].strip()
    except OSError:
        pass
    return None


def _write(path: Path, text: str) -> bool:
    try:
        path.write_text(text)
        return True
    except OSError:
        return False


class Sandbox:
    """One cgroup (or a documented fallback) for all programs of one submission."""

    def __init__(self, name: str, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self.dirs: list[Path] = []
        self.kind = "none"
        self.note = ""
        self._make(name)
        self.limits.cgroup_dirs = [str(d) for d in self.dirs]
        if not self.dirs and os.getuid() == 0:
            self.limits.run_as = NOBODY
            self.note += (f"; programs run as uid {NOBODY} so that RLIMIT_NPROC={self.limits.nproc} binds "
                          "(it does not bind root)")

    def _make(self, name: str) -> None:
        if os.environ.get("SOCKLAB_CGROUP") == "off":
            self.note = "cgroups switched off (SOCKLAB_CGROUP=off): rlimits only"
            return
        v2 = CGROOT / "cgroup.controllers"
        if v2.exists() and {"pids", "memory"} <= set(v2.read_text().split()):
            own = _own_v2_path()
            for parent in ([CGROOT / own.lstrip("/")] if own and own != "/" else []) + [CGROOT]:
                ctl = parent / "cgroup.subtree_control"
                wanted = {"pids", "memory"}
                if not (wanted <= set(ctl.read_text().split()) or _write(ctl, "+pids +memory")):
                    continue
                d = parent / name
                try:
                    d.mkdir()
                except OSError:
                    continue
                _write(d / "pids.max", str(self.limits.pids_max))
                _write(d / "memory.max", str(self.limits.memory_mib << 20))
                _write(d / "memory.swap.max", "0")
                self.dirs, self.kind = [d], "cgroup v2"
                self.note = f"cgroup v2 {d}: pids.max={self.limits.pids_max}, memory.max={self.limits.memory_mib} MiB"
                return
        made = []
        for ctrl, settings in (("pids", {"pids.max": str(self.limits.pids_max)}),
                               ("memory", {"memory.limit_in_bytes": str(self.limits.memory_mib << 20)})):
            root = CGROOT / ctrl
            if not (root / "cgroup.procs").exists():
                continue
            d = root / name
            try:
                d.mkdir()
            except OSError:
                continue
            if all(_write(d / k, v) for k, v in settings.items()):
                made.append(d)
            else:
                _rmdir(d)
        if made:
            self.dirs, self.kind = made, "cgroup v1"
            self.note = "cgroup v1 " + ", ".join(str(d) for d in made) + \
                f": pids.max={self.limits.pids_max}, memory limit {self.limits.memory_mib} MiB"
        else:
            self.note = ("no cgroup could be created (no writable cgroup v2 with pids+memory, no v1 "
                         "pids/memory hierarchy): rlimits only")

    def pids(self) -> set[int]:
        out: set[int] = set()
        for d in self.dirs:
            try:
                out |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
            except OSError:
                pass
        return out

    def peak_pids(self) -> int | None:
        for d in self.dirs:
            for name in ("pids.peak",):
                try:
                    return int((d / name).read_text())
                except (OSError, ValueError):
                    pass
        return None

    def pids_limit_hit(self) -> bool:
        """True if some fork/clone was refused by pids.max (a fork bomb, or too many threads)."""
        for d in self.dirs:
            try:
                for line in (d / "pids.events").read_text().splitlines():
                    k, v = line.split()
                    if k == "max" and int(v) > 0:
                        return True
            except (OSError, ValueError):
                pass
        return False

    def kill_all(self, timeout: float = 10.0) -> int:
        """SIGKILL everything in the cgroup until it is empty; how many processes were killed."""
        killed: set[int] = set()
        for d in self.dirs:
            _write(d / "cgroup.kill", "1")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            left = self.pids()
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.add(pid)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)
        return len(killed)

    def close(self) -> None:
        self.kill_all()
        for d in self.dirs:
            for _ in range(50):
                if _rmdir(d):
                    break
                time.sleep(0.05)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rmdir(d: Path) -> bool:
    try:
        d.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False
