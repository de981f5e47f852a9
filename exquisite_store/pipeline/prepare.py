"""Phases plan, prompt and request: everything known before the backend is called.

``prepare`` only reads the store; ``store_request`` writes what will be sent, so a
dry run (an estimate) writes nothing and never waits for a lock.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass
from typing import Any

import numpy as np

from exquisite_store.backends.base import Backend, BackendRequest
from exquisite_store.geometry import orient
from exquisite_store.geometry.plan import StepPlan, build_frame, plan_step
from exquisite_store.ids import ObjectId, hash_object
from exquisite_store.manifests import Canvas, Recipe, Request, StepParams, hash_input
from exquisite_store.pipeline.framing import oriented_policy
from exquisite_store.pipeline.job import Job
from exquisite_store.pipeline.params import check_against_canvas, extra_params
from exquisite_store.pipeline.targets import Target
from exquisite_store.prompt import build_prompt
from exquisite_store.store import Store, compose
from exquisite_store.store.canvas import canvas_rect
from exquisite_store.store.objects import ObjectStore, image_id


@dataclass(frozen=True)
class Prepared:
    """A planned request: the geometry, what is sent, and the records that name it."""

    session: str
    target: Target
    params: StepParams
    user_prompt: str
    final_prompt: str
    parent_canvas_id: str
    parent_canvas: Canvas
    plan: StepPlan
    #: the context band as on the plane (all channels), canonical, and canonical RGB
    context: np.ndarray
    context_canon: np.ndarray
    context_rgb: np.ndarray
    recipe: Recipe
    recipe_id: str
    request: Request
    backend_request: BackendRequest
    estimate_micro_usd: int
    ignores_prompt: bool

    def without_frame(self) -> Prepared:
        """This record without the frame and the mask (stored, sent, no longer needed).

        A large step must not hold them through its candidates.
        """
        empty = np.zeros((0, 0, 4), np.uint8)
        light = dataclasses.replace(self.backend_request, image=empty[:, :, :3], mask=empty)
        return dataclasses.replace(self, backend_request=light)

    def preview(self, spent: int, budget: int | None) -> dict[str, Any]:
        """What ``--dry-run`` and the estimate endpoint show."""
        req = self.backend_request
        alpha = req.mask[:, :, 3]
        return {
            "backend": self.recipe.backend,
            "model": self.recipe.model,
            "frame": f"{req.width}x{req.height}",
            "scale": f"{self.plan.frame.scale_num}/{self.plan.frame.scale_den}",
            "context_px": self.plan.context_px,
            "mask_paint_permille": int(np.count_nonzero(alpha == 0) * 1000 // alpha.size),
            "n": req.n,
            "seed": req.seed,
            "estimate_micro_usd": self.estimate_micro_usd,
            "spent_micro_usd": spent,
            "budget_micro_usd": budget,
            "prompt": self.final_prompt,
            "ignores_prompt": self.ignores_prompt,
            "request_id": self.request.request_id,
        }


def prepare(
    store: Store,
    session: str,
    params: StepParams,
    target: Target,
    user_prompt: str,
    backend: Backend,
    run: Job,
) -> Prepared:
    """Plan the step, build the frame, mask and prompt, and name the request (reads only)."""
    run.phase("plan")
    model = backend.resolve_model(params.model)
    seed = params.seed if params.seed is not None else secrets.randbelow(2**31)
    parent_canvas_id = store.step(target.parent).result.canvas_id
    parent_canvas = store.objects.get_manifest(parent_canvas_id, Canvas)
    prect = canvas_rect(parent_canvas)
    check_against_canvas(params, prect.w, prect.h)
    direction = params.direction
    policy = oriented_policy(backend.frame_policy(model), direction)
    context_px = params.context_px
    if context_px is None and policy.kind == "fixed":
        # a fixed frame is paid for whole: fill it with context rather than padding
        context_px = prect.w if direction in ("right", "left") else prect.h
    plan = plan_step(
        prect,
        direction,
        params.extension_px,
        params.overlap_px,
        context_px,
        policy,
        params.immutable_policy,
    )
    context = compose(store.objects, parent_canvas, plan.context_rect)
    context_canon = orient.to_canonical(context, direction)
    context_rgb = np.ascontiguousarray(context_canon[:, :, :3])
    run.done("plan")

    run.phase("prompt")
    frame_c, mask_c = build_frame(context_rgb, plan)
    frame = orient.from_canonical(frame_c, direction)
    mask = orient.from_canonical(mask_c, direction)
    final_prompt = build_prompt(
        user_prompt,
        direction=direction,
        extension_px=plan.extension_px,
        context_px=plan.context_px,
        band_px=plan.band_px,
        frame_width=frame.shape[1],
        frame_height=frame.shape[0],
    )
    run.done("prompt")

    run.phase("request")
    extra = extra_params(params)
    recipe = Recipe(
        direction=direction,
        extension_px=plan.extension_px,
        overlap_px=plan.overlap_px,
        context_px=plan.context_px,
        immutable_policy=params.immutable_policy,
        seam=params.seam,
        prompt_id=hash_object("text", user_prompt.encode()),
        backend=backend.name,
        model=model,
        quality=params.quality,
        seed=seed,
        n=params.n,
        params=extra,
    )
    final_id = hash_object("text", final_prompt.encode())
    frame_id, mask_id = image_id(frame), image_id(mask)
    # named by what is sent, not by who answers (so replay can answer any recording)
    request_id = request_id_of(model, frame_id, mask_id, final_id, params.n, seed, recipe)
    backend_request = BackendRequest(
        image=frame,
        mask=mask,
        prompt=final_prompt,
        n=params.n,
        seed=seed,
        model=model,
        request_id=request_id,
        quality=params.quality,
        params=extra,
    )
    prepared = Prepared(
        session=session,
        target=target,
        params=params,
        user_prompt=user_prompt,
        final_prompt=final_prompt,
        parent_canvas_id=parent_canvas_id,
        parent_canvas=parent_canvas,
        plan=plan,
        context=context,
        context_canon=context_canon,
        context_rgb=context_rgb,
        recipe=recipe,
        recipe_id=hash_object("json", hash_input("recipe", recipe, parent_canvas_id)),
        request=Request(
            request_id=request_id,
            context_id=image_id(context),
            frame_id=frame_id,
            mask_id=mask_id,
            final_prompt_id=final_id,
            frame_width=frame.shape[1],
            frame_height=frame.shape[0],
            scale_num=plan.frame.scale_num,
            scale_den=plan.frame.scale_den,
        ),
        backend_request=backend_request,
        estimate_micro_usd=backend.estimate_cost(backend_request),
        ignores_prompt=backend.ignores_prompt,
    )
    run.done("request")
    return prepared


def request_id_of(
    model: str, frame_id: str, mask_id: str, final_id: str, n: int, seed: int, recipe: Recipe
) -> ObjectId:
    """The id of a request: what is sent (frame, mask, prompt, model, n, seed, options)."""
    return hash_object(
        "json",
        hash_input(
            "request", model, frame_id, mask_id, final_id, n, seed, recipe.quality, recipe.params
        ),
    )


def store_request(objects: ObjectStore, prepared: Prepared) -> None:
    """Store the prompts, the context, the frame and the mask (before any call)."""
    objects.put_text(prepared.user_prompt)
    objects.put_text(prepared.final_prompt)
    req = prepared.backend_request
    objects.put_images([prepared.context, req.image, req.mask])
