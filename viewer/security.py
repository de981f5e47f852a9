"""Who may talk to the viewer: allowed Host names, same-origin writes, protective headers.

A web page on another site cannot read the viewer's answers, but a page whose domain
its owner re-points at 127.0.0.1 (DNS rebinding) can: its requests carry that domain in
``Host``. So every request must name a host the viewer is bound to, and every write
must come from a page of the viewer itself (``Sec-Fetch-Site``, ``Origin``), on top of
the CSRF token.
"""

from __future__ import annotations

import ipaddress
import socket

from flask import Flask, Response, current_app, jsonify, request

from viewer.web import wants_json

#: names that always reach a loopback-bound viewer
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
#: a bind address that listens on every interface
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
#: methods that change nothing; every other one must come from the viewer's own pages
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

# The pages load their script and styles from /static only. Inline style *attributes*
# stay allowed: canvas tiles, bands and the compare slider are placed by per-element
# coordinates; they come from numbers the server renders (escaped), never from user text.
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "style-src-attr 'unsafe-inline'",
        # data: only for the empty GIF Leaflet points a tile at to cancel its download
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin: the viewer's own POSTs keep their Origin header (no-referrer would
    # turn it into "null"); nothing leaves the viewer anyway
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def host_name(host: str) -> str:
    """The name in a ``Host`` header, lower-cased, without port or trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):  # [::1]:5000
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:  # name:port (more colons: a bare IPv6 address)
        host = host.rsplit(":", 1)[0]
    return host.rstrip(".")


def is_ip(name: str) -> bool:
    """Whether a host name is an IP address literal (no DNS, so it cannot be rebound)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def allowed_hosts(bound: str | None) -> tuple[frozenset[str], bool]:
    """The host names the viewer answers to, and whether any IP literal is fine too.

    Loopback names always; the ``--host`` value; and when bound to every interface
    (``0.0.0.0``), this machine's name and any IP address, since a browser that sends
    an IP literal in ``Host`` was pointed at that address, not at someone's domain.
    """
    names = set(LOOPBACK_HOSTS)
    wildcard = bound is not None and host_name(bound) in WILDCARD_HOSTS
    if bound and not wildcard:
        names.add(host_name(bound))
    if wildcard:
        names.add(socket.gethostname().lower())
    return frozenset(names), wildcard


def _refuse(status: int, message: str) -> tuple[Response, int]:
    """A refusal without a page: no template, no token, nothing but the reason."""
    if wants_json():
        return jsonify({"error": message, "status": status}), status
    return Response(message + "\n", status, mimetype="text/plain"), status


def check_host() -> tuple[Response, int] | None:
    """Refuse a request whose ``Host`` is not a name the viewer is bound to (400)."""
    names, any_ip = current_app.extensions["exq_allowed_hosts"]
    raw = request.headers.get("Host")
    if raw is None:  # HTTP/1.0 without Host: it reached the bound address, no name involved
        return None
    name = host_name(raw)
    if name in names or (any_ip and is_ip(name)):
        return None
    shown = ", ".join(sorted(names)) + (", any IP address" if any_ip else "")
    return _refuse(
        400, f"host {raw[:100]!r} is not served here: this viewer answers to {shown} only"
    )


def check_origin() -> tuple[Response, int] | None:
    """Refuse a write that a browser says came from another site or origin (403)."""
    if request.method in SAFE_METHODS:
        return None
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        return _refuse(403, f"refused: a {site} request may not change this store")
    origin = request.headers.get("Origin")
    own = f"{request.scheme}://{request.host}".lower()
    if origin is not None and origin.lower() != own:
        return _refuse(403, f"refused: a request from {origin[:100]!r} may not change this store")
    return None


def add_headers(resp: Response) -> Response:
    """Protective headers on every answer (pages, JSON, files, errors)."""
    for key, value in HEADERS.items():
        resp.headers.setdefault(key, value)
    return resp


def init_app(app: Flask, bound: str | None) -> None:
    """Check every request's host and every write's origin; add the headers."""
    app.extensions["exq_allowed_hosts"] = allowed_hosts(bound)
    app.before_request(check_host)
    app.before_request(check_origin)
    app.after_request(add_headers)
