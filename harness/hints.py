"""From a failed test to: what was expected, what happened, the evidence, and one hint line.

explain(result, record) fills TestResult.expected/actual/evidence/hint from the pytest record
(grade_plugin.py). The hint is, in order of preference:
  1. a `Hint: ...` line the test's own message carries (behaviour probes, contract checks);
  2. a symptom in the failure text (crash signal, no ready line, a hang, a missing program...);
  3. the hint for that test function: its @pytest.mark.hint("...") marker, else HINTS below (one
     line per test, in the student's terms);
  4. the assertion message itself.
Add the hints of a new lab to HINTS when it lands; nothing else needs to change.
"""
from __future__ import annotations

import re
import signal

from .points import func_and_case
from .results import TestResult

# Symptoms visible in any failure text -> the likely cause.
SYMPTOMS: list[tuple[str, str]] = [
    (r"not found in .*build it first|ProgramMissing",
     "the program is missing or not executable: it must be named exactly as in labs/manifest.toml "
     "(see the build log if it did not compile)"),
    (r"printed no ready line",
     "no ready line: print `READY <tcp|udp> <host> <port>` (the port really bound) once the socket is bound, "
     "and flush stdout (std::endl, fflush or lab::say)"),
    (r"ended before printing its ready line",
     "it exits before it is ready: read its stderr in the evidence (a failed bind? an unknown option?)"),
    (r"killed by signal 13|SIGPIPE|status -13",
     "killed by SIGPIPE: writing to a closed/reset connection; send with MSG_NOSIGNAL or ignore SIGPIPE"),
    (r"killed by signal 11|SIGSEGV",
     "it crashed with a segmentation fault (SIGSEGV): an invalid pointer or a buffer overrun; build with "
     "the asan preset to see where"),
    (r"killed by signal 6\b|SIGABRT|buffer overflow detected|bit out of range",
     "it aborted (SIGABRT): an uncaught exception, a failed assert, a joinable std::thread destroyed, or "
     "fortify catching an overflow"),
    (r"sendto[^\n]*\[EACCES\]",
     "sending to a broadcast address needs setsockopt(SO_BROADCAST, 1) first, else sendto fails with EACCES"),
    (r"Bad file descriptor \[EBADF\]",
     "it used an fd that was already closed (EBADF): with threads, a close() in any thread closes the fd "
     "for every thread (one fd table); close each fd once, in the thread that owns it"),
    (r"killed by signal 15\b",
     "it died from SIGTERM instead of exiting: handle SIGTERM/SIGINT (close everything, exit 0)"),
    (r"killed by signal 24|SIGXCPU",
     "it used up its CPU time limit: an endless busy loop"),
    (r"killed by signal 9\b|SIGKILL",
     "it was killed (SIGKILL) after exceeding a limit (memory, time) or ignoring SIGTERM"),
    (r"ran past its [\d.]+s limit",
     "it hung: a blocking call that never returns (no timeout on recv, waiting for input that never "
     "comes, or a deadlock); the steps show where"),
    # (EAGAIN alone is no symptom: a non-blocking socket says it all the time)
    (r"(fork|clone|pthread_create|thread)\b[^\n]*(Resource temporarily unavailable|EAGAIN)|"
     r"what\(\):\s+Resource temporarily unavailable|pids\.max",
     "it started too many processes or threads (the process limit stopped it)"),
    (r"Cannot allocate memory|std::bad_alloc|MemoryError",
     "it ran out of memory (the submission's memory limit)"),
]

# Weaker symptoms: used only when the test has no hint of its own in HINTS.
WEAK_SYMPTOMS: list[tuple[str, str]] = [
    (r"did not exit within",
     "it did not exit: on stdin EOF, SIGTERM/SIGINT or the end of its work it must exit with status 0"),
    (r"printed no line matching|closed stdout without printing",
     "its output lacks a line the test waits for: compare the output format in the lab's README"),
]

