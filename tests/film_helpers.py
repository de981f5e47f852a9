"""Branches built fast through the store API (no backend): for the film's tests and benchmark."""

from __future__ import annotations

import numpy as np
from PIL import Image

from exquisite_store.geometry.rect import Rect
from exquisite_store.manifests import Recipe, Result, Step
from exquisite_store.store import Store
from exquisite_store.store.canvas import canvas_rect, edit_canvas


def _band(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth light and shade of one tint per band (coarse noise, blown up bilinearly).

    Like a photograph's, its colours are few and near each other, so every codec keeps
    it close (uniformly random colours would be the worst case of a 256-colour GIF).
    """
    light = rng.integers(0, 256, (h // 32 + 2, w // 32 + 2, 1)).astype(np.float64)
    tint = rng.uniform(0.5, 1.0, 3)
    coarse = np.clip(light * tint + rng.uniform(0, 40, 3), 0, 255).astype(np.uint8)
    big = Image.fromarray(coarse).resize((w + 64, h + 64), Image.Resampling.BILINEAR)
    return np.asarray(big)[32 : 32 + h, 32 : 32 + w].copy()


def grow_branch(
    store: Store,
    session: str,
    start: tuple[int, int],
    directions: list[str],
    band: int,
    *,
    seed: int = 0,
) -> list[str]:
    """A new session whose main branch grows by ``band`` pixels in each direction in turn.

    Returns the step ids, root first.
    """
    rng = np.random.default_rng(seed)
    _, root = store.create_session(session, _band(rng, *start))
    prompt = store.objects.put_text("film test")
    ids = [root]
    with store.writing():
        for k, direction in enumerate(directions, 1):
            parent = store.canvas(store.step(ids[-1]))
            p = canvas_rect(parent)
            patch = {
                "right": Rect(p.right, p.y, band, p.h),
                "left": Rect(p.x - band, p.y, band, p.h),
                "down": Rect(p.x, p.bottom, p.w, band),
                "up": Rect(p.x, p.y - band, p.w, band),
            }[direction]
            canvas = edit_canvas(
                store.objects, parent, p.union(patch), _band(rng, patch.h, patch.w), patch
            )
            recipe = Recipe(
                direction=direction,  # type: ignore[arg-type]
                extension_px=band,
                overlap_px=8,
                context_px=64,
                immutable_policy="outside-seam",
                seam="match",
                prompt_id=prompt,
                backend="patchmatch",
                model="",
                seed=k,
            )
            step = Step(
                session=session,
                parent=ids[-1],
                created_ms=store.clock_ms(),
                recipe=recipe,
                recipe_id=store.objects.put_text(f"film recipe {k}"),
                result=Result(
                    canvas_id=store.objects.put_json(canvas),
                    width=canvas.width,
                    height=canvas.height,
                ),
            )
            sid = store.objects.put_json(step)
            store.refs.update(session, "main", ids[-1], sid, f"film test step {k}")
            ids.append(sid)
    return ids
