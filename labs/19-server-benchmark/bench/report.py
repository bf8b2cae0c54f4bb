"""From the rows of a run to summary.md: per cell the median ratio to the best peer and to the
in-run ceiling (min-max across rounds), the idle-fd fits, memory per connection, and the goals
table (met, or missed by how much: printed, never asserted)."""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

CEILING = {"W1": "echo_minimal", "W2": "rr_floor", "W3": "rr_floor", "W4": "iterative",
           "W5": "iperf3"}
METRIC = {"W1": ("mib_s", "MiB/s"), "W2": ("tps", "tx/s"), "W3": ("tps", "tx/s"),
          "W4": ("accepts_s", "accepts/s"), "W5": ("mib_s", "MiB/s")}
MEMORY_MODELS = ("thread", "fork", "epoll_lt")


def num(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def cell_of(row: dict[str, object]) -> tuple:
    return (str(row["workload"]), int(row["connections"]), int(row["idle"]), int(row["size"]),
            int(row["rate"]))


def cell_name(cell: tuple) -> str:
    w, n, idle, size, rate = cell
    text = f"{w} N={n} S={size}"
    return text + (f" idle={idle}" if w == "W3" else "") + (f" rate={rate}/s" if rate else "")


@dataclass
class Spread:
    median: float
    low: float
    high: float

    def text(self, digits: int = 2) -> str:
        if self.low == self.high:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} [{self.low:.{digits}f}-{self.high:.{digits}f}]"


def spread(values: list[float]) -> Spread | None:
    return Spread(statistics.median(values), min(values), max(values)) if values else None


@dataclass
class Entry:
    """One server in one cell, over the rounds."""
    server: str
    kind: str
    version: str
    value: Spread | None
    to_peer: Spread | None
    to_ceiling: Spread | None
    p50: Spread | None
    p99: Spread | None
    cpu_per_msg: Spread | None
    vcsw_per_msg: Spread | None
    status: str


def fit(points: list[tuple[float, float]]) -> tuple[float, float, float] | None:
    """Least squares y = a + b x: (a, b, R²), or None with fewer than 3 points."""
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in points) / sxx
    a = my - b * mx
    ss_tot = sum((y - my) ** 2 for y in ys)
    ss_res = sum((y - a - b * x) ** 2 for x, y in points)
    return a, b, (1 - ss_res / ss_tot) if ss_tot else 1.0


def summarize(rows: list[dict[str, object]]) -> dict:
    ok = [r for r in rows if r["status"] == "ok"]
    cells: dict[tuple, dict[str, list[dict[str, object]]]] = {}
    for r in rows:
        cells.setdefault(cell_of(r), {}).setdefault(str(r["server"]), []).append(r)
    table: dict[tuple, list[Entry]] = {}
    for cell, by_server in sorted(cells.items()):
        key = METRIC[cell[0]][0]
        per_round: dict[int, dict[str, float]] = {}
        for r in ok:
            if cell_of(r) == cell and num(r[key]) is not None:
                per_round.setdefault(int(r["round"]), {})[str(r["server"])] = float(r[key])
        kinds = {name: str(rs[0]["kind"]) for name, rs in by_server.items()}
        entries = []
        for name, rs in sorted(by_server.items()):
            good = [r for r in rs if r["status"] == "ok"]
            to_peer, to_ceiling = [], []
            for r in good:
                values = per_round[int(r["round"])]
                peers = [v for s, v in values.items() if kinds.get(s) == "peer" and s != name]
                mine = values[name]
                if peers and max(peers) > 0:
                    to_peer.append(mine / max(peers))
                ceiling = values.get(CEILING[cell[0]])
                if ceiling:
                    to_ceiling.append(mine / ceiling)

            def over(column: str) -> Spread | None:
                return spread([v for r in good if (v := num(r[column])) is not None])
            status = "ok" if good else str(rs[0]["status"])
            entries.append(Entry(name, kinds[name], str(rs[0]["version"]), over(key),
                                 spread(to_peer), spread(to_ceiling), over("p50_us"), over("p99_us"),
                                 over("server_cpu_us_per_msg"), over("server_vcsw_per_msg"),
                                 status if good else f"{status}: {rs[0]['reason']}"))
        table[cell] = entries
    fits = idle_fits(ok)
    return {"table": table, "fits": fits, "memory": memory_per_connection(ok), "rows": rows,
            "goals": goals(table, fits)}


