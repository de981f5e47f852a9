"""The step transaction (DESIGN.md §4): one call, ``n`` candidates, each commits or not.

Phases: plan, prompt, request (``prepare``), generate, decode (``generate``), unframe,
seam, validate, commit (``candidate``); each hands the next a frozen record. Every
failure becomes an attempt record and a ``failed`` event; no head moves for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from exquisite_store.backends.base import Backend
from exquisite_store.backends.cache import CachedBackend
from exquisite_store.errors import (
    ArtifactWriteError,
    Cancelled,
    DecodeError,
    ExqError,
    StepFailure,
)
from exquisite_store.manifests import Response, StepParams
from exquisite_store.pipeline.attempts import record_failure
from exquisite_store.pipeline.candidate import build_candidate, commit_candidate
from exquisite_store.pipeline.cost import check_budget, spending
from exquisite_store.pipeline.generate import Generated, call_backend, decode_result
from exquisite_store.pipeline.job import Job, Observer, StepOutcome
from exquisite_store.pipeline.params import check_prompt, merge
from exquisite_store.pipeline.prepare import Prepared, prepare, store_request
from exquisite_store.pipeline.repair import build_repair_candidate, prepare_repair
from exquisite_store.pipeline.reservations import reserved
from exquisite_store.pipeline.targets import Target, resolve_target
from exquisite_store.store import Store

RETRY_DELAYS_S = (0.5, 2.0)


@dataclass(frozen=True)
class How:
    """How one call runs: committed or only built (reproduce), staged, cancellable."""

    commit: bool = True
    #: candidates wait in the staging area instead of moving the branch (and ``B~k``)
    stage: bool = False
    cancel: threading.Event | None = None
    delays: tuple[float, ...] = RETRY_DELAYS_S
    #: a seam repair of this band width (px) around the parent's seam, not a growth
    repair: int | None = None

    @property
    def cancelled(self) -> bool:
        """Whether someone asked the call to stop."""
        return self.cancel is not None and self.cancel.is_set()


def run_step(
    store: Store,
    session: str,
    *,
    parent: str | None = None,
    branch: str | None = None,
    prompt: str = "",
    backend_impl: Backend | None = None,
    job: str | None = None,
    cancel: threading.Event | None = None,
    retry_delays: tuple[float, ...] = RETRY_DELAYS_S,
    commit: bool = True,
    dry_run: bool = False,
    observer: Observer | None = None,
    stage: bool = False,
    fresh: bool = False,
    repair: int | None = None,
    **overrides: Any,
) -> StepOutcome:
    """Grow a session by one step; raises the first failure if no candidate committed.

    ``overrides`` are step parameters (strings or values) applied over the session's
    defaults. With ``commit=False`` (reproduce) the candidates' canvases are built and
    returned in ``canvas_ids`` but no step, attempt, event or ref is written. With
    ``dry_run`` nothing is called, written or locked: ``preview`` says what would be
    sent and its estimate. With ``stage`` the candidates wait in the staging area
    (``refs/<session>/staging/<branch>/<job>/<k>``) and no branch moves. A step with
    an explicit seed whose request this store has answered before is answered from the
    run cache (``backends/cache.py``) unless ``fresh``. With ``repair`` (a band width in
    pixels) the step repaints that band around the parent's seam instead of growing
    (``pipeline/repair.py``): the canvas keeps its size.
    """
    from exquisite_store.backends.registry import make_backend

    job = job or uuid.uuid4().hex[:12]
    run = Job(store, session, job, emit=commit and not dry_run, observer=observer)
    try:
        params = merge(store.session(session).defaults, overrides)
        check_prompt(prompt)
        target = resolve_target(store, session, parent, branch)
    except ExqError as exc:  # a job that cannot start still ends, with the reason
        if run.emit and store.refs.session_pointer(session) is not None:
            run.event("failed", kind=exc.kind, message=exc.message)
        raise
    out = StepOutcome(session=session, job=job)
    backend = None
    try:
        backend = backend_impl or make_backend(params.backend, store, session)
        cache = None
        if commit and not fresh and params.seed is not None and params.backend != "replay":
            backend = cache = CachedBackend(backend, store)
        if dry_run:
            prepared = _prepare(store, session, params, target, prompt, backend, run, repair)
            out.request_id = prepared.request.request_id
            out.preview = prepared.preview(*spending(store, session))
            out.preview["cached_response"] = cache.cached(out.request_id) if cache else None
            return out
        with _branch_held(store, run, target, commit):
            if commit:  # the head may have moved while we waited: grow it as it is now
                target = resolve_target(store, session, parent, branch)
            run.event(
                "started",
                parent=target.parent,
                branch=target.branch,
                params={k: v for k, v in overrides.items() if v is not None},
                **({"repair": repair} if repair else {}),
            )
            with store.writing():
                how = How(
                    commit=commit, stage=stage, cancel=cancel, delays=retry_delays, repair=repair
                )
                _transaction(store, run, out, backend, params, target, prompt, how)
    except StepFailure:
        raise  # commit=False (reproduce): the failure as it is
    except ExqError as exc:  # bad parameters for this canvas: no attempt, but say so
        run.event("failed", kind=exc.kind, message=exc.message)
        raise
    finally:
        if backend_impl is None and backend is not None and hasattr(backend, "close"):
            backend.close()  # e.g. the OpenAI client's keep-alive connections
    if out.step_ids or (not commit and out.canvas_ids):
        with contextlib.suppress(ArtifactWriteError):  # committed: a lost event is no failure
            run.event(
                "succeeded",
                step_ids=out.step_ids,
                branches=out.branches,
                staged=out.staged,
                attempt_ids=out.attempt_ids,
            )
        return out
    raise out.failures[0]


def _prepare(
    store: Store,
    session: str,
    params: StepParams,
    target: Target,
    prompt: str,
    backend: Backend,
    run: Job,
    repair: int | None,
) -> Prepared:
    """Plan a growth, or with ``repair`` (a band width) the repair of the parent's seam."""
    if repair:
        return prepare_repair(store, session, params, target, prompt, backend, run, repair)
    return prepare(store, session, params, target, prompt, backend, run)


