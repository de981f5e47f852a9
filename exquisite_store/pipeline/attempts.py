"""A failed step becomes an attempt record and a ``failed`` event: best effort on a bad disk."""

from __future__ import annotations

import contextlib
from typing import Any

from exquisite_store.errors import ArtifactWriteError, ExqError, StepFailure
from exquisite_store.manifests import Attempt, Response
from exquisite_store.pipeline.validate import failed_report
from exquisite_store.store.objects import ObjectStore
from exquisite_store.store.reach import references


def record_failure(ctx: Any, exc: StepFailure, response: Response | None = None) -> str:
    """Store an attempt and a ``failed`` event; best effort on a failing disk.

    Parts of the record whose objects were never stored (the write failed first)
    are left out rather than pointing at nothing. If the attempt itself cannot be
    written, the caller still gets the original failure; returns "" then.
    """
    if response is None and ctx.response_id:
        res = ctx.result
        response = Response(
            response_id=ctx.response_id,
            cost_micro_usd=res.cost_micro_usd,
            usage=res.usage,
            provider_request_id=res.provider_request_id,
        )
    details = {k: str(v) for k, v in sorted(exc.details.items())}
    recipe, request = ctx.recipe, ctx.request
    if not _stored(ctx.objects, recipe, request, response):
        details["record"] = "the request's objects were not all stored; recipe omitted"
        recipe = request = response = None
    try:
        validation_id = str(exc.details.get("validation_id", ""))
        if not validation_id:
            report = failed_report(exc.kind, exc.message, ctx.plan)
            validation_id = ctx.objects.put_json(report)
        attempt = Attempt(
            session=ctx.session,
            parent=ctx.target.parent,
            branch=ctx.target.branch,
            created_ms=ctx.store.clock_ms(),
            failure_kind=exc.kind,
            message=exc.message,
            recipe=recipe,
            recipe_id=ctx.recipe_id,
            request=request,
            response=response,
            validation_id=validation_id,
            timing=ctx.run.timing(),
            step_id=str(exc.details.get("step_id", "")),
            details=details,
        )
        aid = ctx.store.record_attempt(attempt)
    except ArtifactWriteError as again:
        exc.details["attempt_not_recorded"] = again.message
        with contextlib.suppress(ExqError):
            ctx.run.event("failed", kind=exc.kind, message=exc.message)
        return ""
    ctx.out.attempt_ids.append(aid)
    with contextlib.suppress(ArtifactWriteError):
        ctx.run.event("failed", attempt_id=aid, kind=exc.kind, message=exc.message)
    return aid


def _stored(objects: ObjectStore, *parts: Any) -> bool:
    """Whether every object the given record parts name is in the store."""
    ids: list[str] = []
    for part in parts:
        if part is not None:
            ids.extend(references(part))
    return all(objects.storage.has_object(i) for i in ids)
