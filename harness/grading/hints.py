"""From a failed test to: what was expected, what happened, the evidence, and one hint line.

explain(result, record) fills TestResult.expected/actual/evidence/hint from the pytest record
(grade_plugin.py). The hint is decided from the evidence first, then from the test:
  1. a `Hint: ...` line the failure carries (behaviour probes, contract checks);
  2. the program is missing;
  3. a program died by a signal (SIGPIPE, SIGSEGV, SIGABRT...), or hit a resource limit;
  4. a program failed with a contract error line `prog: what: strerror [ENAME]`: the hint of that
     line in the lab's output contract, or of that errno (EADDRINUSE -> SO_REUSEADDR, ...);
  5. it never printed its ready line; it hung (the test ran past its limit);
  6. it printed no line of a contract format the test looked for, but a line close to one:
     "expected a line like `<template>` (Output section ...); the closest line it printed was ...";
  7. only then the test's own hint, `@pytest.mark.hint("...")` on the test function (with
     `step="..."`: only when the test stopped in that step);
  8. weaker symptoms (did not exit), else the failure's first sentence.
Expected and actual are sentences for a student: exception class names, `$ command` reports and
data dumps become a sentence, and the data goes to the evidence.
"""
from __future__ import annotations

import difflib
import re
import signal

from .. import output
from .results import TestResult

SIGNALS: dict[int, str] = {
    signal.SIGPIPE: "it was killed by SIGPIPE: it wrote to a connection the peer had closed or reset; send "
                    "with MSG_NOSIGNAL (or ignore SIGPIPE) and treat EPIPE as 'drop this peer'",
    signal.SIGSEGV: "it crashed with a segmentation fault (SIGSEGV): an invalid pointer or a buffer overrun; "
                    "build with the asan preset to see where",
    signal.SIGABRT: "it aborted (SIGABRT): an uncaught exception, a failed assert, a joinable std::thread "
                    "destroyed, or fortify catching an overflow",
    signal.SIGBUS: "it crashed with SIGBUS: a bad memory access",
    signal.SIGFPE: "it crashed with SIGFPE: a division by zero",
    signal.SIGTERM: ("it died from SIGTERM instead of exiting: "
                     "handle SIGTERM/SIGINT (close everything, exit 0)"),
    signal.SIGINT: "it died from SIGINT instead of exiting: handle SIGTERM/SIGINT (close everything, exit 0)",
    signal.SIGXCPU: "it used up its CPU time limit: an endless busy loop",
    signal.SIGKILL: "it was killed (SIGKILL) after exceeding a limit (memory, time) or ignoring SIGTERM",
}

# The classic cause of an errno a program reports when the lab's contract does not expect it.
ERRNOS: dict[str, str] = {
    "EADDRINUSE": "the address is in use: another socket holds the port (sockets that share a port need "
                  "SO_REUSEADDR set on every one of them before bind(); a restart during TIME_WAIT too)",
    "EADDRNOTAVAIL": "no interface of this machine has that address: bind 127.0.0.1 (the default --host) "
                     "or an address `ip addr` lists",
    "ECONNREFUSED": "nothing listens there: connect to the host and port of the server's ready line",
    "EACCES": "sending to a broadcast address needs setsockopt(SO_BROADCAST, 1) first",
    "EMSGSIZE": "one UDP datagram carries at most 65507 bytes over IPv4 (65527 over IPv6)",
    "EBADF": ("it used an fd that is closed (or was never opened): a close() too early, or a double "
              "close; with threads, a close() in any thread closes the fd for every thread (one fd table)"),
    "ENOTCONN": "the socket is not connected: send()/recv() need connect() first, or use sendto()/recvfrom()",
    "EINVAL": "a call got an invalid argument: check the address length and the option values",
    "EMFILE": "out of file descriptors: close every socket you are done with (an fd leak?)",
    "EPIPE": "it wrote to a connection the peer had closed: treat EPIPE as 'drop this peer', not as fatal",
    "ECONNRESET": "the peer reset the connection: drop that peer and carry on",
}

