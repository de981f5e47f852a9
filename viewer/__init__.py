"""The Flask viewer over one store (app factory; no module-level app)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the viewer for the store named by ``EXQ_STORE`` (config or environment)."""
    app = Flask(__name__)
    app.config.from_mapping(
        EXQ_STORE=os.environ.get("EXQ_STORE", ""),
        SECRET_KEY=secrets.token_hex(32),
        MAX_CONTENT_LENGTH=32 * 1024 * 1024,
        MAX_UPLOAD_PIXELS=40_000_000,
        EXPORT=False,
        JOB_WORKERS=2,
        JOB_QUEUE=16,
        SESSION_COOKIE_SAMESITE="Strict",
    )
    if test_config:
        app.config.update(test_config)
    if not app.config["EXQ_STORE"]:
        raise RuntimeError("create_app needs EXQ_STORE: the store directory to serve")
    app.config["EXQ_STORE"] = str(Path(app.config["EXQ_STORE"]).absolute())
    from viewer import actions, assets, jobs, pages, web
    from viewer.contexts import PageOptions, StepsMemo

    app.extensions["exq_page_options"] = PageOptions(
        branches=frozenset(app.config.get("EXPORT_BRANCHES") or ()), memo=StepsMemo()
    )
    app.url_map.converters["oid"] = web.IdConverter
    app.url_map.converters["name"] = web.NameConverter
    web.init_errors(app)
    web.init_templates(app)
    app.before_request(web.check_csrf)
    if app.config["EXPORT"]:
        app.before_request(web.set_export_depth)
    app.register_blueprint(pages.bp)
    app.register_blueprint(assets.bp)
    if not app.config["EXPORT"]:
        app.register_blueprint(actions.bp)
        jobs.init_app(app)
    return app
