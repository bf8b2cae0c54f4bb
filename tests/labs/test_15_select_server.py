"""Lab 15 select-server: echo_select (select 版本) and echo_select_queue (含有writeList的示例).

Each test states one claim of labs/15-select-server/README.md and proves it over loopback, from
the server's own log lines (labs/15-select-server/output.toml) and from /proc.
"""
from __future__ import annotations

import pytest

from harness import battery

MODELS = [battery.Model(lab="15", program=p, kind=battery.CONCURRENT)
          for p in ("echo_select", "echo_select_queue")]


# ---- the bad-client battery of the server labs (harness/battery.py) -----------------------------

@pytest.mark.limit(90)
@pytest.mark.parametrize("check", [pytest.param((m, c), id=f"{m.program}-{c.name}",
                                                marks=pytest.mark.hint(c.hint))
                                   for m in MODELS for c in battery.checks(m)])
def test_battery(lab, steps, check):
    model, c = check
    c.run(lab, model, steps)