# Per test function: what usually breaks it, in the student's terms. Keys: (lab, function).
HINTS: dict[tuple[str, str], str] = {
    ("01", "test_prints_domain_type_protocol_as_the_kernel_reports"):
        "create the four sockets in order (TCP, UDP, TCP over IPv6, AF_UNIX) and print what getsockopt "
        "SO_DOMAIN/SO_TYPE/SO_PROTOCOL returns",
    ("01", "test_fds_are_small_ints_the_kernel_lists_as_sockets"):
        "print the fds socket() really returned, and keep them open until stdin ends (--hold)",
    ("01", "test_port_zero_binds_an_ephemeral_port_that_is_really_bound"):
        "the printed port must be the one bound: read it back with getsockname() and convert it with "
        "ntohs() (network byte order)",
    ("01", "test_ipv6_host"):
        "with --host ::1 create an AF_INET6 socket: take the family from getaddrinfo's result",
    ("01", "test_cli_contract"):
        "--help exits 0, a bad option exits 2 with usage on stderr, a failed bind exits 1 with "
        "`prog: what: strerror [ENAME]`",
    ("02", "test_payload_arrives_byte_exact"):
        "send and print the bytes exactly: binary data may hold NUL bytes, so use lengths, never C strings",
    ("02", "test_empty_datagram_is_a_datagram"):
        "a 0-byte datagram is a real datagram: recvfrom returns 0 for it, which is not an error or EOF",
    ("02", "test_two_sends_are_two_datagrams"):
        "one sendto() per message: UDP keeps message boundaries, so each stdin line must be its own datagram",
    ("02", "test_largest_ipv4_payload_65507_passes"):
        "the receive buffer must hold 65507 bytes (--bufsize), and the sender must send the whole payload at once",
    ("02", "test_65508_bytes_fail_with_emsgsize"):
        "sendto fails with EMSGSIZE above 65507 bytes: report it on stderr and exit 1, never exit 0 on an error",
    ("02", "test_3000_bytes_into_1024_byte_buffer_is_reported_truncated"):
        "the receive buffer truncated the datagram silently: receive with MSG_TRUNC and check "
        "msg_flags & MSG_TRUNC to report the real length",
    ("02", "test_sender_source_port_is_ephemeral_and_bound_implicitly"):
        "do not bind() the sender: the kernel picks an ephemeral port at the first sendto()",
    ("02", "test_sendto_without_receiver_succeeds"):
        "an unconnected UDP sendto succeeds even if nobody listens: do not treat that as an error",
    ("02", "test_count_ends_receiver_with_status_zero"):
        "--count N: exit with status 0 after N datagrams",
    ("02", "test_ipv6_loopback"):
        "bind the address --host names (::1 needs an AF_INET6 socket) and print it in the ready line",
    ("02", "test_sigterm_exits_zero"):
        "SIGTERM/SIGINT must end the program with status 0 (the contract)",
    ("02", "test_cli_contract"):
        "--help exits 0, a bad option exits 2 with usage on stderr, a port in use exits 1 with [EADDRINUSE] and a hint",
    ("03", "test_nihao_bytes_on_the_wire"):
        "a socket carries bytes: encode the text with the chosen encoding (iconv) before send, exactly",
    ("03", "test_matching_encodings_round_trip"):
        "decode the received bytes with the same encoding the sender used",
    ("03", "test_split_character_decodes_with_carry"):
        "a character split across datagrams: keep the incomplete tail bytes and decode them with the next datagram",
    ("04", "test_echo_is_byte_exact"):
        "send back exactly the bytes received (the length recvfrom returned), to the address recvfrom reported",
    ("04", "test_no_server_unconnected_times_out_with_exit_1"):
        "no timeout on the UDP client: a lost datagram blocks recvfrom forever; set SO_RCVTIMEO and exit 1 on EAGAIN",
    ("04", "test_no_server_connected_reports_econnrefused"):
        "only a connect()ed UDP socket hears ICMP port unreachable (ECONNREFUSED); and it needs SO_RCVTIMEO as well",
    ("05", "test_eof_exits_zero_within_2s"):
        "at stdin EOF the sender must wake the receiving thread (eventfd + poll, or shutdown): close() does not "
        "wake a blocked recvfrom, and the program cannot exit while a joinable thread still runs",
    ("05", "test_quit_line_exits_zero_and_is_not_sent"):
        "the quit line ends the chat like EOF: do not send it, wake the receiver, exit 0",
    ("06", "test_two_wildcard_receivers_each_get_every_broadcast"):
        "the sender needs SO_BROADCAST; receivers must bind 0.0.0.0 (with SO_REUSEADDR to share the port)",
    ("06", "test_without_so_broadcast_sendto_fails_with_eacces"):
        "without SO_BROADCAST sendto to a broadcast address fails with EACCES: report it and exit 1",
    ("07", "test_send_loop_survives_short_sends"):
        "send() may take fewer bytes than asked (a short write): loop until every byte is sent, or the rest is lost",
    ("07", "test_one_recv_returns_two_sends_merged"):
        "TCP is a byte stream: one recv() may hold two sends; never assume one recv is one message",
    ("07", "test_client_reset_does_not_stop_server"):
        "a client's RST (ECONNRESET/EPIPE) must end that connection only, never the server",
    ("08", "test_turns_alternate_line_by_line"):
        "the serial chat takes turns: read one whole line from the peer, then send one line from stdin",
    ("10", "test_restart_without_reuseaddr_fails_with_eaddrinuse"):
        "without SO_REUSEADDR a restart while TIME_WAIT remains must fail with EADDRINUSE (exit 1 with the message)",
    ("10", "test_reuseaddr_must_be_set_on_old_and_new_socket"):
        "set SO_REUSEADDR before bind() when --reuseaddr is given: Linux lets the bind pass TIME_WAIT only then",
}

