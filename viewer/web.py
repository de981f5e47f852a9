"""Shared web plumbing: the store, URL converters, CSRF, errors, and ``href``."""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from flask import Flask, current_app, g, jsonify, render_template, request, session
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.routing import BaseConverter

from exquisite_store.errors import (
    Busy,
    ConfigError,
    ExqError,
    IntegrityError,
    InvalidName,
    LayoutError,
    ManifestError,
    NotFound,
    StepFailure,
    UserError,
)
from exquisite_store.ids import ID_PATTERN, PREFIX_PATTERN
from exquisite_store.money import format_usd
from exquisite_store.params import BACKENDS, MAX_PROMPT
from exquisite_store.store import Store
from exquisite_store.store.refs import NAME_PATTERN, check_name
from viewer.contexts import PageOptions


class IdConverter(BaseConverter):
    """A full object id; anything else never reaches a view (404)."""

    regex = ID_PATTERN


class NameConverter(BaseConverter):
    """A session or branch name, as ``check_name`` allows; any other segment is a 400.

    The rule takes any one path segment so that a bad name is answered with its
    reason (400) instead of "no such page"; it is checked before a view sees it.
    """

    regex = "[^/]+"

    def to_python(self, value: str) -> str:
        """The name, checked (400 with the reason when it is not one)."""
        try:
            return check_name(value, "name")
        except InvalidName as exc:
            raise BadRequest(exc.message) from None


def get_store() -> Store:
    """The app's store (opened once per app)."""
    store = current_app.extensions.get("exq_store")
    if store is None:
        store = Store.open(
            current_app.config["EXQ_STORE"], endpoint=current_app.config["S3_ENDPOINT"]
        )
        current_app.extensions["exq_store"] = store
    return store


def page_options() -> PageOptions:
    """How this app builds pages (an export's branch scope, the steps memo)."""
    return current_app.extensions["exq_page_options"]


# --- CSRF ---------------------------------------------------------------------------------


def csrf_token() -> str:
    """The token of this browser session (made on first use)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf() -> tuple[Any, int] | None:
    """Refuse a POST without the session's token: 400 when missing, 403 when wrong."""
    if request.method != "POST":
        return None
    if request.headers.get("Authorization", "").startswith("Bearer "):
        return None  # a script's own token, never sent by a browser on its own: no CSRF
    sent = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token")
    if not sent:
        return error_response(400, "missing CSRF token")
    if not hmac.compare_digest(sent, session.get("csrf", "")):
        return error_response(403, "wrong CSRF token")
    return None


def set_export_depth() -> None:
    """How many folders deep the page being exported sits (its links go up that far)."""
    try:
        g.depth = max(0, min(8, int(request.headers.get("X-Export-Depth", "0"))))
    except ValueError:
        g.depth = 0


# --- errors --------------------------------------------------------------------------------


def wants_json() -> bool:
    """JSON for ``.json`` URLs, ``/-/`` API calls and clients that ask for it."""
    return (
        request.path.endswith(".json")
        or request.is_json
        or request.accept_mimetypes.best == "application/json"
        or request.headers.get("X-Requested-With") == "fetch"
    )


def error_response(status: int, message: str, **extra: Any) -> tuple[Any, int]:
    """One renderer for every error: JSON or a page, never a traceback."""
    if wants_json():
        return jsonify({"error": message, "status": status, **extra}), status
    return render_template("error.html", status=status, message=message), status


def status_of(exc: ExqError) -> int:
    """The HTTP status of a project error."""
    if isinstance(exc, NotFound) or exc.kind == "invalid_id":
        return 404
    if isinstance(exc, Busy):
        return 429
    if isinstance(exc, ConfigError | UserError):
        return 400
    if isinstance(exc, StepFailure):
        return 409
    if isinstance(exc, IntegrityError | ManifestError | LayoutError):
        return 410  # damaged on disk (a link, a bad object): the message says to run fsck
    return 500


