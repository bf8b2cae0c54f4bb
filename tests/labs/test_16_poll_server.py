"""Lab 16 poll-server: echo_poll, the server the notes' poll版本 describes in prose.

Each test states one claim of labs/16-poll-server/README.md and proves it over loopback.
"""
from __future__ import annotations

import pytest

from harness import battery

MODEL = battery.Model(lab="16", program="echo_poll", kind=battery.CONCURRENT)


@pytest.mark.limit(90)
@pytest.mark.parametrize("check", [pytest.param(c, id=c.name, marks=pytest.mark.hint(c.hint))
                                   for c in battery.checks(MODEL)])
def test_battery(lab, steps, check):
    check.run(lab, MODEL, steps)
