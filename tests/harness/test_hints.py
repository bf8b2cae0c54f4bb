"""The grader's hints: decided from the evidence first, then from the test's own hint marker; and
every expected/actual/hint a student reads is a sentence, never raw exception text or a dump.

Records here are what grade_plugin.py writes for a failed test, made by hand."""
from __future__ import annotations

import ast
import re

import pytest

from harness import manifest
from harness.grading import hints
from harness.grading.points import Points
from harness.grading.results import TestResult as Result
from harness.output import contract

LABS = [lab for lab in manifest.load() if lab.available]
EXCEPTION_NAME = re.compile(r"^(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Timeout|Expired)\b"
                            r"|^AssertionError")


def explained(lab: str = "04", **rec) -> Result:
    test = Result(id="tests/labs/x.py::test_x", lab=lab, name="test_x")
    rec.setdefault("phase", "call")
    hints.explain(test, rec)
    return test


def program(name: str, status: int | None = None, ready: bool = True, stderr: str = "",
            stdout: str = "") -> dict:
    return {"name": name, "status": status, "ready": ready, "stderr": stderr, "stdout": stdout}


def test_a_signal_death_comes_before_the_tests_own_hint():
    t = explained(message="AssertionError: tcp_server printed no line like `x`", hint="loop over send()",
                  programs=[program("tcp_server", status=-13)])
    assert "SIGPIPE" in t.hint


def test_a_second_receiver_with_eaddrinuse_is_told_so_reuseaddr_on_every_receiver():
    line = contract("06")["in_use"]
    t = explained("06",
                  message=("harness.process.HarnessError: "
                           "broadcast_receiver ended before printing its ready line"),
                  hint="the sender needs SO_BROADCAST",
                  programs=[program("broadcast_receiver", status=1, ready=False, stderr=line.example)])
    assert "EADDRINUSE" in t.hint and "SO_REUSEADDR" in t.hint and "every receiver" in t.hint, t.hint
    assert not t.hint.startswith("no ready line")


def test_an_error_the_contract_expects_is_not_taken_for_the_bug():
    """test_cli_contract makes the receiver fail with EADDRINUSE on purpose: a failure there for
    another reason (no hint line) must not be blamed on SO_REUSEADDR."""
    line = contract("06")["in_use"]
    t = explained("06",
                  message=("AssertionError: expected a hint line\n"
                           "$ broadcast_receiver --port 9\n  [exited with 1]"),
                  hint="",
                  programs=[program("broadcast_receiver", status=1, ready=False, stderr=line.example)])
    assert "SO_REUSEADDR" not in t.hint, t.hint


def test_an_unexpected_errno_gets_that_errnos_hint():
    t = explained(message="AssertionError: $ udp_echo_server\n  [exited with 1]\nassert 1 == 0",
                  programs=[program("udp_echo_server", status=1,
                                    stderr=("udp_echo_server: sendto 127.0.0.1:9: "
                                            "Bad file descriptor [EBADF]"))])
    assert "EBADF" in t.hint and "closed" in t.hint


def test_no_ready_line():
    t = explained(message="harness.process.HarnessError: udp_echo_server printed no ready line "
                          "(READY <tcp|udp> <host> <port>) within 10s", hint="send back exactly the bytes")
    assert t.hint.startswith("no ready line")


def test_a_line_close_to_a_contract_line_is_a_format_mismatch_not_the_behaviour():
    line = contract("07")["recv"]
    miss = {"lab": "07", "program": "tcp_server", "name": "recv", "stream": "stdout",
            "template": line.template, "example": line.example, "where": line.where,
            "text": 'accepted 127.0.0.1:5 on 127.0.0.1:6\nrecv 6 bytes: "hello\\n"'}
    t = explained("07", message="harness.process.HarnessError: tcp_server printed no line like ...",
                  hint="TCP is a byte stream: never assume one recv is one message", misses=[miss])
    assert t.hint.startswith(f"expected a line like `{line.template}` "
                             "(Output section of labs/07-tcp-client-server/README.md)")
    assert 'the closest line tcp_server printed was `recv 6 bytes: "hello\\n"`' in t.hint


