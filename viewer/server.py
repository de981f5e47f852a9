"""``exq serve``'s HTTP server: waitress, with bounded threads, timeouts and limits.

waitress reads every request whole on one I/O thread (an asyncore loop) before a
worker thread sees it, so a client that connects and sends nothing, or half a request,
costs a file descriptor and a few kB, never a thread; a fixed pool of threads runs the
app. It writes a response's chunks as the app yields them (no output buffering since
waitress 3), which Server-Sent Events need. The limits below bound what one client can
hold: connections, idle time, header time and size, body size.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import resource
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

from flask import Flask
from waitress.channel import HTTPChannel
from waitress.server import BaseWSGIServer, create_server

from exquisite_store.errors import UserError

#: worker threads: every request, and each live progress stream, holds one while it runs
THREADS = 16
#: connections held at once (each costs a descriptor, not a thread); beyond it accept waits
CONNECTION_LIMIT = 4000
#: a connection with no request running and nothing received for this long is closed
IDLE_TIMEOUT_S = 30
#: a request line and headers must arrive within this (a drip-fed request is dropped)
HEADER_TIMEOUT_S = 15
#: how often idle connections are looked for
CLEANUP_INTERVAL_S = 2
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """What one server allows (tests shorten the timeouts)."""

    threads: int = THREADS
    connection_limit: int = CONNECTION_LIMIT
    idle_timeout_s: int = IDLE_TIMEOUT_S
    header_timeout_s: float = HEADER_TIMEOUT_S
    cleanup_interval_s: int = CLEANUP_INTERVAL_S
    max_header_bytes: int = MAX_HEADER_BYTES


class DeadlineChannel(HTTPChannel):
    """waitress's connection, which also drops a client too slow to send its headers.

    waitress closes a connection that sends nothing for ``channel_timeout``; one that
    sends a byte now and then (slowloris) would stay forever. This one measures from the
    first byte of a request and closes when its headers are still unfinished after
    ``header_timeout_s``.
    """

    header_timeout_s: float = HEADER_TIMEOUT_S
    _request_began = 0.0

    def received(self, data: bytes) -> bool:
        """Take bytes of a request, unless its headers are overdue (then close)."""
        now = time.monotonic()
        if self.request is None:
            self._request_began = now
        elif (
            not self.request.headers_finished and now - self._request_began > self.header_timeout_s
        ):
            self.will_close = True  # the I/O loop closes it; no worker was ever involved
            return False
        return super().received(data)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url_of(host: str, port: int) -> str:
    """The viewer's URL for a bound host and port."""
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host
    return f"http://{_address(shown, port)}/"


def listen(host: str, port: int) -> list[socket.socket]:
    """Sockets bound to every address ``host`` names; one clear UserError if none can be."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise UserError(f"cannot listen on {_address(host, port)}: {exc.strerror}") from None
    socks: list[socket.socket] = []
    failures: list[OSError] = []
    for family, type_, proto, _, addr in dict.fromkeys(infos):
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
        except OSError as exc:
            sock.close()
            failures.append(exc)
            continue
        socks.append(sock)
    in_use = [e for e in failures if e.errno == errno.EADDRINUSE]
    if in_use or not socks:
        for sock in socks:
            sock.close()
        raise UserError(f"cannot listen on {_address(host, port)}: {_why(in_use or failures)}")
    return socks


def _why(failures: list[OSError]) -> str:
    exc = failures[0]
    if exc.errno == errno.EADDRINUSE:
        return "the port is already in use (another exq serve?); choose another with --port"
    if exc.errno == errno.EACCES:
        return "permission denied (ports below 1024 need privileges); choose another with --port"
    return exc.strerror or str(exc)


def _raise_fd_limit(wanted: int) -> None:
    """Let the process hold ``wanted`` descriptors if the hard limit allows (never lower)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def make_server(app: Flask, socks: list[socket.socket], limits: Limits | None = None):
    """A waitress server for ``app`` on bound sockets (call ``.run()`` to serve)."""
    lim = limits or Limits()
    if app.config["SSE_MAX_STREAMS"] >= lim.threads:
        raise UserError("live progress streams must leave worker threads for pages")
    _raise_fd_limit(lim.connection_limit + 256)
    # waitress warns on every request queued behind busy threads: noise under load
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    channels = {}
    server = create_server(
        app,
        map=channels,
        sockets=socks,
        threads=lim.threads,
        connection_limit=lim.connection_limit,
        channel_timeout=lim.idle_timeout_s,
        cleanup_interval=lim.cleanup_interval_s,
        max_request_header_size=lim.max_header_bytes,
        # the app refuses bodies over MAX_CONTENT_LENGTH; waitress stops them a bit above
        max_request_body_size=int(app.config["MAX_CONTENT_LENGTH"]) + 1024 * 1024,
        asyncore_use_poll=True,  # select() stops at descriptor 1024
        ident="exquisite-store",
    )
    channel = type("Channel", (DeadlineChannel,), {"header_timeout_s": float(lim.header_timeout_s)})
    for dispatcher in _servers(channels):
        dispatcher.channel_class = channel
    return server


def _servers(channels: dict) -> Iterator[BaseWSGIServer]:
    return (d for d in list(channels.values()) if isinstance(d, BaseWSGIServer))
