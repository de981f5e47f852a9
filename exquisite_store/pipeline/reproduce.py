"""Re-run a committed step's recipe and say whether the canvas comes out the same."""

from __future__ import annotations

from dataclasses import dataclass

from exquisite_store.backends.base import Backend
from exquisite_store.backends.replay import ReplayBackend
from exquisite_store.errors import UserError
from exquisite_store.manifests import Canvas
from exquisite_store.pipeline.params import recipe_params
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store
from exquisite_store.store.canvas import same_pixels
from exquisite_store.store.overlay import overlay


@dataclass(frozen=True)
class Reproduction:
    """The step's canvas id, the re-run's, and whether they hold the same pixels.

    A step recorded by an older store has a flat canvas; its re-run makes a canvas
    tree: another id, the same picture (``same_pixels``), and that is a match.
    """

    step_id: str
    expected: str
    got: str
    matches: bool


def reproduce(
    store: Store, step_id: str, *, replay: bool = False, backend: Backend | None = None
) -> Reproduction:
    """Re-run ``step_id`` from its parent with its recipe; nothing is written.

    The re-run works on an overlay of the store: the objects it makes stay in memory,
    no lock is taken, and a read-only store reproduces as well as any.
    """
    store = overlay(store)
    step = store.step(step_id)
    if step.recipe is None or step.parent is None or step.response is None:
        raise UserError(f"step {step_id[:12]} is a root (an import); there is nothing to re-run")
    r = step.recipe
    if replay:
        recorded = {step.request.request_id: step.response.response_id} if step.request else {}

        def lookup(rid: str) -> str | None:
            return recorded.get(rid) or store.find_response(step.session, rid)

        # the frame must be the one the recording was made with, or the request id differs
        backend = ReplayBackend(store.objects, lookup)
    params = recipe_params(r)
    if backend is not None:
        params["backend"] = None  # a given backend names itself
    out = run_step(
        store,
        step.session,
        parent=step.parent,
        branch=None,
        prompt=store.objects.get_text(r.prompt_id),
        backend_impl=backend,
        commit=False,
        repair=r.repair.width_px if r.repair else None,
        **params,
    )
    got = (
        out.canvas_ids[step.response.candidate]
        if len(out.canvas_ids) > step.response.candidate
        else ""
    )
    expected = step.result.canvas_id
    same = bool(got) and (
        got == expected
        or same_pixels(
            store.objects,
            store.objects.get_manifest(expected, Canvas),
            store.objects.get_manifest(got, Canvas),
        )
    )
    return Reproduction(step_id=step_id, expected=expected, got=got, matches=same)
