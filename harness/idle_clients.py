"""Idle TCP connections held by a helper process, for the scale tests of the server labs.

The connections live in a child Python process (its own RLIMIT_NOFILE, raised to fit), so the
test process keeps its fd table small and a server sees n real clients that never send.

    with IdleClients("127.0.0.1", port, 1100) as idle:   # returns once every connect() is done
        idle.connected          # how many completed the handshake
        idle.ended()            # how many of them the server has closed (EOF or RST) so far
    # leaving the block resets them all (no TIME_WAIT left behind) and ends the helper
"""
from __future__ import annotations

import subprocess
import sys

from .steps import scaled

HELPER = r"""
import errno, resource, select, socket, struct, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 64)), hard))
family = socket.AF_INET6 if ":" in host else socket.AF_INET
socks = []
for _ in range(n):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setblocking(False)
    s.connect_ex((host, port))
    socks.append(s)
waiting = {s.fileno(): s for s in socks}
poller = select.poll()
for fd in waiting:
    poller.register(fd, select.POLLOUT)
connected, deadline = 0, time.monotonic() + float(sys.argv[4])
while waiting and time.monotonic() < deadline:
    for fd, _ in poller.poll(200):
        s = waiting.pop(fd)
        poller.unregister(fd)
        connected += s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
print("connected", connected, flush=True)
for line in sys.stdin:
    ended = 0
    for s in socks:
        try:
            ended += s.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            pass
        except OSError:
            ended += 1
    print("ended", ended, flush=True)
# Leave by reset (SO_LINGER 0): a plain close() would leave n sockets in TIME_WAIT for a minute,
# and every test that reads /proc/net/tcp meanwhile (probes.tcp_sockets) would parse them all.
linger0 = struct.pack("ii", 1, 0)
for s in socks:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger0)
    s.close()
"""


class IdleClients:
    def __init__(self, host: str, port: int, n: int, timeout: float = 30.0) -> None:
        self.n = n
        self.proc = subprocess.Popen([sys.executable, "-c", HELPER, host, str(port), str(n),
                                      str(scaled(timeout))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.connected = self._answer("connected")

    def _answer(self, word: str) -> int:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != word:
            self.close()
            raise AssertionError(
                f"the idle-connection helper failed (said {line!r}, exit {self.proc.poll()})")
        return int(line[1])

    def ended(self) -> int:
        """How many of the connections the server has closed so far (EOF or RST)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return self._answer("ended")

    def close(self) -> None:
        if self.proc.poll() is None:
            if self.proc.stdin:
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self) -> "IdleClients":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
