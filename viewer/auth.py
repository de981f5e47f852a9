"""Sign-in and roles for a viewer reached by more than one person.

Modes (``AUTH_MODE``): None, only on loopback (whoever can reach it is the machine's
user: an admin); ``tokens``, users and API tokens kept in the store (``core.team``):
a sign-in page puts the token in the session cookie (HttpOnly, SameSite=Lax, Secure
behind TLS), scripts send ``Authorization: Bearer``; ``proxy``, an existing single
sign-on in front sets ``X-Forwarded-User``, believed only from ``TRUSTED_PROXIES``.
Share links (``/-/share/<link>``) give a read-only view of one session in any mode.

Every request is checked here, on the server, against one table of what each route
needs (``NEEDS``): viewers read, editors also run steps, branch, stage and cancel,
admins also drop branches. Refused: 401 (who are you?) or 403 (not with your role),
before the view runs, so nothing is written. Failed sign-ins are throttled per
address and per token (``Throttle``).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

from flask import Blueprint, Flask, current_app, g, redirect, render_template, request, session

from exquisite_store.authorship import reset_author, set_author
from exquisite_store.core import team
from exquisite_store.errors import ExqError, NotFound
from viewer.web import error_response, get_store, wants_json

bp = Blueprint("auth", __name__)

#: routes anyone may reach: the sign-in page, a share link's landing, static files
OPEN = frozenset({"static", "auth.signin", "auth.signin_post", "auth.signout", "auth.share"})
#: what each writing route needs; every other GET needs ``viewer``, any other POST ``admin``
NEEDS = {
    "actions.extend": "editor",
    "actions.estimate": "editor",
    "actions.retry": "editor",
    "actions.new_branch": "editor",
    "actions.set_head": "editor",
    "actions.accept": "editor",
    "actions.keep": "editor",
    "actions.discard": "editor",
    "actions.undo": "editor",
    "actions.cancel_job": "editor",
    "actions.new_session": "editor",
    "actions.delete_branch": "admin",
    "organise.annotate": "editor",
    "actions.repair": "editor",
    "grow.start": "editor",
    "grow.control": "editor",
    "organise.keep_starred": "admin",  # drops branches
}
#: a share link reads these (of its own session only); everything else is refused
SHARED_READS = frozenset(
    {
        "pages.session_page", "pages.step_page", "pages.gallery_page", "pages.compare_page",
        "pages.canvas_json", "assets.object_file", "assets.pyramid_tile",
        "assets.pyramid_diff_tile", "assets.thumb_png", "assets.canvas_png", "assets.diff_png",
        "actions.events", "actions.jobs", "live.live",
    }
)  # fmt: skip
TOKEN_COOKIE = "auth_token"
SHARE_COOKIE = "share"


class Throttled(Exception):
    """Too many failed sign-ins from here: wait ``wait_s``."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(wait_s)
        self.wait_s = wait_s


def _too_many(wait_s: float):
    resp = error_response(429, f"too many failed sign-ins; try again in {wait_s:.0f} s")
    resp[0].headers["Retry-After"] = str(max(1, round(wait_s)))
    return resp


def needs(endpoint: str, method: str) -> str:
    """The role a route needs."""
    if endpoint in NEEDS:
        return NEEDS[endpoint]
    return "viewer" if method in ("GET", "HEAD") else "admin"


class Throttle:
    """At most ``failures`` failed sign-ins per key in ``window_s``; then 429 until it passes."""

    def __init__(self, failures: int = 5, window_s: float = 60.0) -> None:
        self.failures, self.window_s = failures, window_s
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait_s(self, *keys: str) -> float:
        """Seconds until any of ``keys`` may try again (0: now)."""
        now = time.monotonic()
        with self._lock:
            worst = 0.0
            for key in keys:
                q = self._seen.get(key)
                while q and now - q[0] > self.window_s:
                    q.popleft()
                if q and len(q) >= self.failures:
                    worst = max(worst, self.window_s - (now - q[0]))
            return worst

    def failed(self, *keys: str) -> None:
        """Count a failure against each key."""
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._seen.setdefault(key, deque()).append(now)


def init_app(app: Flask) -> None:
    """Check every request's user and role (when ``AUTH_MODE`` or a share link says so)."""
    app.extensions["exq_throttle"] = Throttle(
        app.config.get("AUTH_FAILURES", 5), app.config.get("AUTH_WINDOW_S", 60.0)
    )
    app.register_blueprint(bp)
    app.before_request(authenticate)
    app.teardown_request(_forget_author)

    @app.context_processor
    def who() -> dict[str, Any]:
        p = g.get("principal")
        return {
            "principal": p,
            "role": p.role if p else "",
            "auth_mode": _mode(),
            "show_private": show_private(),
        }


def _mode() -> str | None:
    return current_app.config.get("AUTH_MODE")


def _verifier() -> team.Verifier:
    ext = current_app.extensions
    if "exq_verifier" not in ext:
        ext["exq_verifier"] = team.Verifier(get_store())
    return ext["exq_verifier"]


def _address() -> str:
    return request.remote_addr or "?"


