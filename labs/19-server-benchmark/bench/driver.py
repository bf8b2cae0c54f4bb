"""python3 -m harness bench [--quick | --smoke] [--servers a,b] [--workloads W1,W3] [--out DIR]

Runs lab 19's benchmark matrix: every server (socklab's lab servers, the peers and the in-run
ceilings of bench/servers.py) under loadgen's workloads, server pinned to one CPU and loadgen to
another (taskset), in interleaved rounds (A B C ... A B C ...), each point after a warm-up, with
the load average logged around it. Writes results.csv (one row per round, workload, server,
connections and size), summary.md (median ratios, the goals table) and plots/*.svg (gnuplot).

Modes: full (the default: 3 rounds, about 20 minutes with every peer), --quick (1 round, short
points, N <= 1000: under 3 minutes), --smoke (a few tiny points: the tests' run).
Every process the driver starts is stopped, on success, error, Ctrl-C or SIGTERM; every wait is
bounded in time; loadgen sends only to 127.0.0.1.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import measure, plots, report, servers

LAB = Path(__file__).resolve().parent.parent
REPO = LAB.parent.parent
WORKLOADS = ("W1", "W2", "W3", "W4", "W5")
NA_THREAD_FORK = 10_000   # a thread or a process per connection: not run at this many
SATURATED = 0.90          # loadgen's CPU share above which the client, not the server, limits
NOISY_LOAD = 1.0          # 1-minute load average above which a point is flagged as noisy
PAUSE_MS = 150            # loadgen keeps its connections this long after RESULT: /proc is read
COLUMNS = ["round", "workload", "server", "kind", "model", "version", "connections", "idle", "size",
           "rate", "status", "reason", "tps", "mib_s", "msgs_s", "accepts_s", "failures", "p50_us",
           "p90_us", "p99_us", "p999_us", "max_us", "messages", "client_cpu", "client_saturated",
           "server_cpu_us", "server_cpu_us_per_msg", "server_vcsw", "server_vcsw_per_msg",
           "server_processes", "rss_kib", "pss_kib", "vsz_kib", "load_start", "load_end", "noisy",
           "server_cpu", "client_cpu_pin", "window_ms", "kernel", "cpu_model", "cpus", "git", "started"]


@dataclass(frozen=True)
class Point:
    workload: str
    connections: int = 1   # W1 sessions, W2/W3 active connections, W4 concurrent connectors
    size: int = 1
    idle: int = 0          # W3: idle connections held by a separate loadgen --workload hold
    rate: int = 0          # W2: open loop at this many requests per second

    def label(self) -> str:
        extra = f" idle={self.idle}" if self.workload == "W3" else ""
        extra += f" rate={self.rate}/s" if self.rate else ""
        return f"{self.workload} N={self.connections} S={self.size}{extra}"


@dataclass(frozen=True)
class Mode:
    name: str
    rounds: int
    window_ms: int
    warmup_ms: int
    points: dict[str, list[Point]]
    w3_servers: tuple[str, ...]
    default_servers: tuple[str, ...] = ()   # empty: every server of the catalogue


def _w1(sizes, conns) -> list[Point]:
    return [Point("W1", n, s) for s in sizes for n in conns]


SOCKPERF_POINT = Point("W2", 1, 14)   # sockperf's smallest message; every echo server runs it too
W3_SERVERS = ("rr_floor", "select", "poll", "epoll_lt", "epoll_et", "thread", "fork")
MODES = {
    "full": Mode("full", 3, 1000, 300, {
        "W1": _w1((4096, 16384), (1, 10, 100, 1000)),
        "W2": [Point("W2", 1, 1), SOCKPERF_POINT, Point("W2", 10, 1), Point("W2", 1, 1, rate=10_000)],
        "W3": [Point("W3", 1, 1, idle=n) for n in (0, 10, 100, 1000, 3000, 10_000)],
        "W4": [Point("W4", c, 1) for c in (1, 100)],
        "W5": [Point("W5", 1, 128 << 10), Point("W5", 1, 16 << 10)],
    }, W3_SERVERS),
    "quick": Mode("quick", 1, 400, 150, {
        "W1": _w1((4096, 16384), (1, 10, 100)),
        "W2": [Point("W2", 1, 1), SOCKPERF_POINT],
        "W3": [Point("W3", 1, 1, idle=n) for n in (0, 100, 1000)],
        "W4": [Point("W4", 100, 1)],
        "W5": [Point("W5", 1, 128 << 10)],
    }, ("rr_floor", "select", "poll", "epoll_lt")),
    "smoke": Mode("smoke", 1, 150, 50, {
        "W1": [Point("W1", 10, 4096)],
        "W2": [Point("W2", 1, 1)],
        "W3": [Point("W3", 1, 1, idle=n) for n in (0, 10)],
        "W4": [Point("W4", 10, 1)],
        "W5": [Point("W5", 1, 128 << 10)],
    }, W3_SERVERS, ("epoll_lt", "select")),
}


class PointFailed(Exception):
    """A point that did not produce a RESULT (a mismatch, a lost connection, a dead server)."""


def protocol(server: servers.Server) -> str:
    return getattr(server, "protocol", "echo")


def applies(server: servers.Server, p: Point) -> bool:
    """Whether a point concerns the server at all (else it gets no row, not even n/a): W1-W4
    are loadgen's raw echo, W5 is iperf3's own traffic against the iperf3 server, and the
    sockperf server takes only `sockperf pp` (W2, 14-byte messages)."""
    proto = protocol(server)
    if proto == "iperf3":
        return p.workload == "W5"
    if proto == "sockperf":
        return p == SOCKPERF_POINT
    return p.workload != "W5"


def na_reason(server: servers.Server, p: Point) -> str:
    """Why a server cannot run a point by its design, or '' if it can."""
    if p.workload == "W5":
        return ""
    need = p.idle + p.connections if p.workload in ("W1", "W2", "W3") else 1
    if server.max_connections is not None and need > server.max_connections:
        return f"n/a by design: {server.name} serves at most {server.max_connections} at once"
    if server.model in ("thread", "fork") and need >= NA_THREAD_FORK:
        return f"n/a by design: {NA_THREAD_FORK} {server.model}s, one per connection"
    return ""


# ---- processes -------------------------------------------------------------------------------

def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM to the process group, then SIGKILL after `grace` s: nothing is left running."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


def read_lines(proc: subprocess.Popen, until: float) -> Iterator[str]:
    """Lines of proc's stdout as they come, until EOF or the deadline (monotonic)."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while time.monotonic() < until:
            if not sel.select(max(0.0, min(1.0, until - time.monotonic()))):
                continue
            line = proc.stdout.readline()
            if not line:
                return
            yield line.rstrip("\n")
    finally:
        sel.close()