def init_errors(app: Flask) -> None:
    """Register the error handlers."""

    @app.errorhandler(ExqError)
    def on_exq(exc: ExqError):
        status = status_of(exc)
        message = exc.message if status < 500 else "the store could not answer this request"
        if status == 410:
            message = f"{exc.message} (the store is damaged here; nothing was changed)"
        if status >= 500:
            app.logger.error("store error on %s: %s", request.path, exc.message)
        body, code = error_response(status, message, kind=exc.kind)
        if status == 429:
            return body, code, {"Retry-After": "5"}
        return body, code

    @app.errorhandler(HTTPException)
    def on_http(exc: HTTPException):
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def on_other(exc: Exception):
        app.logger.exception("unexpected error on %s", request.path)
        return error_response(500, "internal error; the details are in the server log")


# --- links -----------------------------------------------------------------------------------


def href(kind: str, value: str = "", **params: Any) -> str:
    """A link to a page or file; relative file paths when rendering the static export."""
    if current_app.config.get("EXPORT"):
        path = export_path(kind, value, **params)
        # the exporter renders or copies every path a page links to
        current_app.extensions.setdefault("export_links", {})[path] = (kind, value, params)
        return "../" * g.get("depth", 0) + path
    return live_url(kind, value, **params)


def live_url(kind: str, value: str = "", **params: Any) -> str:
    """The viewer's own URL of a page or file."""
    from flask import url_for

    if kind == "pyramid":  # the folder of a canvas's tiles: <level>/<col>/<row>.png below it
        tile = url_for("assets.pyramid_tile", canvas_id=value, level=0, col=0, row=0)
        return tile.removesuffix("/0/0/0.png")
    routes = {
        "index": ("pages.index", {}),
        "session": ("pages.session_page", {"name": value}),
        "step": ("pages.step_page", {"step_id": value}),
        "attempt": ("pages.attempt_page", {"attempt_id": value}),
        "compare": ("pages.compare_page", {"ids": ",".join(params.get("ids", []))}),
        "object": ("assets.object_file", {"oid": value}),
        "canvas": ("assets.canvas_png", {"step_id": value}),
        "thumb": ("assets.thumb_png", {"step_id": value}),
        "diff": ("assets.diff_png", {"a": value, "b": params.get("b", "")}),
        "gallery": ("pages.gallery_page", {"name": value}),
        "film": ("assets.film_webm", {"step_id": value}),
    }
    endpoint, args = routes[kind]
    return url_for(endpoint, **args)


def export_path(kind: str, value: str = "", **params: Any) -> str:
    """Where a page or file lives in a static export (relative to its root)."""
    import hashlib

    if kind in ("index", "session"):
        return "index.html"
    if kind == "gallery":
        return "gallery.html"
    if kind in ("step", "attempt"):
        return f"{kind}/{value}.html"
    if kind == "compare":
        key = hashlib.blake2b(",".join(params["ids"]).encode(), digest_size=8).hexdigest()
        return f"compare/{key}.html"
    if kind == "object":
        return f"objects/{value[:2]}/{value}.{params.get('ext', 'png')}"
    if kind in ("canvas", "thumb"):
        return f"{kind}/{value}.png"
    if kind == "pyramid":
        return f"pyramid/{value}"
    if kind == "film":
        return f"film/{value}.webm"
    if kind == "diff":
        return f"diff/{value[:16]}-{params['b'][:16]}.png"
    raise KeyError(kind)


def static_href(name: str) -> str:
    """A file of ``viewer/static`` (relative in the export)."""
    if current_app.config.get("EXPORT"):
        path = f"static/{name}"
        current_app.extensions.setdefault("export_links", {})[path] = ("static", name, {})
        return "../" * g.get("depth", 0) + path
    from flask import url_for

    return url_for("static", filename=name)


def init_templates(app: Flask) -> None:
    """Template helpers."""

    @app.context_processor
    def helpers() -> dict[str, Any]:
        return {
            "href": href,
            "static_href": static_href,
            "csrf_token": csrf_token,
            "export": bool(app.config.get("EXPORT")),
            "usd": lambda micro: format_usd(micro, none="–"),
            "abbrev": lambda oid: (oid or "")[:12],
            "prefix_pattern": PREFIX_PATTERN,
            "name_pattern": NAME_PATTERN,
            "max_prompt": MAX_PROMPT,
            "backends": BACKENDS,
        }
