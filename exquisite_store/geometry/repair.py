"""Plan a seam repair: a band centred on an existing seam, regenerated, the rest immutable.

Everything is measured from the seam in the canonical orientation of the step that
made it (``orient``: that step's direction becomes "right"): negative offsets lie on
the old side, positive ones in the band that step added. The strip sent to the
backend is ``old context | band | new context``; the band (``width_px`` columns, half
on each side of the seam) is the only area the mask paints and the only area of the
canvas that may change. The canvas keeps its size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exquisite_store.errors import ConfigError, DimensionMismatch
from exquisite_store.geometry.frames import FramePlan, FramePolicy, fit_frame
from exquisite_store.geometry.orient import check_direction
from exquisite_store.geometry.plan import _resize, to_channels
from exquisite_store.geometry.rect import Rect
from exquisite_store.geometry.seams import _pull_to_edge, correct_colour, fit_colour

#: the band's default width and the least context shown on each side
DEFAULT_REPAIR_PX = 64
MIN_REPAIR_CONTEXT_PX = 64


@dataclass(frozen=True)
class RepairPlan:
    """Where a repair's band, strip and frame lie; plane rectangles, canonical widths."""

    direction: str
    #: plane coordinate of the seam line (x for right/left, y for up/down)
    seam_at: int
    width_px: int
    #: band columns on the old side of the seam and on the new side
    old_px: int
    new_px: int
    old_context_px: int
    new_context_px: int
    band_px: int
    overlap_px: int
    canvas_rect: Rect
    band_rect: Rect
    strip_rect: Rect
    frame: FramePlan
    #: the painted part of the frame (its mask's alpha 0), in frame pixels
    paint_rect: Rect

    # the names the step transaction reads off any plan
    @property
    def new_rect(self) -> Rect:
        """The canvas after the repair: the same rectangle."""
        return self.canvas_rect

    @property
    def changed_rect(self) -> Rect:
        """The only pixels that may change."""
        return self.band_rect

    @property
    def extension_px(self) -> int:
        """Pixels painted across the seam."""
        return self.width_px

    @property
    def context_px(self) -> int:
        """Context shown on each side, at most (what the recipe records and re-plans from)."""
        return max(self.old_context_px, self.new_context_px)

    @property
    def seam_col(self) -> int:
        """The seam's column in the canonical strip."""
        return self.old_context_px + self.old_px


def seam_of(direction: str, canvas: Rect, extension_px: int) -> int:
    """The plane coordinate of the seam a step made, from its canvas and ``L``."""
    check_direction(direction)
    return {
        "right": canvas.right - extension_px,
        "left": canvas.x + extension_px,
        "down": canvas.bottom - extension_px,
        "up": canvas.y + extension_px,
    }[direction]


def plane_rect(direction: str, seam_at: int, canvas: Rect, lo: int, hi: int) -> Rect:
    """The plane rectangle of canonical offsets ``[lo, hi)`` from the seam, across the canvas."""
    if direction == "right":
        return Rect(seam_at + lo, canvas.y, hi - lo, canvas.h)
    if direction == "left":
        return Rect(seam_at - hi, canvas.y, hi - lo, canvas.h)
    if direction == "down":
        return Rect(canvas.x, seam_at + lo, canvas.w, hi - lo)
    return Rect(canvas.x, seam_at - hi, canvas.w, hi - lo)


def _extents(direction: str, seam_at: int, canvas: Rect) -> tuple[int, int, int]:
    """``(old side, new side, band rows)``: how far the canvas reaches from the seam."""
    x, y, w, h = canvas
    return {
        "right": (seam_at - x, x + w - seam_at, h),
        "left": (x + w - seam_at, seam_at - x, h),
        "down": (seam_at - y, y + h - seam_at, w),
        "up": (y + h - seam_at, seam_at - y, w),
    }[direction]


