"""Lab 11 iterative-server: echo_iterative, one client at a time, and the bad-client battery.

Each test states one claim of labs/11-iterative-server/README.md and proves it over loopback.
"""
from __future__ import annotations

import pytest

from harness import battery

MODEL = battery.Model(lab="11", program="echo_iterative", kind=battery.ITERATIVE)


@pytest.mark.limit(90)
@pytest.mark.parametrize("check", [pytest.param(c, id=c.name, marks=pytest.mark.hint(c.hint))
                                   for c in battery.checks(MODEL)])
def test_battery(lab, steps, check):
    check.run(lab, MODEL, steps)