@contextlib.contextmanager
def _branch_held(store: Store, run: Job, target: Target, commit: bool) -> Iterator[None]:
    """One job at a time grows a branch head: a second one waits here, before it pays."""
    if not commit:
        yield
        return
    ref = f"{run.session}/heads/{target.branch}"
    with store.storage.branch_lock(ref, wait=False) as free:
        if free:
            yield
            return
    run.phase("wait")  # another job is growing this branch: queue behind it
    with store.storage.branch_lock(ref, wait=True):
        run.done("wait")
        yield


@contextlib.contextmanager
def _budget_held(store: Store, run: Job, estimate: int, commit: bool) -> Iterator[None]:
    """The budget check; a real step also holds its estimate until its cost is recorded."""
    if commit:
        with reserved(store, run.session, run.job, estimate):
            yield
    else:
        check_budget(estimate, *spending(store, run.session))
        yield


def _transaction(
    store: Store,
    run: Job,
    out: StepOutcome,
    backend: Backend,
    params: StepParams,
    target: Target,
    prompt: str,
    how: How,
) -> None:
    """Prepare, hold the estimate, call, and build and commit each candidate."""
    with contextlib.ExitStack() as held:
        called = _prepare_and_call(store, run, out, backend, params, target, prompt, how, held)
        if called is not None:
            _candidates(store, run, out, *called, how)


