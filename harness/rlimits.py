"""Resource limits of every program the harness starts (rlimits, and the cgroup to join).

The grader decides the limits once per submission (harness/grading/sandbox.py makes the cgroup)
and hands them to the pytest run in the environment variable SOCKLAB_LIMITS (JSON). LabProcess
(process.py) uses `wrap_preexec()` in each child between fork and exec, so every lab program of
that submission:
  - joins the submission's cgroup (pids.max stops a fork bomb; memory.max caps memory),
  - gets RLIMIT_NOFILE, RLIMIT_AS, RLIMIT_CPU, RLIMIT_NPROC and RLIMIT_CORE=0,
  - when no cgroup could be made and we are root (RLIMIT_NPROC does not bind root), runs as
    an unprivileged user so that RLIMIT_NPROC does bind.
A test's own preexec (e.g. one that raises RLIMIT_NOFILE on purpose) runs after ours and wins.
Without SOCKLAB_LIMITS (a plain pytest or CTest run) nothing is changed.
"""
from __future__ import annotations

import json
import os
import resource
from dataclasses import asdict, dataclass, field
from typing import Callable

ENV = "SOCKLAB_LIMITS"


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


def apply(lim: Limits, keep_nofile_hard: bool = False) -> None:
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
            new_hard = value if hard == resource.RLIM_INFINITY or hard > value else hard
            resource.setrlimit(which, (value, new_hard))
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


def drop_privileges(lim: Limits) -> None:
    """Switch to lim.run_as (the grader's fallback when no cgroup can be made and it runs as root)."""
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
        apply(lim, keep_nofile_hard=preexec is not None)
        if preexec is not None:
            preexec()  # before the switch to run_as: raising a hard limit on purpose needs root
        drop_privileges(lim)
    return both
