"""The step transaction (DESIGN.md §4): one call, ``n`` candidates, each commits or not.

Phases: plan, prompt, request, generate, decode, unframe, seam, validate, commit.
Every failure becomes an attempt record and a ``failed`` event; no head moves.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
import uuid
from typing import Any

import numpy as np

from exquisite_store.backends.base import Backend, BackendRequest, BackendResult
from exquisite_store.errors import (
    ArtifactWriteError,
    BranchMoved,
    DecodeError,
    DimensionMismatch,
    ExqError,
    ImmutableViolation,
    LockHeld,
    StepFailure,
    TransientBackendError,
)
from exquisite_store.geometry import orient
from exquisite_store.geometry.plan import StepPlan, build_frame, plan_step, unframe
from exquisite_store.geometry.seams import apply_seam
from exquisite_store.ids import hash_object
from exquisite_store.manifests import (
    BackendResponse,
    Recipe,
    Request,
    Response,
    Result,
    Step,
    hash_input,
)
from exquisite_store.pipeline import config
from exquisite_store.pipeline.attempts import record_failure
from exquisite_store.pipeline.cost import check_budget, spending
from exquisite_store.pipeline.framing import oriented_policy
from exquisite_store.pipeline.job import Job, Observer, StepOutcome
from exquisite_store.pipeline.outputs import decode_output, params_from
from exquisite_store.pipeline.targets import Target, free_name, resolve_target
from exquisite_store.pipeline.validate import step_scores, validate
from exquisite_store.prompt import build_prompt
from exquisite_store.store import Store, compose, edit_canvas
from exquisite_store.store.canvas import canvas_rect
from exquisite_store.store.objects import image_id

RETRY_DELAYS_S = (0.5, 2.0)


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
    **overrides: Any,
) -> StepOutcome:
    """Grow a session by one step; raises the first failure if no candidate committed.

    With ``commit=False`` (reproduce) the candidates' canvases are built and returned
    in ``canvas_ids`` but no step, attempt, event or ref is written. With ``dry_run``
    nothing is called or written: ``preview`` says what would be sent and its estimate.
    """
    from exquisite_store.backends.registry import make_backend

    job = job or uuid.uuid4().hex[:12]
    run = Job(store, session, job, emit=commit and not dry_run, observer=observer)
    try:
        sess = store.session(session)
        params = config.merge(sess.defaults, overrides)
        config.check_prompt(prompt)
        target = resolve_target(store, session, parent, branch)
    except ExqError as exc:  # a job that cannot start still ends, with the reason
        if store.refs.session_pointer(session) is not None:
            run.event("failed", kind=exc.kind, message=exc.message)
        raise
    run.event(
        "started",
        parent=target.parent,
        branch=target.branch,
        params={k: v for k, v in overrides.items() if v is not None},
    )
    out = StepOutcome(session=session, job=job)
    ctx = _Context(store, session, params, target, run, out, prompt, commit)
    backend = None
    try:
        with store.writing():
            try:
                backend = backend_impl or make_backend(params.backend, store, session)
                ctx.commit_objects = not dry_run
                ctx.prepare(backend)
                if dry_run:
                    return out
                result = ctx.generate(backend, cancel, retry_delays)
                ctx.candidates(result)
            except StepFailure as exc:
                if not commit:
                    raise
                out.failures.append(exc)
                # still under the writer lock: gc must not sweep the request's objects
                # before the attempt names them
                exc.details["attempt_id"] = record_failure(ctx, exc)
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
                attempt_ids=out.attempt_ids,
            )
        return out
    raise out.failures[0]


class _Context:
    """State of one transaction as its phases fill it in."""

    def __init__(
        self, store, session, params, target: Target, run: Job, out, prompt, commit: bool = True
    ) -> None:
        self.store, self.session, self.params, self.target = store, session, params, target
        self.run, self.out, self.user_prompt, self.commit = run, out, prompt, commit
        self.objects = store.objects
        self.plan: StepPlan | None = None
        self.recipe: Recipe | None = None
        self.recipe_id = ""
        self.request: Request | None = None
        self.response_id = ""
        self.result: BackendResult | None = None
        self.output_ids: list[str] = []

    # --- plan, prompt, request ------------------------------------------------------

    def prepare(self, backend: Backend) -> None:
        p, store = self.params, self.store
        self.run.phase("plan")
        self.model = backend.resolve_model(p.model)
        self.seed = p.seed if p.seed is not None else secrets.randbelow(2**31)
        self.parent_step = store.step(self.target.parent)
        self.parent_canvas_id = self.parent_step.result.canvas_id
        self.parent_canvas = store.canvas(self.parent_step)
        prect = canvas_rect(self.parent_canvas)
        config.check_against_canvas(p, prect.w, prect.h)
        policy = oriented_policy(backend.frame_policy(self.model), p.direction)
        context_px = p.context_px
        if context_px is None and policy.kind == "fixed":
            # a fixed frame is paid for whole: fill it with context rather than padding
            context_px = prect.w if p.direction in ("right", "left") else prect.h
        self.plan = plan = plan_step(
            prect,
            p.direction,
            p.extension_px,
            p.overlap_px,
            context_px,
            policy,
            p.immutable_policy,
        )
        context = compose(self.objects, self.parent_canvas, plan.context_rect)
        self.context_canon = orient.to_canonical(context, p.direction)
        self.context_rgb = np.ascontiguousarray(self.context_canon[:, :, :3])
        self.run.done("plan")
        self.run.phase("prompt")
        frame_c, mask_c = build_frame(self.context_rgb, plan)
        self.frame = orient.from_canonical(frame_c, p.direction)
        self.mask = orient.from_canonical(mask_c, p.direction)
        self.final_prompt = build_prompt(
            self.user_prompt,
            direction=p.direction,
            extension_px=plan.extension_px,
            context_px=plan.context_px,
            band_px=plan.band_px,
            frame_width=self.frame.shape[1],
            frame_height=self.frame.shape[0],
        )
        self.run.done("prompt")
        self.run.phase("request")
        # ids first (pure), objects stored only when the step really runs
        prompt_id = hash_object("text", self.user_prompt.encode())
        final_id = hash_object("text", self.final_prompt.encode())
        context_id, frame_id, mask_id = (image_id(a) for a in (context, self.frame, self.mask))
        self._to_store = (context, self.frame, self.mask)
        self.recipe = Recipe(
            direction=p.direction,
            extension_px=plan.extension_px,
            overlap_px=plan.overlap_px,
            context_px=plan.context_px,
            immutable_policy=p.immutable_policy,
            seam=p.seam,
            prompt_id=prompt_id,
            backend=backend.name,
            model=self.model,
            quality=p.quality,
            seed=self.seed,
            n=p.n,
        )
        self.recipe_id = hash_object(
            "json", hash_input("recipe", self.recipe, self.parent_canvas_id)
        )
        request_id = hash_object(
            "json",
            hash_input(
                "request",  # named by what is sent, not by who answers (so replay can)
                self.model,
                frame_id,
                mask_id,
                final_id,
                p.n,
                self.seed,
                p.quality,
                {},
            ),
        )
        self.out.request_id = request_id
        self.request = Request(
            request_id=request_id,
            context_id=context_id,
            frame_id=frame_id,
            mask_id=mask_id,
            final_prompt_id=final_id,
            frame_width=self.frame.shape[1],
            frame_height=self.frame.shape[0],
            scale_num=plan.frame.scale_num,
            scale_den=plan.frame.scale_den,
        )
        self.backend_request = BackendRequest(
            image=self.frame,
            mask=self.mask,
            prompt=self.final_prompt,
            n=p.n,
            seed=self.seed,
            model=self.model,
            request_id=request_id,
            quality=p.quality,
        )
        estimate = backend.estimate_cost(self.backend_request)
        spent, budget = spending(self.store, self.session)
        self.out.preview = {
            "backend": backend.name,
            "model": self.model,
            "frame": f"{self.frame.shape[1]}x{self.frame.shape[0]}",
            "scale": f"{plan.frame.scale_num}/{plan.frame.scale_den}",
            "context_px": plan.context_px,
            "mask_paint_permille": int(
                np.count_nonzero(self.mask[:, :, 3] == 0) * 1000 // self.mask[:, :, 3].size
            ),
            "n": p.n,
            "seed": self.seed,
            "estimate_micro_usd": estimate,
            "spent_micro_usd": spent,
            "budget_micro_usd": budget,
            "prompt": self.final_prompt,
            "ignores_prompt": backend.ignores_prompt,
            "request_id": request_id,
        }
        if self.commit_objects:
            self.objects.put_text(self.user_prompt)
            self.objects.put_text(self.final_prompt)
            for arr in self._to_store:
                self.objects.put_image(arr)
            check_budget(estimate, spent, budget)  # after the request is stored, before a call
        self.run.done("request")

    # --- generate ---------------------------------------------------------------------

    def generate(self, backend: Backend, cancel, delays) -> BackendResult:
        self.run.phase("generate")
        tries = 0
        while True:
            try:
                result = backend.generate(self.backend_request, cancel)
                break
            except TransientBackendError:
                self.out.calls += 1
                if backend.retries_inside or tries >= len(delays) or (cancel and cancel.is_set()):
                    raise
                time.sleep(delays[tries])
                tries += 1
        self.out.calls += result.calls
        self.result = result
        self.run.done("generate")
        self.run.phase("decode")
        self.decoded: list[np.ndarray | StepFailure] = []
        for data in result.images:
            try:
                raw, refused = decode_output(data)
                self.output_ids.append(self.objects.put_image(raw))  # kept as returned
                self.decoded.append(refused or np.ascontiguousarray(raw[:, :, :3]))
            except StepFailure as exc:
                self.output_ids.append("")
                self.decoded.append(exc)
        record = BackendResponse(
            request_id=self.request.request_id,
            backend=backend.name,
            model=result.model or self.model,
            output_ids=tuple(self.output_ids),
            usage=result.usage,
            cost_micro_usd=result.cost_micro_usd,
            provider_request_id=result.provider_request_id,
            metadata=dict(result.metadata),
        )
        self.response_id = self.objects.put_json(record)
        if self.commit:
            self.store.record_response(self.session, self.request.request_id, self.response_id)
        if not result.images:
            raise DecodeError("the backend returned no image")
        self.run.done("decode")
        return result

    # --- candidates -----------------------------------------------------------------------

    def candidates(self, result: BackendResult) -> None:
        n = len(self.decoded)
        share = [
            result.cost_micro_usd // n + (result.cost_micro_usd % n if i == 0 else 0)
            for i in range(n)
        ]
        for i, arr in enumerate(self.decoded):
            response = Response(
                response_id=self.response_id,
                output_id=self.output_ids[i],
                candidate=i,
                metadata_id="",
                usage=result.usage if i == 0 else type(result.usage)(),
                cost_micro_usd=share[i],
                provider_request_id=result.provider_request_id,
            )
            try:
                if isinstance(arr, StepFailure):
                    raise arr
                self._candidate(arr, response)
            except StepFailure as exc:
                if not self.commit:
                    raise
                self.out.failures.append(exc)
                exc.details["attempt_id"] = record_failure(self, exc, response=response)

    def _candidate(self, output: np.ndarray, response: Response) -> None:
        p, plan, store = self.params, self.plan, self.store
        self.run.phase("unframe")
        out_canon = orient.to_canonical(output, p.direction)
        model_ctx, gen = unframe(out_canon, plan, channels=3)
        self.run.done("unframe")
        self.run.phase("seam")
        seam = apply_seam(
            p.seam, self.context_rgb, model_ctx, gen, plan.overlap_px, p.immutable_policy
        )
        zone, new = seam.seam_zone, seam.gen
        if self.context_canon.shape[2] == 4:  # RGBA canvas: old alpha kept, new band opaque
            k = zone.shape[1]
            zone = np.dstack([zone, self.context_canon[:, self.context_canon.shape[1] - k :, 3]])
            new = np.dstack([new, np.full(new.shape[:2], 255, np.uint8)])
        patch = orient.from_canonical(np.concatenate([zone, new], axis=1), p.direction)
        child = edit_canvas(
            self.objects, self.parent_canvas, plan.new_rect, patch, plan.changed_rect
        )
        self.run.done("seam")
        self.run.phase("validate")
        scores = step_scores(
            self.objects,
            child,
            plan,
            self.context_rgb,
            model_ctx,
            seam.gain_milli,
            seam.offset_milli,
        )
        report = validate(self.objects, self.parent_canvas, child, plan, scores)
        validation_id = self.objects.put_json(report)
        if not report.ok:
            bad = next(c for c in report.checks if not c.ok)
            cls = ImmutableViolation if bad.name == "immutable" else DimensionMismatch
            raise cls(f"validation failed: {bad.detail}", validation_id=validation_id)
        self.run.done("validate")
        self.run.phase("commit")
        canvas_id = self.objects.put_json(child)
        if not self.commit:
            self.out.canvas_ids.append(canvas_id)
            return
        step = Step(
            session=self.session,
            parent=self.target.parent,
            created_ms=store.clock_ms(),
            recipe=self.recipe,
            recipe_id=self.recipe_id,
            request=self.request,
            response=response,
            result=Result(
                canvas_id=canvas_id,
                width=child.width,
                height=child.height,
                validation_id=validation_id,
                scores=scores,
            ),
            timing=self.run.timing(),
        )
        step_id = self.objects.put_json(step)
        self.out.canvas_ids.append(canvas_id)
        self._move_branch(step_id, response)
        self.run.done("commit")

    def _move_branch(self, step_id: str, response: Response) -> None:
        branches = self.store.refs.branches(self.session)
        first = not self.out.step_ids
        if first:
            name, old = self.target.branch, self.target.expected
        else:
            name, old = (
                free_name(branches, f"{self.target.branch}~", len(self.out.step_ids) + 1),
                None,
            )
        try:
            self.store.refs.update(
                self.session,
                name,
                old,
                step_id,
                f"step: {self.params.direction} +{self.plan.extension_px}px (job {self.run.job})",
            )
        except BranchMoved as exc:
            exc.details["step_id"] = step_id
            raise
        except LockHeld as exc:  # a stale lock: the step is whole; keep it as an attempt
            raise ArtifactWriteError(
                exc.message, step_id=step_id, lock=exc.path, pid=exc.pid, age_s=exc.age_s
            ) from exc
        self.out.step_ids.append(step_id)
        self.out.branches[name] = step_id


__all__ = ["StepOutcome", "params_from", "run_step"]  # params_from: for reproduce
