"""Plan one step (bands, seam zone, frame) and move pixels into and out of the frame.

All rectangles of a ``StepPlan`` are on the canvas plane. The frame, its mask and the
arrays passed to ``build_frame`` / ``unframe`` are in canonical orientation (see
``orient``): ``band_px`` rows, context on the left, generation band on the right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from exquisite_store.errors import ConfigError, DecodeError, DimensionMismatch
from exquisite_store.geometry.frames import FramePlan, FramePolicy, fit_frame
from exquisite_store.geometry.orient import check_direction
from exquisite_store.geometry.rect import Rect
from exquisite_store.params import IMMUTABLE_POLICIES, MAX_EXTENSION_PX

__all__ = [
    "IMMUTABLE_POLICIES",
    "MAX_EXTENSION_PX",
    "FramePlan",
    "StepPlan",
    "build_frame",
    "plan_step",
    "to_channels",
    "unframe",
]

# The context a step shows by default: enough to read the texture, at least the seam
# zone twice over (so ``match`` has pixels beyond the blend to fit on), at most the canvas.
DEFAULT_MIN_CONTEXT_PX = 64


@dataclass(frozen=True)
class StepPlan:
    """Everything geometric about one step; all rectangles on the plane."""

    direction: str
    extension_px: int
    overlap_px: int
    context_px: int
    band_px: int
    parent_rect: Rect
    new_rect: Rect
    context_rect: Rect
    seam_rect: Rect
    gen_rect: Rect
    changed_rect: Rect
    immutable_policy: str
    frame: FramePlan

    @property
    def seam_zone_px(self) -> int:
        """Columns of the parent (canonical) a seam strategy may rewrite: 0 under all-old."""
        return self.overlap_px if self.immutable_policy == "outside-seam" else 0


def plan_step(
    parent_rect: Rect,
    direction: str,
    extension_px: int,
    overlap_px: int,
    context_px: int | None,
    policy: FramePolicy,
    immutable_policy: str = "outside-seam",
) -> StepPlan:
    """Plan growing ``parent_rect`` by ``extension_px`` pixels on its ``direction`` side."""
    check_direction(direction)
    if immutable_policy not in IMMUTABLE_POLICIES:
        raise ConfigError(
            f"unknown immutable policy {immutable_policy!r}; expected one of "
            f"{', '.join(IMMUTABLE_POLICIES)}",
            field="immutable_policy",
        )
    if not isinstance(policy, FramePolicy):
        raise ConfigError("policy must be a FramePolicy", field="policy")
    parent = Rect(*(_int(v, "parent_rect") for v in parent_rect))
    if parent.empty:
        raise ConfigError(f"parent rectangle {tuple(parent)} is empty", field="parent_rect")
    length = _int(extension_px, "extension_px", 1, MAX_EXTENSION_PX)
    horizontal = direction in ("right", "left")
    extent, band = (parent.w, parent.h) if horizontal else (parent.h, parent.w)
    overlap = _int(overlap_px, "overlap_px", 0, extent - 1)
    if context_px is None:
        context = min(extent, max(length, 2 * overlap, DEFAULT_MIN_CONTEXT_PX))
    else:
        context = min(extent, _int(context_px, "context_px", 1))
    if overlap > context:
        raise ConfigError(
            f"overlap_px {overlap} is wider than the context ({context} px)", field="overlap_px"
        )
    if immutable_policy == "all-old" and overlap > length:
        raise ConfigError(
            f"overlap_px {overlap} is wider than the new band ({length} px) under all-old",
            field="overlap_px",
        )
    frame, context = fit_frame(band, length, context, max(overlap, 1), policy)
    zone = overlap if immutable_policy == "outside-seam" else 0
    new, gen, ctx, seam = _rects(parent, direction, length, context, zone)
    return StepPlan(
        direction=direction,
        extension_px=length,
        overlap_px=overlap,
        context_px=context,
        band_px=band,
        parent_rect=parent,
        new_rect=new,
        context_rect=ctx,
        seam_rect=seam,
        gen_rect=gen,
        changed_rect=seam.union(gen),
        immutable_policy=immutable_policy,
        frame=frame,
    )


def _rects(parent: Rect, direction: str, length: int, context: int, zone: int) -> tuple[Rect, ...]:
    """``(new, gen, context, seam)`` rectangles; an empty seam still sits at the seam."""
    x, y, w, h = parent
    if direction == "right":
        return (
            Rect(x, y, w + length, h),
            Rect(x + w, y, length, h),
            Rect(x + w - context, y, context, h),
            Rect(x + w - zone, y, zone, h),
        )
    if direction == "left":
        return (
            Rect(x - length, y, w + length, h),
            Rect(x - length, y, length, h),
            Rect(x, y, context, h),
            Rect(x, y, zone, h),
        )
    if direction == "up":
        return (
            Rect(x, y - length, w, h + length),
            Rect(x, y - length, w, length),
            Rect(x, y, w, context),
            Rect(x, y, w, zone),
        )
    return (
        Rect(x, y, w, h + length),
        Rect(x, y + h, w, length),
        Rect(x, y + h - context, w, context),
        Rect(x, y + h - zone, w, zone),
    )


def _int(value: object, field: str, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int within ``[lo, hi]``, else ConfigError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{field} must be an integer, got {value!r}", field=field)
    n = int(value)
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        bounds = f"[{'' if lo is None else lo}, {'' if hi is None else hi}]"
        raise ConfigError(f"{field} {n} is out of range {bounds}", field=field)
    return n


def build_frame(context_canon: np.ndarray, plan: StepPlan) -> tuple[np.ndarray, np.ndarray]:
    """The frame (context in place, the rest edge-replicated) and its mask (alpha 0 = paint)."""
    f = plan.frame
    _check_image(context_canon, (plan.band_px, plan.context_px), "context band")
    ctx = _resize(context_canon, f.content.h, f.context_w) if f.scaled else context_canon
    # Replicating the edge gives the generation area and the padding plausible colours:
    # a content-aware fill starts from them and a model is not steered by a flat colour.
    # The frame is filled in place (no intermediate copies of a large band): the
    # content, then the padding as the nearest content pixel, as np.pad's "edge" mode.
    c = f.content
    frame = np.empty((f.height, f.width, ctx.shape[2]), dtype=np.uint8)
    inner = frame[c.y : c.bottom, c.x : c.right]
    inner[:, : f.context_w] = ctx
    inner[:, f.context_w :] = ctx[:, -1:]
    frame[c.y : c.bottom, : c.x] = inner[:, :1]
    frame[c.y : c.bottom, c.right :] = inner[:, -1:]
    frame[: c.y] = frame[c.y : c.y + 1]
    frame[c.bottom :] = frame[c.bottom - 1 : c.bottom]
    mask = np.full((f.height, f.width, 4), 255, dtype=np.uint8)
    rows, cols = f.gen_rect.slices(Rect(0, 0, f.width, f.height))
    mask[rows, cols, 3] = 0
    return frame, mask


def unframe(
    output: np.ndarray, plan: StepPlan, *, channels: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a backend output frame back to ``(model context H x C, generation H x L)``."""
    f = plan.frame
    if output.ndim not in (2, 3) or output.shape[:2] != (f.height, f.width):
        raise DimensionMismatch(
            f"backend output is {output.shape[1::-1]} (w, h), expected ({f.width}, {f.height})",
            expected=(f.width, f.height),
            got=tuple(output.shape[1::-1]),
        )
    out = to_channels(output, channels)
    rows, cols = f.content.slices(Rect(0, 0, f.width, f.height))
    content = out[rows, cols]
    ctx, gen = content[:, : f.context_w], content[:, f.context_w :]
    if f.scaled:
        # Each part is resized on its own so the seam column maps exactly onto the seam.
        ctx = _resize(ctx, plan.band_px, plan.context_px)
        gen = _resize(gen, plan.band_px, plan.extension_px)
    return np.ascontiguousarray(ctx), np.ascontiguousarray(gen)


