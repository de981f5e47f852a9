"""The viewer's step workers: the core's job pool, started with the app."""

from __future__ import annotations

from flask import Flask, current_app

from exquisite_store import core
from exquisite_store.errors import ArtifactWriteError
from exquisite_store.store import Store


def init_app(app: Flask) -> None:
    """Start the worker pool and settle jobs a previous server left unfinished."""
    store = Store.open(app.config["EXQ_STORE"], endpoint=app.config["S3_ENDPOINT"])
    app.extensions["exq_store"] = store
    try:
        core.mark_abandoned(store)
    except ArtifactWriteError as exc:  # a read-only store: it is served as it is
        app.logger.warning("unfinished jobs were not recorded as abandoned: %s", exc.message)
    app.extensions["exq_jobs"] = core.Jobs(
        store, app.config["JOB_WORKERS"], max_waiting=app.config["JOB_QUEUE"]
    )


def get_jobs() -> core.Jobs:
    """The app's job runner."""
    return current_app.extensions["exq_jobs"]