def plan_repair(
    canvas: Rect,
    direction: str,
    seam_at: int,
    width_px: int,
    overlap_px: int,
    context_px: int | None,
    policy: FramePolicy,
) -> RepairPlan:
    """Plan repainting ``width_px`` pixels centred on the seam at ``seam_at``."""
    check_direction(direction)
    old_ext, new_ext, band = _extents(direction, seam_at, canvas)
    if old_ext < 2 or new_ext < 2:
        raise ConfigError(f"there is no seam at {seam_at} inside canvas {tuple(canvas)}")
    if isinstance(width_px, bool) or not isinstance(width_px, int) or width_px < 2:
        raise ConfigError(
            f"the repair width must be at least 2 px, not {width_px!r}", field="width"
        )
    old_px = width_px // 2
    new_px = width_px - old_px
    if old_px > old_ext - 1 or new_px > new_ext - 1:
        widest = 2 * min(old_ext - 1, new_ext - 1)
        raise ConfigError(
            f"a {width_px} px band does not fit around this seam ({old_ext} px of canvas on "
            f"the old side, {new_ext} on the new): at most {widest} px",
            field="width",
        )
    want = max(width_px, MIN_REPAIR_CONTEXT_PX) if context_px is None else context_px
    if want < 1:
        raise ConfigError(f"context_px must be at least 1, not {want}", field="context_px")
    old_ctx, new_ctx = min(want, old_ext - old_px), min(want, new_ext - new_px)
    overlap = max(0, min(overlap_px, width_px // 2))
    # the frame holds old context | band + new context, fitted like a step's frame
    frame, old_ctx = fit_frame(band, width_px + new_ctx, old_ctx, 1, policy)
    f = frame
    painted = max(1, width_px * f.scale_num // f.scale_den)
    paint = Rect(f.content.x + f.context_w, f.content.y, min(painted, f.gen_w), f.content.h)
    return RepairPlan(
        direction=direction,
        seam_at=seam_at,
        width_px=width_px,
        old_px=old_px,
        new_px=new_px,
        old_context_px=old_ctx,
        new_context_px=new_ctx,
        band_px=band,
        overlap_px=overlap,
        canvas_rect=canvas,
        band_rect=plane_rect(direction, seam_at, canvas, -old_px, new_px),
        strip_rect=plane_rect(direction, seam_at, canvas, -old_px - old_ctx, new_px + new_ctx),
        frame=frame,
        paint_rect=paint,
    )


def build_repair_frame(strip_canon: np.ndarray, plan: RepairPlan) -> tuple[np.ndarray, np.ndarray]:
    """The frame (the strip as it is, edge-padded) and its mask (alpha 0 over the band)."""
    f, c = plan.frame, plan.frame.content
    want = (plan.band_px, plan.old_context_px + plan.width_px + plan.new_context_px)
    if strip_canon.ndim != 3 or strip_canon.shape[:2] != want:
        raise DimensionMismatch(f"repair strip is {strip_canon.shape}, expected {want}")
    old = strip_canon[:, : plan.old_context_px]
    rest = strip_canon[:, plan.old_context_px :]
    if f.scaled:
        old, rest = _resize(old, c.h, f.context_w), _resize(rest, c.h, f.gen_w)
    frame = np.empty((f.height, f.width, strip_canon.shape[2]), dtype=np.uint8)
    inner = frame[c.y : c.bottom, c.x : c.right]
    inner[:, : f.context_w] = old
    inner[:, f.context_w :] = rest
    frame[c.y : c.bottom, : c.x] = inner[:, :1]
    frame[c.y : c.bottom, c.right :] = inner[:, -1:]
    frame[: c.y] = frame[c.y : c.y + 1]
    frame[c.bottom :] = frame[c.bottom - 1 : c.bottom]
    mask = np.full((f.height, f.width, 4), 255, dtype=np.uint8)
    rows, cols = plan.paint_rect.slices(Rect(0, 0, f.width, f.height))
    mask[rows, cols, 3] = 0
    return frame, mask


def unframe_repair(
    output: np.ndarray, plan: RepairPlan
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(model's old context, new band, model's new context)``, canonical RGB, plane scale."""
    f = plan.frame
    if output.ndim not in (2, 3) or output.shape[:2] != (f.height, f.width):
        raise DimensionMismatch(
            f"backend output is {output.shape[1::-1]} (w, h), expected ({f.width}, {f.height})",
            expected=(f.width, f.height),
            got=tuple(output.shape[1::-1]),
        )
    out = to_channels(output, 3)
    rows, cols = f.content.slices(Rect(0, 0, f.width, f.height))
    content = out[rows, cols]
    old, rest = content[:, : f.context_w], content[:, f.context_w :]
    if f.scaled:
        old = _resize(old, plan.band_px, plan.old_context_px)
        rest = _resize(rest, plan.band_px, plan.width_px + plan.new_context_px)
    band, new = rest[:, : plan.width_px], rest[:, plan.width_px :]
    return tuple(np.ascontiguousarray(a) for a in (old, band, new))  # type: ignore[return-value]


@dataclass(frozen=True)
class RepairBlend:
    """The band to write and the colour fit applied to it."""

    band: np.ndarray
    model_old: np.ndarray
    model_new: np.ndarray
    gain_milli: tuple[int, ...]
    offset_milli: tuple[int, ...]


def blend_repair(
    strategy: str,
    old_ctx: np.ndarray,
    new_ctx: np.ndarray,
    model_old: np.ndarray,
    band: np.ndarray,
    model_new: np.ndarray,
    overlap_px: int,
) -> RepairBlend:
    """Join the regenerated band to the true pixels on both of its sides.

    ``match`` fits one gain and offset per channel from the model's rendering of both
    contexts to the true ones and applies it; ``feather`` and ``match`` then pull the
    first and last ``overlap_px`` band columns onto the true edge beside them, fading
    out toward the middle (as ``all-old`` does at a step's seam); ``hard`` pastes.
    """
    ch = band.shape[2]
    gain, offset = (1000,) * ch, (0,) * ch
    if strategy == "match":
        gain, offset = fit_colour(
            np.concatenate([model_old, model_new], axis=1),
            np.concatenate([old_ctx, new_ctx], axis=1),
        )
        model_old, model_new = (
            correct_colour(model_old, gain, offset),
            correct_colour(model_new, gain, offset),
        )
        band = correct_colour(band, gain, offset)
    ov = min(overlap_px, band.shape[1] // 2)
    if strategy != "hard" and ov > 0:
        band = _pull_to_edge(band, old_ctx[:, -1], model_old[:, -1], ov)
        flipped = _pull_to_edge(band[:, ::-1], new_ctx[:, 0], model_new[:, 0], ov)
        band = np.ascontiguousarray(flipped[:, ::-1])
    return RepairBlend(band, model_old, model_new, tuple(gain), tuple(offset))


def repaired_band(direction: str, seam_at: int, canvas: Rect, width_px: int) -> Rect:
    """The band a repair of ``width_px`` repaints around the seam, on the plane."""
    old = width_px // 2
    return plane_rect(direction, seam_at, canvas, -old, width_px - old)


def recipe_label(recipe) -> str:
    """A step's recipe in a few words: ``right +256`` or ``repair 64px``."""
    if recipe is None:
        return "root"
    if recipe.repair:  # UNSET is falsy
        return f"repair {recipe.extension_px}px"
    return f"{recipe.direction} +{recipe.extension_px}"
