"""Which part of the plane each frame of a film shows, and of which canvas (pure, no I/O).

A film of a branch is the chain of its canvases, root to head. It holds on the root,
then gives each step the same number of frames (half a second, less on a branch so long
that its steps would last more than 30 s), in which the step's new band is wiped
in along its direction (the canvas shown is the step's own), then holds on the head.
Per mode:

- ``zoom-out``: the camera frames the whole current canvas, pulling back as it grows.
- ``pan``: the camera keeps the scale that fits the root and follows each new band
  (kept inside the canvas where the canvas is larger than the view), then pulls back
  to the whole head at the end.
- ``reveal``: the camera frames the whole head throughout, and the head's own pixels
  are revealed band by band, from the root's rectangle out.

The first frame shows the root whole (in ``reveal``: the head's pixels over the root's
rectangle) and the last the head whole, each fitted into the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from exquisite_store.geometry.rect import Rect

Mode = Literal["pan", "zoom-out", "reveal"]
MODES: tuple[Mode, ...] = ("pan", "zoom-out", "reveal")

#: seconds on the root before the first step, per step, of the pan's pull-back, on the head
HOLD_START_S = 1.0
STEP_S = 0.5
PULL_BACK_S = 1.5
HOLD_END_S = 1.5
#: the steps of a long branch share at most this long (each keeps at least one frame)
MAX_STEPS_S = 30.0


@dataclass(frozen=True)
class Camera:
    """A rectangle of the plane in float plane pixels, of the frame's aspect."""

    x: float
    y: float
    w: float
    h: float

    def lerp(self, other: Camera, f: float) -> Camera:
        """The camera a fraction ``f`` of the way to ``other``."""
        return Camera(
            *(a + (b - a) * f for a, b in zip(self.astuple(), other.astuple(), strict=True))
        )

    def astuple(self) -> tuple[float, float, float, float]:
        """``(x, y, w, h)``."""
        return (self.x, self.y, self.w, self.h)


@dataclass(frozen=True)
class Frame:
    """One frame: canvas ``canvas`` (0 is the root) seen through ``camera``, clipped to ``clip``.

    Pixels outside ``clip`` (and outside the canvas) are the background.
    """

    canvas: int
    camera: Camera
    clip: Rect


@dataclass(frozen=True)
class Timing:
    """How many frames each part of a film takes."""

    hold_start: int
    per_step: int
    pull_back: int
    hold_end: int

    @classmethod
    def of(cls, fps: int, mode: Mode, steps: int) -> Timing:
        """The frames of each part of a film of ``steps`` steps at ``fps`` frames a second."""

        def n(seconds: float) -> int:
            return max(1, round(fps * seconds))

        per_step = min(n(STEP_S), n(MAX_STEPS_S / max(1, steps)))
        pull_back = n(PULL_BACK_S) if mode == "pan" else 0
        return cls(n(HOLD_START_S), per_step, pull_back, n(HOLD_END_S))

    def total(self, steps: int) -> int:
        """Frames in a film of ``steps`` steps."""
        return self.hold_start + steps * self.per_step + self.pull_back + self.hold_end


def fit(rect: Rect, size: tuple[int, int]) -> Camera:
    """The camera that shows ``rect`` whole, centred, in a frame of ``size``."""
    w, h = size
    scale = min(w / rect.w, h / rect.h)
    cw, ch = w / scale, h / scale
    return Camera(rect.x + (rect.w - cw) / 2, rect.y + (rect.h - ch) / 2, cw, ch)


def follow(band: Rect, canvas: Rect, view: tuple[float, float]) -> Camera:
    """A camera of size ``view`` centred on ``band``, kept inside ``canvas`` where it can be.

    Along an axis where the canvas is smaller than the view, the canvas is centred.
    """

    def axis(b0: int, b1: int, c0: int, c1: int, span: float) -> float:
        if c1 - c0 <= span:
            return (c0 + c1) / 2 - span / 2
        return min(max((b0 + b1) / 2 - span / 2, c0), c1 - span)

    vw, vh = view
    x = axis(band.x, band.right, canvas.x, canvas.right, vw)
    y = axis(band.y, band.bottom, canvas.y, canvas.bottom, vh)
    return Camera(x, y, vw, vh)


def band_of(parent: Rect, child: Rect) -> Rect:
    """The new band of a step: the part of ``child`` outside ``parent`` (a strip)."""
    if child.x < parent.x:
        return Rect(child.x, child.y, parent.x - child.x, child.h)
    if child.right > parent.right:
        return Rect(parent.right, child.y, child.right - parent.right, child.h)
    if child.y < parent.y:
        return Rect(child.x, child.y, child.w, parent.y - child.y)
    if child.bottom > parent.bottom:
        return Rect(child.x, parent.bottom, child.w, child.bottom - parent.bottom)
    return child  # a step that did not grow: the whole canvas is "new"


def wipe(parent: Rect, child: Rect, f: float) -> Rect:
    """``parent`` grown a fraction ``f`` of the way to ``child`` (every edge moves)."""

    def mix(a: int, b: int) -> int:
        return round(a + (b - a) * f)

    x0, y0 = mix(parent.x, child.x), mix(parent.y, child.y)
    return Rect(x0, y0, mix(parent.right, child.right) - x0, mix(parent.bottom, child.bottom) - y0)


def ease(f: float) -> float:
    """Smooth start and stop (cosine ease in and out)."""
    return (1 - math.cos(math.pi * f)) / 2


def plan(rects: list[Rect], size: tuple[int, int], fps: int, mode: Mode) -> list[Frame]:
    """The frames of the film of the canvases ``rects`` (root first) in a frame of ``size``."""
    if len(rects) < 2:
        raise ValueError("a film needs at least one step after the root")
    if mode not in MODES:
        raise ValueError(f"unknown film mode {mode!r}")
    timing = Timing.of(fps, mode, len(rects) - 1)
    head = len(rects) - 1
    frames: list[Frame] = []
    if mode == "reveal":
        camera = fit(rects[head], size)
        frames += [Frame(head, camera, rects[0])] * timing.hold_start
        for k in range(1, len(rects)):
            for j in range(1, timing.per_step + 1):
                clip = wipe(rects[k - 1], rects[k], j / timing.per_step)
                frames.append(Frame(head, camera, clip))
        frames += [Frame(head, camera, rects[head])] * timing.hold_end
        return frames
    cameras = [fit(rects[0], size)]
    view = (cameras[0].w, cameras[0].h)
    for k in range(1, len(rects)):
        if mode == "zoom-out":
            cameras.append(fit(rects[k], size))
        else:
            cameras.append(follow(band_of(rects[k - 1], rects[k]), rects[k], view))
    frames += [Frame(0, cameras[0], rects[0])] * timing.hold_start
    for k in range(1, len(rects)):
        for j in range(1, timing.per_step + 1):
            f = j / timing.per_step
            camera = cameras[k - 1].lerp(cameras[k], ease(f))
            frames.append(Frame(k, camera, wipe(rects[k - 1], rects[k], f)))
    whole = fit(rects[head], size)
    for j in range(1, timing.pull_back + 1):
        f = ease(j / timing.pull_back)
        frames.append(Frame(head, cameras[head].lerp(whole, f), rects[head]))
    frames += [Frame(head, whole, rects[head])] * timing.hold_end
    return frames
