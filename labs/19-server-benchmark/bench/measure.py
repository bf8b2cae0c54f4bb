"""What the driver reads about a server from /proc (proc(5)), and about the machine.

A server is its whole process group: the driver starts each one as a session leader, and the
children of a fork-per-connection server stay in its group. CPU time is summed over the group's
processes (sample()), plus the leader's cutime + cstime from /proc/PID/stat (clock ticks of
children that have exited and were reaped: a fork server's W4 children live a few milliseconds
each).
"""
from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""  # the process (or thread) is gone: it counts as nothing


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/PID/stat from field 3 (state) on: the name in (...) may hold spaces."""
    text = _read(f"/proc/{pid}/stat")
    return text[text.rfind(")") + 2:].split() if text else []


def group(pgid: int) -> list[int]:
    """The pids of the process group pgid (the leader first)."""
    pids = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if len(fields) > 2 and int(fields[2]) == pgid:
                pids.append(int(name))
    return sorted(pids, key=lambda p: p != pgid)


@dataclass(frozen=True)
class Sample:
    cpu_ns: int                      # CPU time of the group so far
    vcsw: dict[tuple[int, int], int]  # voluntary context switches of each live (pid, tid)
    processes: int

    def vcsw_since(self, before: "Sample") -> int:
        """Switches between the two samples, of the threads alive at the second one (a thread
        that ended in between takes its count with it: /proc keeps no total)."""
        return sum(n - before.vcsw.get(key, 0) for key, n in self.vcsw.items())


def sample(pgid: int) -> Sample:
    """CPU time per process: the larger of its live threads' schedstat (ns, exact) and its
    utime + stime of /proc/PID/stat (clock ticks, but counting threads that have ended too);
    plus the leader's cutime + cstime (children reaped meanwhile)."""
    cpu, vcsw, pids = 0, {}, group(pgid)
    for pid in pids:
        tids = os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []
        for tid in tids:
            for line in _read(f"/proc/{pid}/task/{tid}/status").splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    vcsw[(pid, int(tid))] = int(line.split()[1])
        exact = sum(int(v[0]) for tid in tids
                    if (v := _read(f"/proc/{pid}/task/{tid}/schedstat").split()))
        fields = _stat_fields(pid)  # utime, stime: fields 14 and 15 of stat(5), 11 and 12 here
        ticks = (int(fields[11]) + int(fields[12])) * TICK_NS if len(fields) > 12 else 0
        cpu += max(exact, ticks)
    fields = _stat_fields(pgid)
    if len(fields) > 14:  # cutime, cstime: fields 16 and 17 of stat(5), 13 and 14 here
        cpu += (int(fields[13]) + int(fields[14])) * TICK_NS
    return Sample(cpu, vcsw, len(pids))


@dataclass(frozen=True)
class Memory:
    rss_kib: int
    pss_kib: int
    vsz_kib: int
    processes: int


def memory(pgid: int) -> Memory:
    """RSS and PSS (smaps_rollup) and VSZ (status VmSize) summed over the group."""
    rss = pss = vsz = 0
    pids = group(pgid)
    for pid in pids:
        for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                value = int(rest.split()[0])
                rss, pss = (rss + value, pss) if key == "Rss" else (rss, pss + value)
        for line in _read(f"/proc/{pid}/status").splitlines():
            if line.startswith("VmSize:"):
                vsz += int(line.split()[1])
    return Memory(rss, pss, vsz, len(pids))


def loadavg() -> float:
    return float(_read("/proc/loadavg").split()[0])


def machine(repo: Path) -> dict[str, str]:
    """Kernel, CPU model, CPU count and the git revision: the columns every row repeats."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    try:
        rev = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        rev = ""
    return {"kernel": platform.release(), "cpu_model": cpu, "cpus": str(os.cpu_count()),
            "git": rev or "unknown"}