def to_channels(arr: np.ndarray, channels: int = 3) -> np.ndarray:
    """Convert a uint8 L/LA/RGB/RGBA array to 3 (drop alpha) or 4 (alpha 255 if none) channels."""
    if channels not in (3, 4):
        raise ConfigError(f"channels must be 3 or 4, got {channels}", field="channels")
    if arr.dtype != np.uint8:
        raise DecodeError(f"image array must be uint8, got {arr.dtype}", dtype=str(arr.dtype))
    a = arr[:, :, None] if arr.ndim == 2 else arr
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise DecodeError(f"unsupported image array shape {arr.shape}", shape=arr.shape)
    colour = np.repeat(a[:, :, :1], 3, axis=2) if a.shape[2] <= 2 else a[:, :, :3]
    if channels == 3:
        return np.ascontiguousarray(colour)
    if a.shape[2] in (2, 4):
        alpha = a[:, :, -1:]
    else:
        alpha = np.full(a.shape[:2] + (1,), 255, dtype=np.uint8)
    return np.concatenate([colour, alpha], axis=2)


def _check_image(arr: np.ndarray, shape: tuple[int, int], what: str) -> None:
    """Raise DimensionMismatch unless ``arr`` is a uint8 ``shape + (3 | 4,)`` array."""
    if arr.ndim != 3 or arr.shape[:2] != shape or arr.shape[2] not in (3, 4):
        raise DimensionMismatch(
            f"{what} is {arr.shape}, expected {shape} x 3|4 channels",
            expected=shape,
            got=arr.shape,
        )
    if arr.dtype != np.uint8:
        raise DecodeError(f"{what} must be uint8, got {arr.dtype}", dtype=str(arr.dtype))


def _resize(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Lanczos-resample ``arr`` to ``height x width``, every channel alike."""
    if arr.shape[:2] == (height, width):
        return arr.copy()
    # Channel by channel as 8-bit gray: Pillow resizes RGBA premultiplied, which would
    # treat alpha (and the colour under it) differently from the other channels.
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(arr[:, :, i])).resize(
                (width, height), Image.Resampling.LANCZOS
            )
        )
        for i in range(arr.shape[2])
    ]
    return np.stack(planes, axis=2)