SYMPTOMS: list[tuple[str, str]] = [
    (r"printed no ready line",
     "no ready line: print `READY <tcp|udp> <host> <port>` (the port really bound) once the socket is bound, "
     "and flush stdout (std::endl, fflush or lab::say)"),
    (r"ended before printing its ready line",
     "it exits before it is ready: read its stderr in the evidence (a failed bind? an unknown option?)"),
    (r"closed its stdout before printing its ready line",
     "it closed stdout before its ready line: keep stdout open and print `READY <tcp|udp> <host> <port>`"),
    (r"ran past its [\d.]+s limit",
     "it hung: a blocking call that never returns (no timeout on recv, waiting for input that never "
     "comes, or a deadlock); the steps show where"),
    # EAGAIN alone is no symptom: a non-blocking socket says it all the time.
    (r"(fork|clone|pthread_create|thread)\b[^\n]*(Resource temporarily unavailable|EAGAIN)|"
     r"what\(\):\s+Resource temporarily unavailable|pids\.max",
     "it started too many processes or threads (the process limit stopped it)"),
    (r"Cannot allocate memory|std::bad_alloc|MemoryError",
     "it ran out of memory (the submission's memory limit)"),
]

WEAK_SYMPTOMS: list[tuple[str, str]] = [
    (r"did not exit within",
     "it did not exit: on stdin EOF, SIGTERM/SIGINT or the end of its work it must exit with status 0"),
    (r"printed no line (like|matching)|closed stdout without printing",
     "its output lacks a line the test waits for: compare its output with the lab README's Output section"),
]

MISSING = re.compile(r"not found in .*build it first|ProgramMissing")
CLOSE_ENOUGH = 0.6   # how alike (difflib ratio) a printed line and a contract example must be to be "close"

# Exceptions a test can stop with, as the sentence a student reads.
EXCEPTIONS: dict[str, str] = {
    "ClientTimeout": "the program did not answer: {}",
    "TimeoutError": "the program did not answer in time (the test's socket timed out)",
    "timeout": "the program did not answer in time (the test's socket timed out)",
    "ConnectionRefusedError": ("nothing accepted the test's connection (ECONNREFUSED): "
                               "is the server listening on the port of its ready line?"),
    "ConnectionResetError": "the program reset the test's connection (ECONNRESET)",
    "BrokenPipeError": "the program closed the connection while the test was still sending (EPIPE)",
    "StepTimeout": "{}",
    "HarnessError": "{}",
    "AssertionError": "{}",
    "Failed": "{}",
}
_CLASS = re.compile(r"^((?:[A-Za-z_]\w*\.)*)([A-Z]\w*|timeout): ?(.*)$", re.S)
_REPR = re.compile(r"^([A-Z]\w*(?:Error|Exception|Timeout))\((.*)\)\.?$")  # OSError(111, '...')
_STATUS = re.compile(r"^\s*\[(exited with -?\d+|killed by signal \d+ \(\w+\)|still running)\]$", re.M)
_DATA = re.compile(r"[:,;]?\s*(?:\{['\"\w(]|\[\(|\[['\"]|\[\d+, )")


def _hint_line(text: str) -> str | None:
    m = re.search(r"^\s*Hint:\s*(.+)$", text, re.M)
    return m[1].strip() if m else None


def _symptom(text: str, table: list[tuple[str, str]]) -> str | None:
    for pattern, hint in table:
        if re.search(pattern, text):
            return hint
    return None


def _signal(programs: list[dict], text: str) -> str | None:
    """A program of the test died by a signal (its exit status), or the failure text says so."""
    numbers = [-p["status"] for p in programs if isinstance(p.get("status"), int) and p["status"] < 0]
    numbers += [int(n) for n in re.findall(r"killed by signal (\d+)", text)]
    for number in numbers:
        try:
            sig = signal.Signals(number)
        except ValueError:
            return f"it was killed by signal {number}"
        return SIGNALS.get(sig, f"it was killed by {sig.name}")
    return None


def _contract_line(lab: str, program: str, text: str) -> output.Line | None:
    try:
        c = output.contract(lab)
    except (KeyError, OSError, ValueError):
        return None
    for line in c.lines.values():
        if line.stream == "stderr" and line.program == program and line.match(text):
            return line
    return None