def test_a_line_that_never_came_is_the_behaviour_the_test_is_about():
    line = contract("08")["duplex_recv"]
    miss = {"lab": "08", "program": "tcp_chat_duplex", "name": "duplex_recv", "stream": "stdout",
            "template": line.template, "example": line.example, "where": line.where,
            "text": "accepted 127.0.0.1:5\nstdin closed: sent FIN with shutdown(SHUT_WR); still receiving\n"
                    "peer finished sending (recv returned 0); we can still send"}
    t = explained("08",
                  message=("harness.process.HarnessError: "
                           "tcp_chat_duplex closed stdout without printing a line"),
                  hint="a half-close is shutdown(SHUT_WR)", misses=[miss])
    assert t.hint == "a half-close is shutdown(SHUT_WR)"


def test_the_tests_own_hint_is_not_given_for_a_setup_failure():
    t = explained(message="harness.process.HarnessError: x", hint="the behaviour", phase="setup")
    assert t.hint != "the behaviour"


@pytest.mark.parametrize("message, actual", [
    ("harness.clients.ClientTimeout: no datagram within 5s",
     "the program did not answer: no datagram within 5s"),
    ("TimeoutError: timed out", "the program did not answer in time (the test's socket timed out)"),
    ("socket.timeout: timed out", "the program did not answer in time (the test's socket timed out)"),
    ("AssertionError: $ /b/udp_send --port 9\n  [exited with 1]\n  stdout:\n  (nothing)\nassert 1 == 0\n"
     " +  where 1 = <x>.popen.returncode", "udp_send exited with 1"),
    ("AssertionError: backlog 1: expected 2 completed, states {40001: 'ESTABLISHED', 40002: 'SYN_SENT'}\n"
     "assert 3 == 2", "backlog 1: expected 2 completed, states"),
    ("assert 'x' in ''", "this did not hold: 'x' in ''"),
])
def test_actual_is_a_sentence(message, actual):
    t = explained(message=message)
    assert t.actual == actual
    for text in (t.actual, t.expected, t.hint):
        assert not EXCEPTION_NAME.match(text), text
        assert "that was false" not in text and not text.startswith("$ ")
    if "{" in message:
        assert "{40001" not in t.actual and "{40001" in t.evidence, "the dump is evidence, not the actual"


def test_exit_statuses_read_as_exit_statuses():
    t = explained(message=("AssertionError: $ /b/udp_send\n  [exited with 1]\n"
                           "assert 1 == 0\n +  where 1 = x.popen.returncode"))
    assert t.expected == "exit status 0"


# ---- hints sit on their tests ------------------------------------------------------------------

def hint_markers(source: str) -> list[tuple[str, ast.AST]]:
    """(decorated function's name, the marker's call) of every @pytest.mark.hint in a spec."""
    found = []
    for node in ast.walk(ast.parse(source)):
        for dec in getattr(node, "decorator_list", []):
            if isinstance(dec, ast.Call) and ast.unparse(dec.func) == "pytest.mark.hint":
                found.append((getattr(node, "name", "?"), dec))
    return found


@pytest.mark.parametrize("lab", LABS, ids=[lab.id for lab in LABS])
def test_every_hint_is_one_sentence_on_a_test_function(lab):
    for name, call in hint_markers(lab.spec.read_text()):
        assert name.startswith("test_"), f"{lab.spec.name}: a hint marker on {name}, not on a test"
        one_string = (len(call.args) == 1 and isinstance(call.args[0], ast.Constant)
                      and isinstance(call.args[0].value, str))
        assert one_string, f"{lab.spec.name}::{name}: the hint marker takes one string"
        assert call.args[0].value.strip() and "\n" not in call.args[0].value, f"{name}: one line"