def principal() -> team.Principal | None:
    """Who this request acts for, or None (not signed in)."""
    link = request.cookies.get(SHARE_COOKIE)
    mode = _mode()
    if mode is None:
        shared = _verifier().link(link) if link else None
        return shared or team.Principal("", "admin", via="local")
    if mode == "proxy":
        trusted = current_app.config.get("TRUSTED_PROXIES") or ()
        name = request.headers.get("X-Forwarded-User", "")
        if _address() in trusted and name:
            m = team.member(get_store(), name)
            if m is not None:
                return team.Principal(m.name, m.role, via="proxy")
    else:
        auth = request.headers.get("Authorization", "")
        text = auth[7:].strip() if auth.startswith("Bearer ") else session.get(TOKEN_COOKIE, "")
        if text:
            wait = current_app.extensions["exq_throttle"].wait_s(f"addr:{_address()}")
            if wait:
                raise Throttled(wait)
            p = _verifier().token(text)
            if p is not None:
                return p
            if auth:  # a script trying tokens: count it like a failed sign-in
                current_app.extensions["exq_throttle"].failed(f"addr:{_address()}")
    return _verifier().link(link) if link else None


def authenticate():
    """Refuse a request its principal may not make (401 or 403), before anything runs."""
    endpoint = request.endpoint or ""
    if endpoint in OPEN:
        return None
    try:
        p = principal()
    except Throttled as exc:
        return _too_many(exc.wait_s)
    if p is None:
        if request.method == "GET" and not wants_json():
            return redirect(f"{request.script_root}/-/signin?next={request.full_path}")
        return error_response(401, "sign in first: this viewer needs a user (or a share link)")
    if p.shared:
        refusal = _share_refusal(p, endpoint)
        if refusal:
            return error_response(403, refusal)
    elif team.rank(p.role) < team.rank(needs(endpoint, request.method)):
        return error_response(
            403, f"your role ({p.role}) may not do this: it needs {needs(endpoint, request.method)}"
        )
    g.principal = p
    g.author_token = set_author("" if p.shared else p.name)
    return None


def show_private() -> bool:
    """Whether prompts and costs may be shown (not to a share link made without them)."""
    p = g.get("principal")
    return not (p is not None and p.shared and not p.private)


def _forget_author(_exc: BaseException | None) -> None:
    token = g.pop("author_token", None)
    if token is not None:
        reset_author(token)


def _share_refusal(p: team.Principal, endpoint: str) -> str:
    """Why a share link may not make this request ("" if it may)."""
    if request.method != "GET" or endpoint not in SHARED_READS:
        return "a share link only shows its session, read-only"
    args = request.view_args or {}
    store = get_store()
    try:
        if "name" in args and args["name"] != p.session:
            return "a share link only shows its own session"
        for key in ("step_id", "a", "b"):
            if key in args and store.step(args[key]).session != p.session:
                return "a share link only shows its own session"
        if endpoint == "pages.compare_page":
            ids = [i for i in request.args.get("ids", "").split(",") if i]
            if any(store.step(store.objects.resolve(i)).session != p.session for i in ids):
                return "a share link only shows its own session"
        if endpoint == "assets.object_file" and not p.private:
            ext, _data = store.storage.get_object(args["oid"])
            if ext == "txt":
                return "this link shows the pictures, not the prompts"
    except (NotFound, ExqError):
        return "a share link only shows its own session"
    return ""


@bp.get("/-/signin")
def signin():
    """The sign-in page: one field, the API token (``exq token create USER``)."""
    return render_template("signin.html", next=request.args.get("next", "/"), error="")


@bp.post("/-/signin")
def signin_post():
    """Check a token; throttled per address and per token after a few failures."""
    text = (request.form.get("token") or "").strip()
    nxt = request.form.get("next") or "/"
    if not nxt.startswith("/") or nxt.startswith("//"):
        nxt = "/"
    throttle: Throttle = current_app.extensions["exq_throttle"]
    keys = [f"addr:{_address()}", f"token:{text[:16]}"]
    wait = throttle.wait_s(*keys)
    if wait:
        return _too_many(wait)
    p = _verifier().token(text)
    if p is None:
        throttle.failed(*keys)
        if wants_json():
            return error_response(401, "that token is not valid (or was revoked)")
        page = render_template("signin.html", next=nxt, error="That token is not valid.")
        return page, 401
    session[TOKEN_COOKIE] = text
    session.permanent = True
    return redirect(nxt)


@bp.post("/-/signout")
def signout():
    """Forget this browser's token."""
    session.pop(TOKEN_COOKIE, None)
    return redirect(f"{request.script_root}/-/signin")


@bp.get("/-/share/<link>")
def share(link: str):
    """A share link: remember it in a cookie and show its session."""
    p = _verifier().link(link)
    if p is None:
        return error_response(403, "this share link has expired or was revoked")
    where = f"{request.script_root}/s/{p.session}"
    resp = redirect(where)
    resp.set_cookie(
        SHARE_COOKIE, link, httponly=True, samesite="Lax",
        secure=bool(current_app.config.get("SESSION_COOKIE_SECURE")),
        max_age=max(60, (p.expires_ms - get_store().clock_ms()) // 1000),
    )  # fmt: skip
    return resp