def _errno(programs: list[dict], text: str, lab: str) -> str | None:
    """A program failed with the contract error line `prog: what: strerror [ENAME]` while the test
    waited for it to work (its ready line, a line of its output, exit 0). An error the lab's contract
    declares without a hint is one some test provokes on purpose: no evidence of a bug."""
    waiting_words = r"ready line|without printing|printed no line|^assert 1 == 0\b"
    waited = re.search(waiting_words, text, re.M) is not None
    if not waited:
        return None
    for p in programs:
        if p.get("status") != 1:
            continue
        for row in (p.get("stderr") or "").splitlines():
            m = output.ERROR.match(row)
            if not m:
                continue
            declared = _contract_line(lab, p["name"], row)
            if declared is not None and not declared.hint:
                continue
            advice = declared.hint if declared is not None else ERRNOS.get(m["ename"])
            if advice is None:
                advice = "its error line in the evidence says which call failed"
            return f"{p['name']} failed with {m['ename']} (`{row.strip()}`): {advice}"
    return None


def _skeleton(line: str) -> str:
    """A printed line without its values (numbers, quoted bytes), to compare formats, not contents."""
    return re.sub(r"\d+", "0", re.sub(r'"(?:[^"\\]|\\.)*"', '""', line))


def _format(misses: list[dict]) -> str | None:
    """The test looked for a contract line the program never printed, and it printed one close to it."""
    if not misses:
        return None
    miss = misses[-1]
    printed = [line for line in (miss.get("text") or "").splitlines() if line.strip()]
    if not printed or (miss.get("pattern") and any(re.search(miss["pattern"], line) for line in printed)):
        return None   # nothing printed, or lines of that format were printed: the behaviour, not the format
    example = _skeleton(miss["example"])
    ratio, closest = max((difflib.SequenceMatcher(None, _skeleton(line), example).ratio(), line)
                         for line in printed)
    if ratio < CLOSE_ENOUGH:
        return None
    return (f"expected a line like `{miss['template']}` ({miss['where']}); the closest line "
            f"{miss['program']} printed was `{closest[:200]}`")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters)"


def plain(text: str) -> str:
    """One failure text as a student reads it: no exception class name in front."""
    text = text.strip()
    first, _, rest = text.partition("\n")
    r = _REPR.match(first)
    if r:   # an exception's repr, e.g. ConnectionRefusedError(111, 'Connection refused')
        text = f"{r[1]}: {r[2]}" + (f"\n{rest}" if rest else "")
    m = _CLASS.match(text)
    if m and (m[1] or m[2] in EXCEPTIONS or m[2].endswith(("Error", "Exception", "Timeout", "Expired"))):
        rest = m[3].strip()
        template = EXCEPTIONS.get(m[2])
        if template is None:
            return f"the test stopped with an error: {rest}" if rest else "the test stopped with an error"
        return template.format(rest).strip() or "the test failed"
    return text