def _prepare_and_call(
    store: Store,
    run: Job,
    out: StepOutcome,
    backend: Backend,
    params: StepParams,
    target: Target,
    prompt: str,
    how: How,
    held: contextlib.ExitStack,
) -> tuple[Prepared, Generated, list] | None:
    """Plan, store the request, hold the budget (in ``held``), call and decode.

    The frame and the mask live only here: what is returned is the prepared request
    without them, so a step on a 20,000-pixel-high canvas does not hold them through
    its candidates. None when the step failed (recorded).
    """
    prepared: Prepared | None = None
    generated: Generated | None = None
    try:
        prepared = _prepare(store, run.session, params, target, prompt, backend, run, how.repair)
        out.request_id = prepared.request.request_id
        store_request(store.objects, prepared)  # before any call
        held.enter_context(_budget_held(store, run, prepared.estimate_micro_usd, how.commit))
        if how.cancelled:
            raise Cancelled("cancelled before the backend was called; nothing was spent")
        result, calls = call_backend(backend, prepared, run, how.cancel, how.delays)
        out.calls += calls
        prepared = prepared.without_frame()  # sent: let the frame and mask go before decoding
        generated = decode_result(store, prepared, result, backend.name, run, log=how.commit)
        if generated.problem:
            raise DecodeError(
                f"{generated.problem}; the answer is kept and counted at the estimate",
                cost_micro_usd=generated.cost_micro_usd,
            )
        if not result.images:
            raise DecodeError("the backend returned no image")
        if how.cancelled:
            raise Cancelled("cancelled while the backend ran; what it returned is kept")
    except StepFailure as exc:
        response = generated.billed() if generated is not None else None
        _fail(store, run, out, target, exc, prepared, response, how.commit)
        return None
    # the outputs travel in a list that hands each one over once (see _take)
    return prepared, dataclasses.replace(generated, outputs=()), list(generated.outputs)


def _candidates(
    store: Store,
    run: Job,
    out: StepOutcome,
    prepared: Prepared,
    generated: Generated,
    outputs: list,
    how: How,
) -> None:
    """Build, check and commit each candidate; each output is let go once used.

    A cancel (someone accepted a staged candidate already, or pressed Cancel) turns
    the candidates not yet committed into Cancelled attempts, their answers kept.
    """
    for i in range(len(outputs)):
        run.candidate = (i + 1, len(outputs))
        try:
            if how.cancelled and how.commit:
                _take(outputs, i)
                raise Cancelled("cancelled before this candidate was committed; its answer is kept")
            # handed over, not kept here: the output is let go as soon as it is unframed
            build = build_repair_candidate if how.repair else build_candidate
            candidate = build(store.objects, prepared, _take(outputs, i), run)
            if not how.commit:
                out.canvas_ids.append(candidate.canvas_id)
                continue
            name, step_id = commit_candidate(
                store,
                prepared,
                candidate,
                generated.candidate(i),
                run,
                out.branches,
                stage=how.stage,
            )
            out.canvas_ids.append(candidate.canvas_id)
            out.step_ids.append(step_id)
            (out.staged if how.stage else out.branches)[name] = step_id
        except ExqError as exc:
            if not isinstance(exc, StepFailure):
                if not out.step_ids or not how.commit:
                    raise  # nothing committed: the job fails with the store's error
                # a candidate committed already: this one is an attempt, the job succeeds
                exc = ArtifactWriteError(f"store error: {exc.message}", cause=exc.kind)
            response = generated.candidate(i)
            _fail(store, run, out, prepared.target, exc, prepared, response, how.commit)


def _take(items: list, i: int):
    """``items[i]``, leaving None in its place (so no one else holds it)."""
    item, items[i] = items[i], None
    return item


def _fail(
    store: Store,
    run: Job,
    out: StepOutcome,
    target: Target,
    exc: StepFailure,
    prepared: Prepared | None,
    response: Response | None,
    commit: bool,
) -> None:
    """A failure of the step or of one candidate: raised as it is by reproduce, else kept."""
    if not commit:
        raise exc
    out.failures.append(exc)
    # still under the writer lock: gc must not sweep the request's objects first
    _record(store, run, out, target, exc, prepared, response)


def _record(
    store: Store,
    run: Job,
    out: StepOutcome,
    target: Target,
    exc: StepFailure,
    prepared: Prepared | None,
    response: Response | None,
) -> None:
    aid = record_failure(
        store,
        run,
        target,
        exc,
        plan=prepared.plan if prepared else None,
        recipe=prepared.recipe if prepared else None,
        recipe_id=prepared.recipe_id if prepared else "",
        request=prepared.request if prepared else None,
        response=response,
    )
    if aid:
        out.attempt_ids.append(aid)