_EXPECTED = re.compile(r"^(?:AssertionError: |HarnessError: |StepTimeout: )?(expected .*)$", re.I)


def _hint_line(text: str) -> str | None:
    m = re.search(r"^\s*Hint:\s*(.+)$", text, re.M)
    return m[1].strip() if m else None


def _symptom(text: str, table: list[tuple[str, str]] = SYMPTOMS) -> str | None:
    for pattern, hint in table:
        if re.search(pattern, text):
            return hint
    m = re.search(r"killed by signal (\d+)", text)
    if m and table is SYMPTOMS:
        try:
            return f"it was killed by {signal.Signals(int(m[1])).name}"
        except ValueError:
            pass
    return None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters)"


def expected_actual(message: str) -> tuple[str, str]:
    first = message.strip().splitlines()[0] if message.strip() else ""
    m = re.search(r"assert (.+?) == (.+)$", first)
    if m:
        return m[2].strip(), m[1].strip()
    m = re.search(r"assert (.+?) (<|>|<=|>=|!=|in|not in) (.+)$", first)
    if m:
        return f"{m[1].strip()} {m[2]} {m[3].strip()}", "that was false"
    lines = [l for l in message.strip().splitlines()
             if l.strip() and not l.lstrip().startswith(("Hint:", "assert ", "+", "where "))]
    if lines and _EXPECTED.match(lines[0]):
        exp = _EXPECTED.match(lines[0])[1]
        # "expected X, got Y" / "expected X; it is Y"
        parts = re.split(r",\s*(?:got|found|measured|it is|it ended)\s+|;\s*", exp, maxsplit=1)
        if len(parts) == 2:
            return parts[0], parts[1]
        return exp, "\n".join(lines[1:3])
    return "", "\n".join(lines[:3])


def explain(test: TestResult, rec: dict) -> None:
    """Fill in expected, actual, evidence and hint of a failed test from its pytest record."""
    message = rec.get("message", "") or ""
    longrepr = rec.get("longrepr", "") or ""
    sections = rec.get("sections", {}) or {}
    text = "\n".join([message, longrepr, *sections.values()])
    test.message = _clip(message, 2000)
    test.expected, test.actual = expected_actual(message)
    if rec.get("phase") == "setup" and not test.actual:
        test.actual = "the test could not start: " + message.splitlines()[0] if message else "setup failed"
    func, _ = func_and_case(test.id)
    test.hint = (_hint_line(message) or _hint_line(longrepr) or _symptom(text)
                 or rec.get("hint") or HINTS.get((test.lab, func)) or _symptom(text, WEAK_SYMPTOMS)
                 or (message.splitlines()[0] if message else ""))
    ev = []
    for name, body in sections.items():
        if "steps that ran" in name or "programs started" in name:
            ev.append(f"[{name.replace('Captured ', '')}]\n{body.rstrip()}")
    if rec.get("snapshot"):
        ev.append("[/proc snapshot at the failure]\n" + rec["snapshot"])
    if not ev:
        ev.append(_clip(longrepr.strip()[-1500:], 1500))
    test.evidence = _clip("\n".join(ev), 5000)