def idle_fits(ok: list[dict[str, object]]) -> dict[str, dict]:
    """Per W3 server: the median p50 per idle count, and the linear fit p50(N) in ns per idle fd."""
    out: dict[str, dict] = {}
    for name in sorted({str(r["server"]) for r in ok if r["workload"] == "W3"}):
        by_n: dict[int, list[float]] = {}
        for r in ok:
            if r["workload"] == "W3" and r["server"] == name and num(r["p50_us"]) is not None:
                by_n.setdefault(int(r["idle"]), []).append(float(r["p50_us"]))
        medians = {n: statistics.median(v) for n, v in sorted(by_n.items())}
        line = fit([(float(n), p) for n, p in medians.items()])
        out[name] = {"p50": medians, "fit": line,
                     "ns_per_fd": line[1] * 1000 if line else None, "r2": line[2] if line else None}
    return out


def memory_per_connection(ok: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    """KiB per idle connection (RSS, PSS, VSZ) of each W3 server: (at the largest N - at N=0) / N,
    per round, median."""
    out: dict[str, dict[str, float]] = {}
    for name in sorted({str(r["server"]) for r in ok if r["workload"] == "W3"}):
        mine = [r for r in ok if r["workload"] == "W3" and r["server"] == name
                and num(r["rss_kib"]) is not None]
        per: dict[str, list[float]] = {"rss": [], "pss": [], "vsz": []}
        for rnd in sorted({int(r["round"]) for r in mine}):
            rs = {int(r["idle"]): r for r in mine if int(r["round"]) == rnd}
            top = max(rs)
            if 0 in rs and top > 0:
                for k in per:
                    per[k].append((float(rs[top][f"{k}_kib"]) - float(rs[0][f"{k}_kib"])) / top)
        if per["rss"]:
            out[name] = {k: statistics.median(v) for k, v in per.items()}
            out[name]["connections"] = max(int(r["idle"]) for r in mine)
    return out


# ---- goals: printed, never asserted ---------------------------------------------------------

def _entry(table: dict, cell: tuple, server: str) -> Entry | None:
    return next((e for e in table.get(cell, []) if e.server == server and e.value), None)


def _verdict(value: float | None, target: float, higher_is_better: bool = True) -> str:
    if value is None:
        return "no data"
    if (value >= target) if higher_is_better else (value <= target):
        return "met"
    if not higher_is_better:
        return f"missed: {value:.2f}, above {target:.2f}"
    return f"missed by {(target - value) / target:.0%}"


def goals(table: dict, fits: dict) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []

    def add(goal: str, what: str, target: str, value: float | None, measured: str, verdict: str):
        out.append({"goal": goal, "what": what, "target": target, "measured": measured if
                    value is not None else "no data", "verdict": verdict})

    rr = ("W2", 1, 0, 1, 0)
    for s in ("epoll_lt", "epoll_et"):
        e = _entry(table, rr, s)
        v = e.to_ceiling.median if e and e.to_ceiling else None
        add("G1", f"{s} tx/s ÷ rr_floor, 1 B RR", "≥ 0.90", v,
            e.to_ceiling.text() if e and e.to_ceiling else "", _verdict(v, 0.90))
    floor = _entry(table, rr, "rr_floor")
    for s in ("epoll_lt", "epoll_et"):
        e = _entry(table, rr, s)
        v = e.p99.median / floor.p99.median if e and e.p99 and floor and floor.p99 else None
        add("G1", f"{s} p99 ÷ rr_floor's p99, 1 B RR", "≤ 1.5", v,
            f"{e.p99.median:.0f} vs {floor.p99.median:.0f} µs ({v:.2f})" if v else "",
            _verdict(v, 1.5, higher_is_better=False))
    for s in ("select", "poll"):
        e = _entry(table, rr, s) or _entry(table, ("W3", 1, 0, 1, 0), s)
        v = e.to_ceiling.median if e and e.to_ceiling else None
        add("G1", f"{s} tx/s ÷ rr_floor, 1 B RR (0 idle)", "≥ 0.85", v,
            e.to_ceiling.text() if e and e.to_ceiling else "", _verdict(v, 0.85))
    p50s = {s: e.p50.median for s in ("select", "poll", "epoll_lt", "epoll_et")
            if (e := _entry(table, rr, s) or _entry(table, ("W3", 1, 0, 1, 0), s)) and e.p50}
    if len(p50s) >= 2:
        mean = statistics.fmean(p50s.values())
        dev = max(abs(p - mean) / mean for p in p50s.values())
        add("G2", "select, poll, epoll LT/ET p50 at 0 idle, from their mean", "within ±10%", dev,
            ", ".join(f"{s} {p:.1f} µs" for s, p in p50s.items()) + f" (max {dev:.0%})",
            _verdict(dev, 0.10, higher_is_better=False))
    for s in ("epoll_lt", "epoll_et"):
        p = fits.get(s, {}).get("p50", {})
        top = max((n for n in p if n >= 3000), default=None)
        v = p[top] / p[0] if top and p.get(0) else None
        add("G3", f"{s} p50 at {top or 10000} idle ÷ p50 at 0 idle", "≤ 1.2", v,
            f"{v:.2f}" if v else "", _verdict(v, 1.2, higher_is_better=False))
    for s in ("select", "poll"):
        f = fits.get(s, {})
        r2 = f.get("r2")
        slope = f.get("ns_per_fd")
        add("G3", f"{s} p50 linear in idle fds (R²)", "R² ≥ 0.95", r2,
            f"R² {r2:.3f}, slope {slope:.0f} ns per idle fd" if r2 is not None else "",
            _verdict(r2, 0.95))
    # G4/G5 for lab 18 as it is (the notes' 1024-byte reads) and, where the run has it, with
    # --read-size 65536 (epoll_lt_64k): what the read size alone is worth.
    for lab in ("epoll_lt", "epoll_lt_64k"):
        if not any(_entry(table, ("W1", n, 0, 16384, 0), lab) for n in (10, 100)):
            continue
        for size in (4096, 16384):
            for n in (10, 100, 1000):
                e = _entry(table, ("W1", n, 0, size, 0), lab)
                v = e.to_peer.median if e and e.to_peer else None
                add("G4", f"{lab} MiB/s ÷ best peer, W1 N={n} S={size}", "≥ 1.00 (worst ≥ 0.90)", v,
                    e.to_peer.text() if e and e.to_peer else "", _verdict(v, 1.00))
        for n in (10, 100):
            cell = ("W1", n, 0, 16384, 0)
            e = _entry(table, cell, lab)
            peers = [p for p in table.get(cell, []) if p.kind == "peer" and p.value]
            if e and e.cpu_per_msg and peers:
                best = max(peers, key=lambda p: p.value.median)
                if best.cpu_per_msg:
                    v = e.cpu_per_msg.median / best.cpu_per_msg.median
                    add("G4", f"{lab} CPU µs/msg ÷ {best.server}'s (best peer), N={n} S=16384", "≤ 1.00",
                        v, f"{e.cpu_per_msg.median:.1f} vs {best.cpu_per_msg.median:.1f} µs ({v:.2f})",
                        _verdict(v, 1.0, higher_is_better=False))
            ev = _entry(table, cell, "libevent")
            v = e.value.median / ev.value.median if e and ev and ev.value.median else None
            add("G4", f"{lab} MiB/s ÷ libevent, N={n} S=16384", "≥ 1.30", v, f"{v:.2f}" if v else "",
                _verdict(v, 1.30))
            v = e.to_ceiling.median if e and e.to_ceiling else None
            add("G5", f"{lab} MiB/s ÷ echo_minimal, N={n} S=16384", "≥ 0.90", v,
                e.to_ceiling.text() if e and e.to_ceiling else "", _verdict(v, 0.90))
        iperf = _entry(table, ("W5", 1, 0, 128 << 10, 0), "iperf3")
        for n in (10, 100):
            e = _entry(table, ("W1", n, 0, 16384, 0), lab)
            v = e.value.median / iperf.value.median if e and iperf and iperf.value.median else None
            add("G5", f"{lab} MiB/s ÷ iperf3 one stream (128 KiB writes), N={n} S=16384", "≥ 0.40", v,
                f"{e.value.median:.0f} vs {iperf.value.median:.0f} MiB/s ({v:.2f})" if v else "",
                _verdict(v, 0.40))
    lab = "epoll_lt"
    e = _entry(table, ("W4", 100, 0, 1, 0), lab)
    v = e.to_ceiling.median if e and e.to_ceiling else None
    add("G7", f"{lab} accepts/s ÷ iterative (the accept floor), C=100", "≥ 0.80", v,
        e.to_ceiling.text() if e and e.to_ceiling else "", _verdict(v, 0.80))
    return out


def goals_text(summary: dict) -> str:
    lines = ["goals (ratios in this run; printed, not asserted):"]
    for g in summary["goals"]:
        lines.append(f"  {g['goal']} {g['what']}: {g['measured']} (target {g['target']}): {g['verdict']}")
    met = sum(g["verdict"] == "met" for g in summary["goals"])
    missed = sum(g["verdict"].startswith("missed") for g in summary["goals"])
    lines.append(f"  {met} met, {missed} missed, {len(summary['goals']) - met - missed} without data")
    return "\n".join(lines)


# ---- Markdown --------------------------------------------------------------------------------

def glance(summary: dict) -> list[str]:
    """The run at a glance: W1 by connections (one table per size), W2, W4 and W5 by server."""
    table = summary["table"]
    out: list[str] = []
    sizes = sorted({c[3] for c in table if c[0] == "W1"})
    for size in sizes:
        cells = sorted((c for c in table if c[0] == "W1" and c[3] == size), key=lambda c: c[1])
        names = sorted({e.server for c in cells for e in table[c]},
                       key=lambda n: ({"lab": 0, "ceiling": 1, "peer": 2}.get(_kind(table, n), 3), n))
        out += [f"W1 ping-pong, S = {size} B: MiB/s, median [min-max] of the rounds; in brackets "
                "below it, the ratio to the best peer of each round, and the server's CPU µs per "
                "message", "",
                "| server | " + " | ".join(f"N={c[1]}" for c in cells) + " |",
                "|---|" + "---|" * len(cells)]
        for name in names:
            row = []
            for c in cells:
                e = next((e for e in table[c] if e.server == name), None)
                if e is None:
                    row.append("")
                elif not e.value:
                    row.append("n/a" if e.status.startswith("n/a") else "failed")
                else:
                    extra = f" (÷peer {e.to_peer.median:.2f})" if e.to_peer else ""
                    cpu = f", {e.cpu_per_msg.median:.0f} µs/msg" if e.cpu_per_msg else ""
                    row.append(f"{e.value.text(0)}{extra}{cpu}")
            out.append(f"| {name} | " + " | ".join(row) + " |")
        out.append("")
    rr = [("W2", 1, 0, 1, 0), ("W2", 1, 0, 14, 0), ("W2", 10, 0, 1, 0), ("W2", 1, 0, 1, 10_000)]
    rr = [c for c in rr if c in table]
    if rr:
        out += ["W2 request/response: transactions/s ÷ rr_floor, and p50 / p99 in µs (medians)", "",
                "| server | " + " | ".join(cell_name(c) for c in rr) + " | CPU µs/msg (1 B) |",
                "|---|" + "---|" * (len(rr) + 1)]
        names = sorted({e.server for c in rr for e in table[c]},
                       key=lambda n: ({"lab": 0, "ceiling": 1, "peer": 2}.get(_kind(table, n), 3), n))
        for name in names:
            row, cpu = [], ""
            for c in rr:
                e = next((e for e in table[c] if e.server == name and e.value), None)
                if e is None:
                    row.append("")
                    continue
                ratio = f"{e.to_ceiling.median:.2f}×, " if e.to_ceiling else ""
                row.append(f"{ratio}{e.p50.median:.0f} / {e.p99.median:.0f}" if e.p50 and e.p99
                           else f"{e.value.median:.0f}")
                if c == rr[0] and e.cpu_per_msg:
                    cpu = f"{e.cpu_per_msg.median:.1f}"
            out.append(f"| {name} | " + " | ".join(row) + f" | {cpu} |")
        out.append("")
    for w, title in (("W4", "W4 accept storm: accepts/s, median [min-max], ÷ the iterative server"),
                     ("W5", "W5 bulk, iperf3 one stream: MiB/s")):
        cells = sorted(c for c in table if c[0] == w)
        if not cells:
            continue
        key = "C" if w == "W4" else "S"
        out += [title, "", "| server | " + " | ".join(f"{key}={c[1] if w == 'W4' else c[3]}"
                                                     for c in cells) + " |",
                "|---|" + "---|" * len(cells)]
        for name in sorted({e.server for c in cells for e in table[c] if e.value}):
            row = []
            for c in cells:
                e = next((e for e in table[c] if e.server == name and e.value), None)
                ratio = f" ({e.to_ceiling.median:.2f}×)" if e and e.to_ceiling and w == "W4" else ""
                row.append(f"{e.value.text(0)}{ratio}" if e else "")
            out.append(f"| {name} | " + " | ".join(row) + " |")
        out.append("")
    return out


def _kind(table: dict, name: str) -> str:
    return next((e.kind for entries in table.values() for e in entries if e.server == name), "")


def markdown(summary: dict, machine: dict[str, str], mode: str, argv: list[str], seconds: float,
             missing: list[tuple[str, str]]) -> str:
    rows = summary["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    versions = sorted({(str(r["server"]), str(r["version"])) for r in rows if r["kind"] != "lab"})
    rounds = max((int(r["round"]) for r in rows), default=0)
    noisy = sum(int(r["noisy"] or 0) for r in ok)
    saturated = sum(int(r["client_saturated"] or 0) for r in ok)
    out = [f"# Lab 19 benchmark: {mode} run",
           "",
           f"- started {rows[0]['started'] if rows else '?'}, {seconds / 60:.1f} minutes, "
           f"{rounds} round(s), window {rows[0]['window_ms'] if rows else '?'} ms per point",
           f"- kernel {machine['kernel']}, {machine['cpus']} CPUs ({machine['cpu_model']}), "
           f"git {machine['git']}",
           f"- server pinned to cpu {rows[0]['server_cpu'] if rows else '?'}, loadgen to cpu "
           f"{rows[0]['client_cpu_pin'] if rows else '?'} (taskset)",
           f"- command: `python3 -m harness bench {' '.join(argv)}`".rstrip(),
           f"- {len(ok)} points measured, {noisy} of them noisy (1-minute load > 1.0 at the start), "
           f"{saturated} with loadgen above 90% CPU (client-bound)",
           "- peers and ceilings: " + (", ".join(f"{s} {v}" for s, v in versions) or "none"),
           ]
    if missing:
        out.append("- not built, left out: " + ", ".join(f"{n} ({h})" for n, h in missing))
    out += ["", "## Goals (median ratios over the rounds; printed, never asserted)", "",
            "| goal | what | target | measured | verdict |", "|---|---|---|---|---|"]
    out += [f"| {g['goal']} | {g['what']} | {g['target']} | {g['measured']} | {g['verdict']} |"
            for g in summary["goals"]]
    out += ["", "## At a glance", ""] + glance(summary)
    out += ["", "## Idle connections (W3): p50 RTT against idle fds, least-squares line", "",
            "| server | p50 µs by idle connections | ns per idle fd | R² |", "|---|---|---|---|"]
    for name, f in summary["fits"].items():
        p50 = ", ".join(f"{n}: {p:.1f}" for n, p in f["p50"].items())
        slope = f"{f['ns_per_fd']:.1f}" if f["ns_per_fd"] is not None else "-"
        r2 = f"{f['r2']:.3f}" if f["r2"] is not None else "-"
        out.append(f"| {name} | {p50} | {slope} | {r2} |")
    out += ["", "## Memory per idle connection (W3, largest N against N=0)", "",
            "| server | connections | RSS KiB | PSS KiB | VSZ KiB |", "|---|---|---|---|---|"]
    for name, m in summary["memory"].items():
        out.append(f"| {name} | {int(m['connections'])} | {m['rss']:.1f} | {m['pss']:.1f} | "
                   f"{m['vsz']:.1f} |")
    out += ["", "## Every cell", "",
            "Median over the rounds, [min-max] across rounds. Ratios are taken round by round "
            "against the best peer of that round and the in-run ceiling (echo_minimal for W1, "
            "rr_floor for W2 and W3, the iterative server for W4, iperf3 for W5).", ""]
    for cell, entries in summary["table"].items():
        metric, unit = METRIC[cell[0]]
        out += [f"### {cell_name(cell)}", "",
                f"| server | kind | {unit} | ÷ best peer | ÷ ceiling | p50 µs | p99 µs | "
                "server CPU µs/msg | vol. cs/msg |", "|---|---|---|---|---|---|---|---|---|"]
        for e in entries:
            if not e.value:
                out.append(f"| {e.server} | {e.kind} | {e.status} | | | | | | |")
                continue

            def t(s: Spread | None, d: int = 2) -> str:
                return s.text(d) if s else "-"
            out.append(f"| {e.server} | {e.kind} | {t(e.value, 1)} | {t(e.to_peer)} | "
                       f"{t(e.to_ceiling)} | {t(e.p50, 1)} | {t(e.p99, 1)} | {t(e.cpu_per_msg)} | "
                       f"{t(e.vcsw_per_msg, 3)} |")
        out.append("")
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        out += ["## Failed points", ""]
        out += [f"- round {r['round']} {r['server']} {cell_name(cell_of(r))}: {r['reason']}"
                for r in failed]
        out.append("")
    return "\n".join(out) + "\n"


def write(out: Path, rows: list[dict[str, object]], machine: dict[str, str], mode: str,
          argv: list[str], seconds: float, missing: list[tuple[str, str]]) -> dict:
    summary = summarize(rows)
    (out / "summary.md").write_text(markdown(summary, machine, mode, argv, seconds, missing))
    return summary
