"""Raw-socket clients for the viewer's network load test: half-open connections, live
streams held open by many tabs, and a reader that drains them as a browser would."""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import threading
import time


def allow_descriptors(n: int) -> None:
    """Let this process hold ``n`` sockets (raise the soft limit if the hard one allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < n:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (n if hard == resource.RLIM_INFINITY else min(n, hard), hard)
        )


def half_open(port: int, n: int) -> list[socket.socket]:
    """``n`` connections that completed the handshake and sent half a request, then nothing."""
    socks = []
    partial = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode()
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(partial)
        socks.append(s)
    return socks


def open_stream(port: int, path: str) -> tuple[socket.socket, int, dict[str, str]]:
    """A live stream as EventSource opens it: the socket, the status and the headers."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n\r\n"
    s.sendall(head.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return s, status, headers


class Drain:
    """Reads every open stream in the background (a tab's EventSource), counting bytes."""

    def __init__(self, socks: list[socket.socket]) -> None:
        self.sel = selectors.DefaultSelector()
        self.bytes = 0
        self.closed = 0
        self._stop = threading.Event()
        for s in socks:
            s.setblocking(False)
            self.sel.register(s, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.sel.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self.sel.unregister(key.fileobj)
                    self.closed += 1
                self.bytes += len(data)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sel.close()


def wait_closed_by_server(socks: list[socket.socket], timeout: float) -> float | None:
    """Seconds until the server has closed every socket in ``socks`` (None: not in time)."""
    start = time.monotonic()
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    try:
        while sel.get_map() and time.monotonic() - start < timeout:
            for key, _ in sel.select(timeout=0.5):
                with contextlib.suppress(BlockingIOError):
                    try:
                        data = key.fileobj.recv(4096)
                    except OSError:
                        data = b""
                    if not data:
                        sel.unregister(key.fileobj)
        return None if sel.get_map() else time.monotonic() - start
    finally:
        sel.close()
