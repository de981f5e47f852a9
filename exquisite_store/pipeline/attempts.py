"""A failed step becomes an attempt record and a ``failed`` event: best effort on a bad disk."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from exquisite_store.authorship import recorded
from exquisite_store.errors import ArtifactWriteError, ExqError, StepFailure
from exquisite_store.geometry.plan import StepPlan
from exquisite_store.manifests import Attempt, Recipe, Request, Response
from exquisite_store.pipeline.job import Job
from exquisite_store.pipeline.targets import Target
from exquisite_store.pipeline.validate import failed_report
from exquisite_store.store import Store
from exquisite_store.store.objects import ObjectStore
from exquisite_store.store.reach import references


def record_failure(
    store: Store,
    run: Job,
    target: Target,
    exc: StepFailure,
    *,
    plan: StepPlan | None = None,
    recipe: Recipe | None = None,
    recipe_id: str = "",
    request: Request | None = None,
    response: Response | None = None,
) -> str:
    """Store an attempt and a ``failed`` event; the attempt's id, or "" if it could not be.

    Parts of the record whose objects were never stored (the write failed first) are
    left out rather than pointing at nothing. If the attempt itself cannot be written,
    the caller still has the original failure. The record names paths relative to the
    store, never this machine's (the store's own errors already do; this makes sure).
    """
    details = {k: store_relative_text(str(v), store.root) for k, v in sorted(exc.details.items())}
    message = store_relative_text(exc.message, store.root)
    if not _stored(store.objects, recipe, request, response):
        details["record"] = "the request's objects were not all stored; recipe omitted"
        recipe = request = response = None
    try:
        validation_id = str(exc.details.get("validation_id", ""))
        if not validation_id:
            validation_id = store.objects.put_json(failed_report(exc.kind, exc.message, plan))
        attempt = Attempt(
            author=recorded(),
            session=run.session,
            parent=target.parent,
            branch=target.branch,
            created_ms=store.clock_ms(),
            failure_kind=exc.kind,
            message=message,
            recipe=recipe,
            recipe_id=recipe_id,
            request=request,
            response=response,
            validation_id=validation_id,
            timing=run.timing(),
            step_id=str(exc.details.get("step_id", "")),
            details=details,
        )
        aid = store.record_attempt(attempt)
    except ArtifactWriteError as again:
        exc.details["attempt_id"] = ""
        exc.details["attempt_not_recorded"] = again.message
        with contextlib.suppress(ExqError):
            run.event("failed", kind=exc.kind, message=message)
        return ""
    exc.details["attempt_id"] = aid
    with contextlib.suppress(ArtifactWriteError):
        run.event("failed", attempt_id=aid, kind=exc.kind, message=message)
    return aid


def store_relative_text(text: str, root: Path | None) -> str:
    """``text`` with the store's absolute path taken out of any path it names."""
    if root is None:
        return text
    for form in {str(root), str(root.resolve())}:
        text = text.replace(form + "/", "").replace(form, ".")
    return text


def _stored(objects: ObjectStore, *parts: Any) -> bool:
    """Whether every object the given record parts name is in the store."""
    ids: list[str] = []
    for part in parts:
        if part is not None:
            ids.extend(references(part))
    return all(objects.storage.has_object(i) for i in ids)
