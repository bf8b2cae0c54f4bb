#!/usr/bin/python3
"""peer_selectors.py: a benchmark peer, not a lab program. A TCP echo server on Python's
selectors module (written against Debian 12's python3 3.11; selectors picks epoll on Linux):
one thread, non-blocking sockets, recv() of up to 64 KiB, and a per-connection buffer of echo
bytes the socket did not take. A client is not read while 64 KiB wait for it, so memory stays
bounded.

Usage: /usr/bin/python3 peer_selectors.py [--port P]
       (127.0.0.1 only; 0: the kernel picks; prints `READY tcp 127.0.0.1 <port>` when listening;
       SIGTERM or Ctrl-C ends it with status 0)
See also: the selectors module's documentation (its echo example), select.epoll.
"""
from __future__ import annotations

import argparse
import errno
import selectors
import signal
import socket
import sys

BUFFER = 64 * 1024       # one recv() takes up to this much
HIGH_WATER = 64 * 1024   # stop reading a client while this much waits to go back


class Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = bytearray()   # received, not yet sent back
        self.eof = False         # its FIN came

    def wanted(self) -> int:
        reading = 0 if self.eof or len(self.out) >= HIGH_WATER else selectors.EVENT_READ
        return reading | (selectors.EVENT_WRITE if self.out else 0)


def listen_on(port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(socket.SOMAXCONN)
    listener.setblocking(False)
    return listener


def serve(listener: socket.socket) -> None:
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    host, bound = listener.getsockname()
    print(f"READY tcp {host} {bound}", flush=True)

    def close(conn: Conn) -> None:
        sel.unregister(conn.sock)
        conn.sock.close()

    def step(conn: Conn, events: int) -> None:
        if events & selectors.EVENT_WRITE and conn.out:
            sent = conn.sock.send(conn.out)
            del conn.out[:sent]
        if events & selectors.EVENT_READ:
            data = conn.sock.recv(BUFFER)
            if not data:
                conn.eof = True
            else:
                try:
                    sent = conn.sock.send(data) if not conn.out else 0
                except BlockingIOError:
                    sent = 0
                conn.out += data[sent:]
        if conn.eof and not conn.out:
            return close(conn)
        sel.modify(conn.sock, conn.wanted(), conn)

    while True:
        for key, events in sel.select():
            if key.data is None:
                try:
                    sock, _ = listener.accept()
                except (BlockingIOError, ConnectionAbortedError):
                    continue
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as every peer
                sel.register(sock, selectors.EVENT_READ, Conn(sock))
                continue
            try:
                step(key.data, events)
            except BlockingIOError:
                pass
            except (ConnectionResetError, BrokenPipeError):
                close(key.data)


def main() -> int:
    parser = argparse.ArgumentParser(description="A TCP echo server on selectors (benchmark peer).")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: the kernel picks)")
    args = parser.parse_args()   # a bad option: usage on stderr, exit 2
    if not 0 <= args.port <= 65535:
        parser.error(f"--port wants a whole number from 0 to 65535, not {args.port}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    what = f"bind 127.0.0.1:{args.port}"
    try:
        listener = listen_on(args.port)
        what = "serve"
        serve(listener)
    except KeyboardInterrupt:
        return 0
    except OSError as e:   # the suite's error line: `prog: what: strerror [ENAME]`
        name = errno.errorcode.get(e.errno or 0, "E?")
        print(f"peer_selectors: {what}: {e.strerror} [{name}]", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
