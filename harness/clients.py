"""Small TCP and UDP clients with timeouts, for driving lab servers over loopback.

Every blocking call has a timeout and raises ClientTimeout with what was received so far,
so a test fails with evidence instead of hanging. Timeouts are an idle machine's; the clients
stretch them by steps.slowdown().

A test that reads an echo while it is still sending sends with TcpClient.send_in_background(),
never with sendall() from a thread of its own: settimeout() sets the timeout of the one socket
object both threads use, and a sendall() already running takes it as the deadline of the whole
send (Python 3.5+), so the reader's settimeout(1.0) could end a 16 MiB sendall() after a second
and leave the server waiting for bytes that never come.
"""
from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time

from .steps import scaled


class ClientTimeout(AssertionError):
    """No (complete) answer within the timeout."""


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _show(data: bytes, limit: int = 80) -> str:
    return repr(data[:limit]) + (f"... ({len(data)} bytes)" if len(data) > limit else "")


class TcpClient:
    def __init__(self, host: str, port: int, timeout: float = 5.0, *, rcvbuf: int | None = None) -> None:
        self.sock = socket.socket(_family(host), socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.timeout = scaled(timeout)
        self.sock.settimeout(self.timeout)
        self.sock.connect((host, port))
        self._senders: list[Sender] = []

    @classmethod
    def adopt(cls, sock: socket.socket, timeout: float = 5.0) -> "TcpClient":
        """A TcpClient over a connected socket the test already has (an accepted one, say)."""
        client = cls.__new__(cls)
        client.sock = sock
        client.timeout = scaled(timeout)
        client.sock.settimeout(client.timeout)
        client._senders = []
        return client

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def send_in_background(self, data: bytes, then_shutdown: bool = False,
                           limit: float = 120.0) -> "Sender":
        """Send `data` from a thread while the caller reads (then half-close if asked); see Sender."""
        sender = Sender(self.sock, data, then_shutdown, limit)
        self._senders.append(sender)
        return sender

    def _limit(self, timeout: float | None) -> float:
        return scaled(timeout) if timeout else self.timeout

    def recv_some(self, timeout: float | None = None, size: int = 65536) -> bytes:
        """Whatever one recv returns (b'' at EOF)."""
        limit = self._limit(timeout)
        self.sock.settimeout(limit)
        try:
            return self.sock.recv(size)
        except socket.timeout:
            raise ClientTimeout(f"nothing received within {limit:.3g}s") from None

    def recv_exactly(self, n: int, timeout: float | None = None) -> bytes:
        return self._recv_while(lambda buf: len(buf) < n, timeout, f"{n} bytes")[:n]

    def recv_until(self, marker: bytes = b"\n", timeout: float | None = None) -> bytes:
        return self._recv_while(lambda buf: marker not in buf, timeout, f"a {marker!r}")

    def recv_until_eof(self, timeout: float | None = None) -> bytes:
        """Everything until the peer's FIN; ClientTimeout if no EOF comes."""
        return self._recv_while(lambda buf: True, timeout, "EOF (the server closing)", until_eof=True)

    def _recv_while(self, want_more, timeout: float | None, what: str, until_eof: bool = False) -> bytes:
        limit = self._limit(timeout)
        deadline = time.monotonic() + limit
        buf = b""
        while want_more(buf):
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClientTimeout(f"waited {limit:g}s for {what}; received {_show(buf)}")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                if until_eof:
                    return buf
                raise ClientTimeout(f"connection closed while waiting for {what}; received {_show(buf)}")
            buf += chunk
        return buf

    def shutdown_write(self) -> None:
        """Half-close: send FIN, keep reading."""
        self.sock.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Abortive close: SO_LINGER {1, 0} makes close() send RST instead of FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        for sender in self._senders:        # each holds a dup() of the socket: stop it first, or
            sender.stop()                   # the connection would outlive this close()
        self.sock.close()

    def __enter__(self) -> "TcpClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Sender:
    """A thread that writes `data` to a connected socket (then shutdown(SHUT_WR) if asked) while the
    test reads the echo. It writes through a dup() of the socket's fd of its own: poll() for POLLOUT,
    then send(MSG_DONTWAIT), so whatever timeout the reading thread sets on the socket object cannot
    end it early. It gives up after `limit` seconds (stretched by the slowdown) or at stop(); the
    error that ended it, if any, is kept in `error` for the test's failure message."""

    def __init__(self, sock: socket.socket, data: bytes, then_shutdown: bool = False,
                 limit: float = 120.0) -> None:
        self.error: BaseException | None = None
        self.sent = 0
        self.total = len(data)
        self._sock = socket.socket(fileno=os.dup(sock.fileno()))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(data, then_shutdown, scaled(limit)),
                                        daemon=True)
        self._thread.start()

    def _run(self, data: bytes, then_shutdown: bool, limit: float) -> None:
        try:
            self._send(memoryview(data), limit)
            if then_shutdown:
                self._sock.shutdown(socket.SHUT_WR)
        except BaseException as e:  # noqa: BLE001 (reported by the test)
            self.error = e
        finally:
            self._sock.close()

    def _send(self, view: memoryview, limit: float) -> None:
        poller = select.poll()
        poller.register(self._sock.fileno(), select.POLLOUT)
        deadline = time.monotonic() + limit
        while self.sent < len(view):
            if self._stop.is_set():
                raise InterruptedError(f"stopped after sending {self.sent} of {self.total} bytes")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the peer took only {self.sent} of {self.total} bytes in {limit:g}s")
            if not poller.poll(200):
                continue
            try:
                self.sent += self._sock.send(view[self.sent:self.sent + (1 << 16)], socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def describe(self) -> str:
        """How far it got, for a failure message: 'sent all N bytes' or 'sent M of N bytes: error'."""
        if self.error is None:
            return f"sent {self.sent} of {self.total} bytes" + ("" if self.done else " so far")
        return f"sent {self.sent} of {self.total} bytes, then {self.error!r}"

    def join(self, timeout: float) -> None:
        """Wait up to `timeout` seconds (stretched by the slowdown) for the whole send."""
        self._thread.join(scaled(timeout))

    def stop(self) -> None:
        """End the thread (within about 0.2 s) and release its fd."""
        self._stop.set()
        self._thread.join(2)


class UdpClient:
    def __init__(self, host: str = "127.0.0.1", bind_port: int | None = None, timeout: float = 2.0) -> None:
        self.sock = socket.socket(_family(host), socket.SOCK_DGRAM)
        if bind_port is not None:
            self.sock.bind((host, bind_port))
        self.timeout = scaled(timeout)

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send_to(self, data: bytes | str, address: tuple[str, int]) -> None:
        self.sock.sendto(data.encode() if isinstance(data, str) else data, address)

    def recv(self, timeout: float | None = None, size: int = 65535) -> tuple[bytes, tuple]:
        limit = scaled(timeout) if timeout else self.timeout
        self.sock.settimeout(limit)
        try:
            return self.sock.recvfrom(size)
        except socket.timeout:
            raise ClientTimeout(f"no datagram within {limit:.3g}s") from None

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "UdpClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nothing is bound to right now (for 'no server there' tests)."""
    with socket.socket(_family(host), socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A TCP port with no listener right now."""
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]
