"""The Flask viewer over one store (app factory; no module-level app)."""

from __future__ import annotations

import os
import secrets
import threading
from pathlib import Path
from typing import Any

from flask import Flask

#: live progress streams at once (each holds a server thread); more get 503 and poll
SSE_MAX_STREAMS = 8


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the viewer for the store named by ``EXQ_STORE`` (config or environment)."""
    app = Flask(__name__)
    app.config.from_mapping(
        EXQ_STORE=os.environ.get("EXQ_STORE", ""),
        S3_ENDPOINT=os.environ.get("AWS_ENDPOINT_URL") or None,
        SECRET_KEY=None,  # the store's viewer.secret (see use_store_secret)
        MAX_CONTENT_LENGTH=32 * 1024 * 1024,
        MAX_UPLOAD_PIXELS=40_000_000,
        EXPORT=False,
        JOB_WORKERS=2,
        JOB_QUEUE=16,
        SESSION_COOKIE_SAMESITE="Strict",
        SERVE_HOST=None,  # the address `exq serve --host` bound: its name is allowed too
        SSE_MAX_STREAMS=SSE_MAX_STREAMS,
        QUEUE_URL=None,  # redis://...: steps go to RQ workers (exq serve --queue)
        AUTH_MODE=None,  # "tokens" or "proxy" (viewer/auth.py); None only on loopback
        TRUSTED_PROXIES=(),  # addresses whose X-Forwarded-User is believed (proxy mode)
    )
    if test_config:
        app.config.update(test_config)
    if not app.config["EXQ_STORE"]:
        raise RuntimeError("create_app needs EXQ_STORE: the store directory to serve")
    if not str(app.config["EXQ_STORE"]).startswith("s3://"):
        app.config["EXQ_STORE"] = str(Path(app.config["EXQ_STORE"]).absolute())
    from viewer import (
        actions,
        assets,
        auth,
        grow,
        jobs,
        live,
        organise,
        pages,
        security,
        short_ids,
        web,
    )
    from viewer.page_options import PageOptions, RefsSnapshot, StepsMemo

    app.extensions["exq_page_options"] = PageOptions(
        branches=frozenset(app.config.get("EXPORT_BRANCHES") or ()),
        memo=StepsMemo(),
        window=app.config.get("EXPORT_WINDOW"),
        full_canvases=not app.config["EXPORT"] or bool(app.config.get("EXPORT_FULL_CANVASES")),
        snapshot=RefsSnapshot() if app.config["EXPORT"] else None,
        off_branch=not app.config["EXPORT"],
    )
    app.extensions["exq_sse_slots"] = threading.BoundedSemaphore(
        max(0, int(app.config["SSE_MAX_STREAMS"]))
    )
    app.url_map.converters["oid"] = web.IdConverter
    app.url_map.converters["name"] = web.NameConverter
    web.init_errors(app)
    web.init_templates(app)
    security.init_app(app, app.config["SERVE_HOST"])
    app.jinja_env.globals["show_private"] = True  # a share link's pages may say otherwise
    if app.config["AUTH_MODE"]:
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"  # a link from elsewhere keeps you in
    if not app.config["EXPORT"]:
        auth.init_app(app)  # who is asking, and may they: before any view runs
    app.before_request(web.check_csrf)
    if app.config["EXPORT"]:
        app.before_request(web.set_export_depth)
    app.register_blueprint(pages.bp)
    app.register_blueprint(assets.bp)
    if not app.config["EXPORT"]:
        app.register_blueprint(actions.bp)
        app.register_blueprint(live.bp)
        app.register_blueprint(organise.bp)
        short_ids.init_app(app)
        jobs.init_app(app)
        app.register_blueprint(grow.bp)
        grow.init_app(app)
    if not app.config["SECRET_KEY"]:
        use_store_secret(app)
    return app


def use_store_secret(app: Flask) -> None:
    """Sign cookies (and so CSRF tokens) with the store's secret: they survive a restart.

    An export writes nothing into the store, and a store that cannot be written (or
    holds an unusable secret file) gets a secret of this process only, said in the log.
    """
    from exquisite_store.errors import ExqError
    from exquisite_store.store.secret_file import load_or_create_secret

    if app.config["EXPORT"] or str(app.config["EXQ_STORE"]).startswith("s3://"):
        # an export writes nothing into the store; a store on S3 has no folder for it
        app.config["SECRET_KEY"] = secrets.token_hex(32)
        return
    try:
        app.config["SECRET_KEY"] = load_or_create_secret(Path(app.config["EXQ_STORE"]))
    except ExqError as exc:
        app.config["SECRET_KEY"] = secrets.token_hex(32)
        app.logger.warning(
            "%s; using a secret of this process: pages opened before a restart will need "
            "a reload before they can change anything",
            exc.message,
        )