def _sentence(text: str) -> tuple[str, str]:
    """(the sentence, the data cut from it) of a message's first line: a dict or list dump is data."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    m = _DATA.search(first)
    if m and m.start() > 10:
        return first[:m.start()].rstrip(" :,;"), first[m.start():].lstrip(" :,;")
    return first, ""


def _report_status(text: str) -> str:
    """`udp_recv exited with 1`, from a program report (`$ cmd` ... `[exited with 1]`)."""
    cmd = re.search(r"^\$ (\S+)", text, re.M)
    status = _STATUS.search(text)
    name = cmd[1].rsplit("/", 1)[-1] if cmd else "the program"
    return f"{name} {status[1]}" if status else f"{name} did not do what the test waited for"


def expected_actual(message: str) -> tuple[str, str, str]:
    """(expected, actual, data) of a failure message, each a sentence (data: what was cut out)."""
    text = plain(message)
    lines = [l for l in text.splitlines() if l.strip()]
    at = next((i for i, l in enumerate(lines) if l.lstrip().startswith("assert ")), len(lines))
    compare = lines[at].strip()[len("assert "):] if at < len(lines) else ""
    custom = lines[0].strip() if at > 0 else ""
    expected = actual = data = ""
    m = re.match(r"(.+?) == (.+)$", compare)
    if m:
        expected, actual = m[2].strip(), m[1].strip()
        both_numbers = re.fullmatch(r"-?\d+", expected) and re.fullmatch(r"-?\d+", actual)
        if re.search(r"returncode|wait_exit", text) and both_numbers:
            expected, actual = f"exit status {expected}", f"exit status {actual}"
    if custom.startswith("$ "):                      # the message is a program's report
        who = _report_status(text)
        actual = who if not actual or actual.startswith("exit status") else f"{actual} ({who})"
    elif custom:
        sentence, data = _sentence(custom)
        more = [l.strip() for l in lines[1:at] if not l.startswith(("$ ", "  "))]
        data = "\n".join(([data] if data else []) + more)
        em = re.match(r"(?i)^expected (.+?)(?:,\s*(?:got|found|measured|it is|it ended)\s+|;\s*)(.+)$",
                      sentence)
        nm = re.search(r"(?:printed no|without printing a) (line (?:like|matching) .+?)(?: within [\d.]+s)?$",
                       sentence)
        if em:
            expected, actual = em[1], em[2]
        elif sentence.lower().startswith("expected "):
            expected, actual = sentence[len("expected "):], actual
        else:
            expected, actual = (f"a {nm[1]}" if nm else expected), sentence
    if not expected and re.search(r"ready line", actual):
        expected = f"its ready line `{output.READY.template}`"
    if not actual and expected.startswith("a line like"):
        actual = "no line of that format was printed"
    elif not actual and re.search(r" (?:==|!=|<=?|>=?|in|not in|is|and|or) ", compare):
        actual = f"this did not hold: {compare}"
    elif not actual and compare:
        actual = "it was not so"
    return expected, actual or (lines[0] if lines else ""), data


def explain(test: TestResult, rec: dict) -> None:
    """Fill in expected, actual, evidence and hint of a failed test from its pytest record."""
    message = rec.get("message", "") or ""
    longrepr = rec.get("longrepr", "") or ""
    sections = rec.get("sections", {}) or {}
    programs = rec.get("programs") or []
    text = "\n".join([message, longrepr, *sections.values()])
    test.message = _clip(plain(message), 2000)
    test.expected, test.actual, data = expected_actual(message)
    if rec.get("phase") == "setup" and not test.actual:
        test.actual = "the test could not start: " + (plain(message).splitlines() or ["setup failed"])[0]
    own_hint = rec.get("hint") if rec.get("phase", "call") == "call" else None
    if own_hint and rec.get("hint_step"):   # the hint is about one step: only a failure there
        steps = sections.get("steps that ran", "")
        stopped = re.search(r"^\s*FAIL (.+?)  <- the test stopped here", steps, re.M)
        own_hint = own_hint if stopped and rec["hint_step"] in stopped[1] else None
    first = plain(message).splitlines()[0] if plain(message) else ""
    test.hint = (_hint_line(message) or _hint_line(longrepr)
                 or (MISSING.search(text)
                     and ("the program is missing or not executable: it must be named exactly "
                          "as in labs/manifest.toml (see the build log if it did not compile)"))
                 or _signal(programs, text)
                 or _errno(programs, text, test.lab)
                 or _symptom(text, SYMPTOMS)
                 or _format(rec.get("misses") or [])
                 or own_hint
                 or _symptom(text, WEAK_SYMPTOMS)
                 or (first if not first.startswith("$ ") else test.actual))
    ev = []
    if data:
        ev.append(f"[the test's data]\n{data}")
    for name, body in sections.items():
        if "steps that ran" in name or "programs started" in name:
            ev.append(f"[{name.replace('Captured ', '')}]\n{body.rstrip()}")
    if rec.get("snapshot"):
        ev.append("[/proc snapshot at the failure]\n" + rec["snapshot"])
    if len(ev) <= (1 if data else 0):
        ev.append(_clip(longrepr.strip()[-1500:], 1500))
    test.evidence = _clip("\n".join(ev), 5000)