def test_there_is_no_central_hint_table_any_more():
    assert not hasattr(hints, "HINTS"), "hints live on their tests: @pytest.mark.hint(...)"
    assert sum(len(hint_markers(lab.spec.read_text())) for lab in LABS) >= 33


def test_renaming_a_test_with_a_hint_fails_the_points_check():
    """A hint moves with its test; a renamed test loses its points entry, which `points --check`
    (tests/harness/test_grade.py) reports: the rename cannot go unnoticed."""
    lab = manifest.by_id("07")
    source = lab.spec.read_text()
    hinted = [name for name, _ in hint_markers(source)]
    assert "test_one_recv_returns_two_sends_merged" in hinted
    renamed = source.replace("def test_one_recv_returns_two_sends_merged(", "def test_recv_merges_sends(")
    functions = [n.name for n in ast.parse(renamed).body
                 if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")]
    collected = {lab.id: [f"{lab.spec.name}::{name}" for name in functions]}
    problems = Points.load().check(collected)
    assert any("test_one_recv_returns_two_sends_merged" in p for p in problems), problems
    assert any("test_recv_merges_sends" in p for p in problems), problems


def test_a_long_test_name_is_cut_before_its_parameter():
    from harness.grading.reports import short_name
    name = "test_kernel_sends_icmp_port_unreachable_whether_or_not_the_client_hears[connected]"
    assert len(short_name(name)) == 70 and short_name(name).endswith("...[connected]")
    assert short_name("test_x[a]") == "test_x[a]"


def test_a_missing_line_or_ready_line_is_the_expected_half():
    t = explained(message=("harness.process.HarnessError: "
                           "tcp_chat_duplex closed stdout without printing a line "
                           "like `recv: \"<x>\"` (Output section of labs/08-tcp-chat/README.md)\n$ x"))
    assert t.expected == 'a line like `recv: "<x>"` (Output section of labs/08-tcp-chat/README.md)'
    t = explained(message=("harness.process.HarnessError: "
                           "broadcast_receiver ended before printing its ready line\n$ x"))
    assert t.expected == "its ready line `READY <tcp|udp> <host> <port>`"


def test_a_missing_further_line_of_a_format_already_printed_is_the_behaviour():
    line = contract("07")["recv"]
    miss = {"lab": "07", "program": "tcp_server", "name": "recv", "stream": "stdout",
            "template": line.template, "example": line.example, "where": line.where,
            "pattern": line.pattern.pattern,
            "text": 'recv 5 bytes from 127.0.0.1:5: "hello"'}
    t = explained("07", message="harness.process.HarnessError: tcp_server printed no line like ...",
                  hint="TCP is a byte stream", misses=[miss])
    assert t.hint == "TCP is a byte stream"


def test_the_port_in_use_a_cli_contract_check_provokes_is_not_taken_for_the_bug():
    in_use = "udp_recv: bind 127.0.0.1:9: Address already in use [EADDRINUSE]"
    t = explained("02",
                  message="AssertionError: expected a hint line\n$ udp_recv --port 9\n  [exited with 1]",
                  hint="",
                  programs=[program("udp_recv", status=1, ready=False, stderr=in_use)])
    assert "EADDRINUSE" not in t.hint, t.hint


def test_a_hint_about_one_step_is_given_only_for_a_failure_in_that_step():
    steps = ("  ok   connect  (0.01s)\n"
             "  FAIL read everything: not one byte may be missing  <- the test stopped here")
    there = explained(message="AssertionError: x", hint="loop over send()", hint_step="read everything",
                      sections={"steps that ran": steps})
    assert there.hint == "loop over send()"
    elsewhere = explained(message="AssertionError: x", hint="loop over send()", hint_step="read everything",
                          sections={"steps that ran": "  FAIL connect  <- the test stopped here"})
    assert elsewhere.hint != "loop over send()"
