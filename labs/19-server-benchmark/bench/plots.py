"""The run's plots: a gnuplot script and its data per plot in plots/, run by `gnuplot` to SVG.

  w1_throughput.svg  MiB/s against connections, one panel per message size; lab models solid,
                     peers dashed, ceilings dotted; bars span the rounds' min-max
  w3_idle.svg        log-log p50 RTT against idle connections, the select/poll fits annotated
  w2_latency.svg     p50 / p99 / p99.9 per server (1-byte RR, closed loop), rr_floor's p50 a line
  memory.svg         KiB per idle connection (RSS, PSS, VSZ) for the W3 servers
  w4_accepts.svg     accepts/s per server, one bar per number of concurrent connectors
"""
from __future__ import annotations

import shutil
import statistics
import subprocess
from pathlib import Path

from .report import METRIC, cell_of

HEAD = "set terminal svg size 960,600 dynamic noenhanced font 'sans,11' background '#ffffff'\n"
DASH = {"lab": 1, "peer": 2, "ceiling": 3}


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _series(summary: dict, workload: str, size: int) -> dict[str, tuple[str, list[tuple]]]:
    """server -> (kind, [(connections, median, low, high)]) for one W1 panel."""
    out: dict[str, tuple[str, list[tuple]]] = {}
    for cell, entries in summary["table"].items():
        if cell[0] != workload or cell[3] != size or cell[4]:
            continue
        for e in entries:
            if e.value:
                out.setdefault(e.server, (e.kind, []))[1].append(
                    (cell[1], e.value.median, e.value.low, e.value.high))
    return {k: (kind, sorted(pts)) for k, (kind, pts) in sorted(out.items()) if pts}


def w1(summary: dict, d: Path) -> str | None:
    sizes = sorted({c[3] for c in summary["table"] if c[0] == "W1"})
    if not sizes:
        return None
    script = [HEAD.replace("960,600", f"960,{420 * len(sizes)}"), f"set output {_q('w1_throughput.svg')}",
              f"set multiplot layout {len(sizes)},1 title 'W1 ping-pong throughput "
              "(median of the rounds, bars: min-max; lab solid, peers dashed, ceilings dotted)'",
              "set logscale x", "set xlabel 'connections'", "set ylabel 'MiB/s'",
              "set key outside right top",
              "set grid", "set yrange [0:*]", "set offsets graph 0.05, graph 0.05, 0, 0"]
    for size in sizes:
        plots = []
        for name, (kind, pts) in _series(summary, "W1", size).items():
            data = f"data/w1_{size}_{name}.dat"
            (d / data).write_text("".join(f"{n} {m} {lo} {hi}\n" for n, m, lo, hi in pts))
            plots.append(f"{_q(data)} using 1:2:3:4 with yerrorlines dt {DASH.get(kind, 2)} "
                         f"lw {2 if kind == 'lab' else 1} title {_q(name)}")
        script.append(f"set title 'S = {size} B'")
        script.append("plot " + ", \\\n     ".join(plots) if plots else "plot 0 notitle")
    script.append("unset multiplot")
    return "\n".join(script) + "\n"


def w3(summary: dict, d: Path) -> str | None:
    fits = summary["fits"]
    if not fits:
        return None
    script = [HEAD, f"set output {_q('w3_idle.svg')}",
              "set title 'W3: 1 active RR connection + N idle ones (0 idle plotted at 1)'",
              "set logscale xy", "set xlabel 'idle connections'", "set ylabel 'p50 RTT (µs)'",
              "set key top left", "set grid", "set xrange [0.7:*]"]
    plots, y = [], 0.92
    for name, f in fits.items():
        data = f"data/w3_{name}.dat"
        (d / data).write_text("".join(f"{max(n, 1)} {p}\n" for n, p in f["p50"].items()))
        plots.append(f"{_q(data)} using 1:2 with linespoints lw 2 title {_q(name)}")
        if name in ("select", "poll") and f["fit"]:
            a, b, r2 = f["fit"]
            script.append(f"set label {_q(f'{name}: {b * 1000:.0f} ns per idle fd, R² = {r2:.3f}')} "
                          f"at graph 0.35, graph {y:.2f}")
            y -= 0.06
            plots.append(f"({a}) + ({b})*x with lines dt 2 lc rgb '#888888' "
                         f"title {_q(name + ' fit')}")
    script.append("plot " + ", \\\n     ".join(plots))
    return "\n".join(script) + "\n"


