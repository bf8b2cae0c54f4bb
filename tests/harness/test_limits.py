"""Submissions that hang, fork without end, spin or crash are graded within their limits, get a
report (score 0 with the reason), and leave nothing running. They are shell scripts: the grader
takes programs in any language."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import time

import pytest

from grading_tools import PYTHON, every_test
from harness.grading.sandbox import Sandbox
from harness.rlimits import Limits, wrap_preexec
from harness.programs import REPO

SCRIPTS = {
    # SIGTERM ignored, never exits by itself: a hang.
    "hang": {"udp_recv": "trap '' TERM INT\necho 'READY udp 127.0.0.1 9'\nwhile :; do sleep 1; done",
             "udp_send": "trap '' TERM INT\nwhile :; do sleep 1; done"},
    # Forks until the process limit stops it.
    "forkbomb": {"udp_recv": ("bomb() { bomb | bomb & }\nbomb\n"
                              "echo 'READY udp 127.0.0.1 9'\nwhile :; do sleep 1; done"),
                 "udp_send": "bomb() { bomb | bomb & }\nbomb\nsleep 30"},
    # Crashes (SIGSEGV) right after its ready line. It ignores SIGTERM, so the SIGTERM a test sends once
    # it sees the ready line cannot end it first (under load it sometimes did: "died from SIGTERM").
    "crash": {"udp_recv": "trap '' TERM INT\necho 'READY udp 127.0.0.1 9'\nkill -SEGV $$",
              "udp_send": "kill -SEGV $$"},
    # Burns a core and never answers.
    "spin": {"udp_recv": "while :; do :; done", "udp_send": "while :; do :; done"},
}
SELECT = "test_sigterm_exits_zero or test_sendto_without_receiver_succeeds or hidden"

HIDDEN = '''
import pytest

@pytest.mark.limit(3)
def test_hidden_hang_costs_only_this_test(lab, steps):
    with steps.step("run udp_send, which never ends"):
        proc = lab.run("udp_send", "--message", "x", timeout=100)
    assert proc.popen.returncode == 0, proc.report()
'''


def leftovers(marker: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and int(pid) != os.getpid():
            found.append(f"{pid}: {cmd[:120]}")
    return found


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    subs = root / "submissions"
    for name, progs in SCRIPTS.items():
        d = subs / name
        d.mkdir(parents=True)
        for prog, body in progs.items():
            f = d / prog
            f.write_text("#!/bin/sh\n" + body + "\n")
            f.chmod(0o755)
    hidden = root / "hidden"
    hidden.mkdir()
    (hidden / "test_02_hang.py").write_text(HIDDEN)
    # As root each submission gets a cgroup of its own. As an ordinary user only rlimits apply, and
    # RLIMIT_NPROC counts every process of the user: a fork bomb graded beside the others would leave
    # them unable to fork, so they are graded one after another (harness/README.md, "Limits").
    jobs = "4" if os.geteuid() == 0 else "1"
    t0 = time.monotonic()
    proc = subprocess.run([PYTHON, "-m", "harness", "batch", str(subs), "-j", jobs,
                           "--out", str(root / "out"),
                           "--labs", "02", "-k", SELECT, "--hidden", str(hidden), "--pids-max", "64",
                           "--lab-timeout", "120"], cwd=REPO, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=600)
    return root, proc, time.monotonic() - t0


@pytest.mark.limit(600)
def test_bad_submissions_are_graded_with_reports_and_zero(batch):
    root, proc, _ = batch
    assert proc.returncode == 0, proc.stdout
    rows = list(csv.DictReader(open(root / "out" / "grades.csv")))
    assert sorted(r["student"] for r in rows) == sorted(SCRIPTS), proc.stdout
    for row in rows:
        assert float(row["total"]) == 0 and float(row["max"]) > 0, row
        result = json.loads((root / "out" / f"{row['student']}.json").read_text())
        tests = every_test(result)
        assert len(tests) == 3 and all(t["status"] == "failed" for t in tests), (row["student"], tests)
        assert all(t["hint"] for t in tests)
        assert (root / "out" / "gradescope" / f"{row['student']}.json").exists()


def test_each_failure_names_what_happened(batch):
    root = batch[0]
    by = {s: {t["name"]: t for t in every_test(json.loads((root / "out" / f"{s}.json").read_text()))}
          for s in SCRIPTS}
    hang = by["hang"]["test_hidden_hang_costs_only_this_test"]
    assert "ran past its 3s limit" in hang["message"] and "run udp_send, which never ends" in hang["message"]
    assert hang["hint"].startswith("it hung")
    assert "segmentation fault" in by["crash"]["test_sigterm_exits_zero"]["hint"]
    assert "ready line" in by["spin"]["test_sigterm_exits_zero"]["hint"]
    bomb = json.loads((root / "out" / "forkbomb.json").read_text())
    # else the limits read "no cgroup could be created ...: rlimits only"
    in_a_cgroup = bomb["limits"].startswith("cgroup v")
    assert not in_a_cgroup or "process limit" in bomb["labs"][0]["error"], bomb["labs"][0]["error"]


def test_nothing_is_left_running(batch):
    root, _, _ = batch
    time.sleep(0.5)
    assert leftovers(str(root / "submissions")) == []


def test_limits_reach_the_programs():
    lim = Limits(nofile=77, address_space_mib=512, cpu_seconds=33)
    os.environ["SOCKLAB_LIMITS"] = lim.to_env()
    try:
        pre = wrap_preexec(None)
    finally:
        del os.environ["SOCKLAB_LIMITS"]
    out = subprocess.run(["/bin/sh", "-c", "ulimit -n; ulimit -t"], preexec_fn=pre, stdout=subprocess.PIPE,
                         text=True).stdout.split()
    assert out == ["77", "33"]


def test_sandbox_kills_everything_in_its_cgroup():
    with Sandbox(f"socklab-selftest-{os.getpid()}", Limits(pids_max=32)) as box:
        if not box.dirs:
            pytest.skip(box.note)
        lim = box.limits
        os.environ["SOCKLAB_LIMITS"] = lim.to_env()
        try:
            p = subprocess.Popen(["/bin/sh", "-c", "bomb() { bomb | bomb & }; bomb; sleep 30"],
                                 preexec_fn=wrap_preexec(None), start_new_session=True)
        finally:
            del os.environ["SOCKLAB_LIMITS"]
        deadline = time.monotonic() + 10
        while not box.pids_limit_hit() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert box.pids_limit_hit(), "the fork bomb never reached pids.max"
        assert len(box.pids()) <= 32
        box.kill_all()
        p.wait(timeout=5)
        assert box.pids() == set()


@pytest.mark.limit(300)
def test_without_a_cgroup_a_fork_bomb_is_bounded_by_nproc_as_an_unprivileged_user(tmp_path):
    if os.getuid() != 0:
        pytest.skip("as a normal user RLIMIT_NPROC binds anyway")
    sub = tmp_path / "bomb"
    sub.mkdir(parents=True)
    tmp_path.chmod(0o755)
    sub.chmod(0o755)
    f = sub / "udp_recv"
    f.write_text("#!/bin/sh\nid -u >&2\n" + SCRIPTS["forkbomb"]["udp_recv"] + "\n")
    f.chmod(0o755)
    env = dict(os.environ, SOCKLAB_CGROUP="off")
    out = tmp_path / "r.json"
    proc = subprocess.run([PYTHON, "-m", "harness", "grade", str(sub), "--labs", "02", "-k", "sigterm",
                           "--pids-max", "32", "--json", str(out)], cwd=REPO, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    result = json.loads(out.read_text())
    assert "uid 65534" in result["limits"], result["limits"]
    assert result["score"] == 0 and "65534" in every_test(result)[0]["evidence"], proc.stdout
    time.sleep(0.5)
    assert leftovers(str(sub)) == []
