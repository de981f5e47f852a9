"""The viewer's step workers: the core's job pool, started with the app."""

from __future__ import annotations

import threading
import time

from flask import Flask, current_app

from exquisite_store import core
from exquisite_store.core import queue
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
    if app.config.get("QUEUE_URL"):
        start_queue(app, store)
        return
    app.extensions["exq_jobs"] = core.Jobs(
        store, app.config["JOB_WORKERS"], max_waiting=app.config["JOB_QUEUE"]
    )


#: how often the viewer looks for queued jobs whose worker stopped beating
REAP_EVERY_S = 5.0


def start_queue(app: Flask, store: Store) -> None:
    """Steps go to RQ workers; a thread records the jobs of dead workers as abandoned."""
    url = app.config["EXQ_STORE"]
    conn = queue.connect(app.config["QUEUE_URL"])
    app.extensions["exq_queue"] = conn
    app.extensions["exq_jobs"] = queue.QueueJobs(
        store, url, conn, max_waiting=app.config["JOB_QUEUE"]
    )

    def reap() -> None:
        while True:
            try:
                queue.reap(store, url, conn)
            except Exception as exc:  # a lost Redis or store read: try again later
                app.logger.warning("reaping abandoned queued jobs failed: %s", exc)
            time.sleep(REAP_EVERY_S)

    threading.Thread(target=reap, name="exq-reap", daemon=True).start()


def get_queue():
    """The Redis connection of a viewer whose steps run on workers (None: in-process)."""
    return current_app.extensions.get("exq_queue")


def get_jobs() -> core.Jobs:
    """The app's job runner."""
    return current_app.extensions["exq_jobs"]
