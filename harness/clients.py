"""Small TCP and UDP clients with timeouts, for driving lab servers over loopback.

Every blocking call has a timeout and raises ClientTimeout with what was received so far,
so a test fails with evidence instead of hanging. Timeouts are an idle machine's; the clients
stretch them by steps.slowdown().
"""
from __future__ import annotations

import socket
import struct
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

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

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
        self.sock.close()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "TcpClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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