def _bars(d: Path, name: str, title: str, ylabel: str, labels: list[str],
          rows: list[tuple[str, list]], extra: list[str] = (), log: bool = True) -> str:
    """A clustered bar chart name.svg (data in data/name.dat): one cluster per row, one bar per
    label. A missing or non-positive value is drawn as no bar: below the range of a log axis (a
    column of NaN only would stop gnuplot: "No valid points")."""
    missing = "1e-12" if log else "0"
    header = "server " + " ".join('"' + label + '"' for label in labels) + "\n"
    body = "".join(f"{server} " + " ".join(str(v if v and v > 0 else missing) for v in vals) + "\n"
                   for server, vals in rows)
    (d / "data" / f"{name}.dat").write_text(header + body)
    cols = ", ".join(f"{_q(f'data/{name}.dat')} using {i + 2}:xtic(1) title columnhead"
                     for i in range(len(labels)))
    positive = [v for _, vals in rows for v in vals if v and v > 0]
    low = min(positive) / 2 if positive else 0.1
    scale = ["set logscale y", f"set yrange [{low:.3g}:*]"] if log else ["set yrange [0:*]"]
    return "\n".join([HEAD, f"set output {_q(name + '.svg')}", f"set title {_q(title)}",
                      "set style data histograms", "set style histogram clustered gap 1",
                      "set style fill solid 0.8 border -1", "set boxwidth 0.9",
                      "set xtics rotate by -40", f"set ylabel {_q(ylabel)}", "set grid ytics",
                      "set key top right", *scale,
                      *extra, f"plot {cols}"]) + "\n"


def w2(summary: dict, d: Path) -> str | None:
    entries = summary["table"].get(("W2", 1, 0, 1, 0), [])
    rows = [(e.server, [e.p50.median, e.p99.median, None]) for e in entries if e.value and e.p50 and e.p99]
    if not rows:
        return None
    p999: dict[str, list[float]] = {}
    for r in summary["rows"]:
        if r["status"] == "ok" and cell_of(r) == ("W2", 1, 0, 1, 0):
            p999.setdefault(str(r["server"]), []).append(float(r["p999_us"]))
    rows = [(n, [a, b, statistics.median(p999[n])]) for n, (a, b, _) in rows]
    floor = next((v[0] for n, v in rows if n == "rr_floor"), None)
    extra = []
    if floor:
        extra = [f"set arrow from graph 0, first {floor} to graph 1, first {floor} nohead dt 2 lw 2",
                 f"set label 'rr_floor p50 {floor:.1f} µs' at graph 0.02, first {floor * 1.15}"]
    return _bars(d, "w2_latency", "W2: 1-byte request/response, closed loop, 1 connection",
                 "RTT (µs, log)", ["p50", "p99", "p99.9"], rows, extra)


def memory(summary: dict, d: Path) -> str | None:
    mem = summary["memory"]
    if not mem:
        return None
    rows = [(name, [m["rss"], m["pss"], m["vsz"]]) for name, m in mem.items()
            if max(m["rss"], m["pss"], m["vsz"]) > 0]
    if not rows:
        return None  # too few idle connections to see any memory grow
    return _bars(d, "memory", "Memory per idle connection (W3, largest N against 0)",
                 "KiB per connection (log)", ["RSS", "PSS", "VSZ"], rows)


def w4(summary: dict, d: Path) -> str | None:
    cells = sorted(c for c in summary["table"] if c[0] == "W4")
    if not cells:
        return None
    names = sorted({e.server for c in cells for e in summary["table"][c] if e.value})
    rows = []
    for name in names:
        vals = []
        for c in cells:
            e = next((e for e in summary["table"][c] if e.server == name and e.value), None)
            vals.append(e.value.median if e else None)
        rows.append((name, vals))
    return _bars(d, "w4_accepts", "W4: accept storm (connect, 1 byte, echo, RST)",
                 METRIC["W4"][1], [f"C={c[1]}" for c in cells], rows, log=False)


def write(out: Path, rows: list[dict[str, object]], summary: dict) -> list[str]:
    """Write every plot it has data for; the problems met (gnuplot missing or failing)."""
    d = out / "plots"
    (d / "data").mkdir(parents=True, exist_ok=True)
    gnuplot = shutil.which("gnuplot")
    problems = [] if gnuplot else ["gnuplot not found (apt install gnuplot-nox): scripts written only"]
    for name, make in (("w1_throughput", w1), ("w3_idle", w3), ("w2_latency", w2),
                       ("memory", memory), ("w4_accepts", w4)):
        script = make(summary, d)
        if script is None:
            continue
        gp = d / f"{name}.gp"
        gp.write_text(script)
        if gnuplot:
            done = subprocess.run([gnuplot, gp.name], cwd=d, capture_output=True, text=True,
                                  timeout=60)
            if done.returncode != 0:
                (d / f"{name}.svg").unlink(missing_ok=True)  # no half-written plot left behind
                problems.append(f"{gp.name}: {done.stderr.strip()[:300]}")
    return problems