@contextlib.contextmanager
def holding(loadgen: Path, port: int, n: int, cpu: int | None, timeout: float) -> Iterator[None]:
    """N idle connections to the server, held by a separate loadgen process (W3)."""
    if n == 0:
        yield
        return
    argv = [str(loadgen), "--workload", "hold", "--port", str(port), "--connections", str(n),
            "--timeout-ms", str(int(timeout * 1000)), "--hold-ms", "600000"]
    proc = subprocess.Popen(pinned(cpu, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        ready = any(line.startswith("HOLDING ") for line in
                    read_lines(proc, time.monotonic() + timeout + 5))
        if not ready:
            stop(proc)
            raise PointFailed(f"hold of {n} idle connections: " + (proc.stderr.read().strip()
                                                                     or "no HOLDING line"))
        yield
    finally:
        stop(proc, grace=20.0)


def run_loadgen(loadgen: Path, pgid: int, port: int, p: Point, mode: Mode,
                cpu: int | None) -> tuple[dict[str, str], measure.Sample, measure.Sample]:
    """One loadgen run: its RESULT fields and the server's samples at the window's ends."""
    workload = "W2" if p.workload == "W3" else p.workload
    argv = [str(loadgen), "--workload", workload, "--port", str(port),
            "--connections", str(p.connections), "--size", str(p.size),
            "--duration-ms", str(mode.window_ms), "--warmup-ms", str(mode.warmup_ms),
            "--timeout-ms", "20000", "--pause-ms", str(PAUSE_MS)]
    if p.rate:
        argv += ["--rate", str(p.rate)]
    proc = subprocess.Popen(pinned(cpu, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    before = after = None
    fields: dict[str, str] = {}
    try:
        until = time.monotonic() + (mode.window_ms + mode.warmup_ms) / 1000 + 30
        for line in read_lines(proc, until):
            if line.startswith("measuring "):
                before = measure.sample(pgid)
            elif line.startswith("RESULT "):
                after = measure.sample(pgid)
                fields = dict(kv.split("=", 1) for kv in line.split()[1:])
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
    finally:
        stop(proc)
    if proc.returncode != 0 or not fields or before is None or after is None:
        err = proc.stderr.read().strip().splitlines()
        raise PointFailed(err[0] if err else f"loadgen exited {proc.returncode} without a RESULT")
    return fields, before, after


# ---- one point, one row ----------------------------------------------------------------------

@dataclass
class Context:
    mode: Mode
    loadgen: Path
    server_cpu: int | None
    client_cpu: int | None
    machine: dict[str, str]
    started: str
    rows: list[dict[str, object]] = field(default_factory=list)


def base_row(ctx: Context, rnd: int, server: servers.Server, p: Point) -> dict[str, object]:
    row: dict[str, object] = {c: "" for c in COLUMNS}
    row.update(round=rnd, workload=p.workload, server=server.name, kind=server.kind,
               model=server.model, version=server.version, connections=p.connections,
               idle=p.idle, size=p.size, rate=p.rate, window_ms=ctx.mode.window_ms,
               server_cpu=ctx.server_cpu, client_cpu_pin=ctx.client_cpu, started=ctx.started,
               **ctx.machine)
    return row


def run_tool(ctx: Context, run: servers.Running, argv: list[str],
             timeout: float) -> tuple[subprocess.CompletedProcess, measure.Sample, measure.Sample]:
    """An outside client tool, pinned to the client CPU, and the server sampled before and after."""
    before = measure.sample(run.pid)
    try:
        done = subprocess.run(pinned(ctx.client_cpu, argv), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PointFailed(f"{argv[0]} {argv[1]} did not finish in time") from None
    return done, before, measure.sample(run.pid)


def bulk(ctx: Context, run: servers.Running, p: Point, row: dict[str, object]) -> None:
    """W5: one iperf3 stream of p.size-byte writes for the window; MiB/s the receiver counted."""
    seconds = max(1, round(ctx.mode.window_ms / 1000))
    argv = ["iperf3", "-c", "127.0.0.1", "-p", str(run.port), "-t", str(seconds), "-l", str(p.size),
            "-J"]
    done, before, after = run_tool(ctx, run, argv, seconds + 20)
    try:
        end = json.loads(done.stdout)["end"]
        got = end["sum_received"]
    except (ValueError, KeyError):
        raise PointFailed(f"iperf3 -c: {(done.stderr or done.stdout).strip()[:200]}") from None
    mib_s = got["bytes"] / got["seconds"] / 2**20
    messages = got["bytes"] / p.size
    cpu_us = (after.cpu_ns - before.cpu_ns) / 1000
    row.update(status="ok", mib_s=f"{mib_s:.1f}", msgs_s=f"{messages / got['seconds']:.1f}",
               messages=round(messages), server_cpu_us=round(cpu_us),
               server_cpu_us_per_msg=f"{cpu_us / messages:.3f}" if messages else "",
               server_vcsw=after.vcsw_since(before), server_processes=after.processes,
               client_cpu=f"{end.get('cpu_utilization_percent', {}).get('host_total', 0) / 100:.2f}")


def sockperf(ctx: Context, run: servers.Running, p: Point, row: dict[str, object]) -> None:
    """W2 against `sockperf sr`: `sockperf pp --full-rtt` (its own client and message format;
    it times every round trip too, after its own 400 ms warm-up)."""
    seconds = max(1, round(ctx.mode.window_ms / 1000))
    argv = ["sockperf", "pp", "--tcp", "-i", "127.0.0.1", "-p", str(run.port), "-t", str(seconds),
            "-m", str(p.size), "--full-rtt"]
    done, before, after = run_tool(ctx, run, argv, seconds + 20)
    text = re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)
    valid = re.search(r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages=\d+; "
                      r"ReceivedMessages=(\d+)", text)
    total = re.search(r"\[Total Run\].*ReceivedMessages=(\d+)", text)
    pct = {m[1]: m[2] for m in re.finditer(r"---> percentile ([\d.]+) = +([\d.]+)", text)}
    top = re.search(r"---> <MAX> observation = +([\d.]+)", text)
    if not (valid and total and "50.000" in pct):
        raise PointFailed("sockperf pp: " + (text.strip().splitlines() or ["no output"])[-1][:200])
    messages = int(total[1])
    cpu_us = (after.cpu_ns - before.cpu_ns) / 1000
    row.update(status="ok", tps=f"{int(valid[2]) / float(valid[1]):.1f}", p50_us=pct["50.000"],
               p90_us=pct.get("90.000", ""), p99_us=pct.get("99.000", ""),
               p999_us=pct.get("99.900", ""), max_us=top[1] if top else "", messages=messages,
               server_cpu_us=round(cpu_us), server_vcsw=after.vcsw_since(before),
               server_processes=after.processes,
               server_cpu_us_per_msg=f"{cpu_us / messages:.3f}" if messages else "",
               reason="sockperf pp --full-rtt (its own client)")


def measure_point(ctx: Context, run: servers.Running, p: Point, row: dict[str, object]) -> None:
    row["load_start"] = load = measure.loadavg()
    row["noisy"] = int(load > NOISY_LOAD)
    if protocol(run.server) == "sockperf":
        sockperf(ctx, run, p, row)
        row["load_end"] = measure.loadavg()
        return
    if p.workload == "W5":
        bulk(ctx, run, p, row)
        row["load_end"] = measure.loadavg()
        return
    timeout = 20.0 + p.idle / 500
    with holding(ctx.loadgen, run.port, p.idle, ctx.client_cpu, timeout):
        if p.workload == "W3":
            mem = measure.memory(run.pid)
            row.update(rss_kib=mem.rss_kib, pss_kib=mem.pss_kib, vsz_kib=mem.vsz_kib)
        fields, before, after = run_loadgen(ctx.loadgen, run.pid, run.port, p, ctx.mode,
                                            ctx.client_cpu)
    row["load_end"] = measure.loadavg()
    for key in ("tps", "mib_s", "msgs_s", "accepts_s", "failures", "p50_us", "p90_us", "p99_us",
                "p999_us", "max_us", "client_cpu"):
        row[key] = fields.get(key, "")
    seconds = float(fields.get("seconds", "0") or 0)
    messages = (float(fields["msgs_s"]) * seconds if "msgs_s" in fields
                else float(fields.get("transactions", fields.get("accepted", 0))))
    cpu_us = (after.cpu_ns - before.cpu_ns) / 1000
    vcsw = after.vcsw_since(before)
    row.update(status="ok", messages=round(messages), server_cpu_us=round(cpu_us),
               server_vcsw=vcsw, server_processes=after.processes,
               client_saturated=int(float(fields.get("client_cpu", 0)) >= SATURATED))
    if messages > 0:
        row["server_cpu_us_per_msg"] = f"{cpu_us / messages:.3f}"
        row["server_vcsw_per_msg"] = f"{vcsw / messages:.4f}"


def value_of(row: dict[str, object]) -> str:
    key = {"W1": "mib_s", "W4": "accepts_s", "W5": "mib_s"}.get(str(row["workload"]), "tps")
    unit = {"mib_s": "MiB/s", "accepts_s": "accepts/s", "tps": "tx/s"}[key]
    extra = f", p50 {row['p50_us']} µs" if key == "tps" else ""
    return f"{row[key]} {unit}{extra}"


# One progress line per point: "[ 12/738] round 1 epoll_lt W1 N=10 S=4096: 93.8 MiB/s  (load 4.72)
# ETA 6m12s" (on one line).
PROGRESS = re.compile(r"^\[ *(?P<done>\d+)/(?P<total>\d+)\] (?P<what>.+?): (?P<result>.+)  "
                      r"\(load (?P<load>\S+)\)  ETA (?P<min>\d+)m(?P<sec>\d\d)s$", re.M)


class Progress:
    def __init__(self, plan: list[tuple[int, servers.Server, Point]], mode: Mode):
        self.costs = [self.cost(p, mode) for _, _, p in plan]
        self.total, self.done, self.index, self.t0 = sum(self.costs), 0.0, 0, time.monotonic()

    @staticmethod
    def cost(p: Point, mode: Mode) -> float:
        """Planned seconds of one point: warm-up, window, process start and hold set-up."""
        return (mode.warmup_ms + mode.window_ms) / 1000 + 0.25 + p.idle / 4000 + p.connections / 5000

    def line(self, what: str, result: str, load: object) -> str:
        self.done += self.costs[self.index]
        self.index += 1
        elapsed = time.monotonic() - self.t0
        eta = (self.total - self.done) * (elapsed / self.done if self.done else 1.0)
        return (f"[{self.index:3}/{len(self.costs)}] {what}: {result}  (load {load})  "
                f"ETA {int(eta) // 60}m{int(eta) % 60:02d}s")


# ---- the matrix ------------------------------------------------------------------------------

def plan_of(mode: Mode, cat: list[servers.Server], workloads: list[str]
            ) -> list[tuple[int, str, servers.Server, list[Point]]]:
    """(round, workload, server, points) in run order: per round, per workload, every server in
    the same order (A B C ... A B C ...), each started once for its points."""
    out = []
    for rnd in range(1, mode.rounds + 1):
        for w in workloads:
            for server in cat:
                points = [p for p in mode.points[w] if applies(server, p)]
                if (w == "W3" and server.name not in mode.w3_servers) or not points:
                    continue
                out.append((rnd, w, server, points))
    return out


def run_matrix(ctx: Context, cat: list[servers.Server], workloads: list[str],
               csv_path: Path) -> list[dict[str, object]]:
    plan = plan_of(ctx.mode, cat, workloads)
    runnable = [(rnd, s, p) for rnd, _, s, points in plan for p in points if not na_reason(s, p)]
    progress = Progress(runnable, ctx.mode)
    print(f"bench: {ctx.mode.name} mode, {ctx.mode.rounds} round(s), {len(runnable)} points, "
          f"about {int(progress.total) // 60}m{int(progress.total) % 60:02d}s planned; "
          f"server on cpu {ctx.server_cpu}, loadgen on cpu {ctx.client_cpu}", flush=True)
    with open(csv_path, "w", newline="") as f:
        out = csv.DictWriter(f, COLUMNS)
        out.writeheader()

        def emit(row: dict[str, object]) -> None:
            out.writerow(row)
            f.flush()
            ctx.rows.append(row)

        for rnd, w, server, points in plan:
            todo = []
            for p in points:
                if reason := na_reason(server, p):
                    emit({**base_row(ctx, rnd, server, p), "status": "n/a", "reason": reason})
                else:
                    todo.append(p)
            restarts = 0
            while todo and restarts <= 1:
                try:
                    with servers.running(server, cpu=ctx.server_cpu) as run:
                        while todo:
                            p = todo[0]
                            row = base_row(ctx, rnd, server, p)
                            try:
                                measure_point(ctx, run, p, row)
                            except PointFailed as e:
                                row.update(status="failed", reason=str(e)[:300],
                                           load_end=measure.loadavg())
                            todo.pop(0)
                            emit(row)
                            what = f"round {rnd} {server.name} {p.label()}"
                            result = value_of(row) if row["status"] == "ok" else f"FAILED: {row['reason']}"
                            print(progress.line(what, result, row["load_start"]), flush=True)
                            if row["status"] == "failed":
                                break  # the server may be wedged: start it afresh
                except (RuntimeError, OSError, TimeoutError) as e:
                    if not todo:
                        break
                    p = todo.pop(0)
                    emit({**base_row(ctx, rnd, server, p), "status": "failed",
                          "reason": f"server did not start: {e}"[:300]})
                    print(progress.line(f"round {rnd} {server.name} {p.label()}",
                                        f"FAILED: server did not start: {e}", "-"), flush=True)
                    restarts += 1
    return ctx.rows


# ---- the command line ------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python3 -m harness bench", description=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    speed = ap.add_mutually_exclusive_group()
    speed.add_argument("--quick", action="store_true", help="1 round, short points, N <= 1000 (< 3 min)")
    speed.add_argument("--smoke", action="store_true", help="a few tiny points (the tests' run)")
    ap.add_argument("--servers", help="comma-separated server names (default: every one built)")
    ap.add_argument("--workloads", help="comma-separated, from W1,W2,W3,W4,W5 (default: all)")
    ap.add_argument("--rounds", type=int, help="rounds (default: 3 full, 1 quick)")
    ap.add_argument("--out", type=Path, help="results folder (default: build/bench/<mode>-<time>)")
    ap.add_argument("--build", type=Path, help="the build folder (default: $SOCKLAB_BIN_DIR/.. "
                    "or build/dev)")
    ap.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to (0)")
    ap.add_argument("--client-cpu", type=int, default=1, help="CPU loadgen is pinned to (1)")
    ap.add_argument("--list", action="store_true", help="list the servers found and missing, then exit")
    ap.add_argument("--no-plots", action="store_true", help="write CSV and Markdown only")
    ap.add_argument("--report", type=Path, metavar="DIR",
                    help="run nothing: remake DIR/summary.md and DIR/plots from DIR/results.csv")
    return ap


def remake(out: Path, no_plots: bool) -> int:
    """summary.md and the plots again, from a run's results.csv (after editing report.py, say)."""
    with open(out / "results.csv", newline="") as f:
        rows: list[dict[str, object]] = list(csv.DictReader(f))
    if not rows:
        print(f"bench: {out / 'results.csv'} has no rows", file=sys.stderr)
        return 1
    machine = {k: str(rows[0][k]) for k in ("kernel", "cpu_model", "cpus", "git")}
    meta = out / "run.txt"
    argv, mode, seconds = ["(remade)"], "full", 0.0
    if meta.exists():
        fields = dict(line.split("=", 1) for line in meta.read_text().splitlines() if "=" in line)
        argv, mode = fields.get("argv", "").split(), fields.get("mode", mode)
        seconds = float(fields.get("seconds", 0))
    summary = report.write(out, rows, machine, mode, argv, seconds, [])
    problems = [] if no_plots else plots.write(out, rows, summary)
    for problem in problems:
        print(f"bench: plot: {problem}", file=sys.stderr)
    print(report.goals_text(summary))
    return 1 if problems else 0


def build_dir(arg: Path | None) -> Path:
    if arg:
        return arg
    if os.environ.get("SOCKLAB_BIN_DIR"):
        return Path(os.environ["SOCKLAB_BIN_DIR"]).parent
    return REPO / "build" / "dev"


def _terminate(signum, frame):  # SIGTERM: unwind like Ctrl-C, so every `finally` stops its process
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    if args.report:
        return remake(args.report, args.no_plots)
    mode = MODES["quick" if args.quick else "smoke" if args.smoke else "full"]
    if args.rounds:
        mode = Mode(mode.name, max(1, min(args.rounds, 10)), mode.window_ms, mode.warmup_ms,
                    mode.points, mode.w3_servers, mode.default_servers)
    build = build_dir(args.build)
    loadgen = build / "bin" / "loadgen"
    cat = servers.catalogue(build)
    if args.list:
        for s in cat:
            print(f"  {s.name:18} {s.kind:8} {s.model:22} {s.version}")
        for name, hint in servers.missing(build):
            print(f"  {name:18} missing: {hint}")
        return 0
    if not loadgen.exists():
        print(f"bench: {loadgen} not found: build first (cmake --build --preset dev)", file=sys.stderr)
        return 2
    wanted = args.servers.split(",") if args.servers else list(mode.default_servers)
    if wanted:
        known = {s.name for s in cat}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            print(f"bench: unknown or unbuilt server(s) {', '.join(unknown)}; built: "
                  f"{', '.join(sorted(known))}", file=sys.stderr)
            return 2
        cat = [s for s in cat if s.name in wanted]
    workloads = args.workloads.split(",") if args.workloads else list(WORKLOADS)
    if bad := [w for w in workloads if w not in WORKLOADS]:
        print(f"bench: unknown workload(s) {', '.join(bad)}: choose from {','.join(WORKLOADS)}",
              file=sys.stderr)
        return 2
    stamp = datetime.datetime.now(datetime.timezone.utc)
    out = args.out or REPO / "build" / "bench" / f"{mode.name}-{stamp:%Y%m%dT%H%M%S}"
    out.mkdir(parents=True, exist_ok=True)
    for name, hint in servers.missing(build):
        print(f"bench: {name} not built, left out ({hint})")
    ctx = Context(mode, loadgen, args.server_cpu, args.client_cpu, measure.machine(REPO),
                  stamp.strftime("%Y-%m-%dT%H:%M:%SZ"))
    previous = signal.signal(signal.SIGTERM, _terminate)
    t0 = time.monotonic()
    try:
        rows = run_matrix(ctx, cat, workloads, out / "results.csv")
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped; partial results kept",
              file=sys.stderr)
        rows = ctx.rows
        report.write(out, rows, ctx.machine, mode.name, argv, time.monotonic() - t0,
                     servers.missing(build))
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    seconds = time.monotonic() - t0
    (out / "run.txt").write_text(f"mode={mode.name}\nargv={' '.join(argv)}\nseconds={seconds:.0f}\n")
    summary = report.write(out, rows, ctx.machine, mode.name, argv, seconds, servers.missing(build))
    if not args.no_plots:
        for problem in plots.write(out, rows, summary):
            print(f"bench: plot: {problem}", file=sys.stderr)
    print(report.goals_text(summary))
    failed = sum(1 for r in rows if r["status"] == "failed")
    print(f"bench: {len(rows)} rows ({failed} failed) in {time.monotonic() - t0:.0f} s: "
          f"{out / 'results.csv'}, {out / 'summary.md'}, {out / 'plots'}")
    return 1 if failed else 0
