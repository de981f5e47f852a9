"""Fake backends: a known pattern, a known truth, and every way a model can misbehave.

All are ``LocalBackend``s (any frame size, free). With the ``ANY`` frame policy the
frame sent is, at scale 1, exactly the plane region ``context_rect ∪ gen_rect`` in
plane orientation, so a frame pixel ``(y, x)`` is the plane pixel
``(origin.y + y, origin.x + x)`` of that region: tests use this to know what every
new pixel must be.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

import numpy as np
from PIL import Image, ImageFilter

from exquisite_store import imageio
from exquisite_store.backends.base import BackendRequest, BackendResult, LocalBackend
from exquisite_store.errors import PermanentBackendError, TransientBackendError
from exquisite_store.geometry.frames import ANY, FramePolicy
from exquisite_store.geometry.orient import to_canonical
from exquisite_store.geometry.rect import Rect
from exquisite_store.geometry.scores import seam_score as jump_score
from exquisite_store.manifests import Step
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store

# gpt-image-like repaint drift of the whole frame (the seam-quality tests use these).
DRIFT_GAIN = (1.08, 0.95, 1.05)
DRIFT_OFFSET = (10.0, -6.0, 4.0)
DRIFT_BLUR = 0.8
# gpt-image models also move the frame by a pixel or two (x right, y down, in plane px)
DRIFT_SHIFT = (1.5, -1.0)


def encode(arr: np.ndarray) -> bytes:
    """PNG bytes of a uint8 array, as a backend returns them."""
    return imageio.encode_png(imageio.from_array(arr))


def pattern(height: int, width: int, salt: int = 0) -> np.ndarray:
    """A deterministic RGB pattern over ``height x width`` frame coordinates."""
    y, x = np.mgrid[0:height, 0:width]
    base = (3 * x + 5 * y + salt)[:, :, None] + 85 * np.arange(3)[None, None, :]
    return (base & 255).astype(np.uint8)


def paint_area(request: BackendRequest) -> np.ndarray:
    """Boolean ``H x W``: where the mask says paint (alpha 0)."""
    return request.mask[:, :, 3] == 0


class PatternBackend(LocalBackend):
    """Paints ``pattern(frame, salt)`` where the mask is transparent, keeps the rest.

    Candidate ``i`` uses salt ``seed + 29 i``. ``context_shift`` (per channel, in
    levels) repaints the kept area with a colour shift, as a careless model would.
    """

    name = "pattern"

    def __init__(
        self, *, context_shift: Iterable[int] = (0, 0, 0), policy: FramePolicy = ANY
    ) -> None:
        self.context_shift = np.asarray(tuple(context_shift), dtype=np.int64)
        self.policy = policy
        self.calls = 0
        self.requests: list[BackendRequest] = []

    def frame_policy(self, model: str) -> FramePolicy:
        """The policy given at construction (``ANY`` by default)."""
        return self.policy

    @staticmethod
    def salt(seed: int, candidate: int) -> int:
        """The pattern salt of a candidate."""
        return (seed + 29 * candidate) & 255

    def paint(self, request: BackendRequest, candidate: int) -> np.ndarray:
        """The frame with the paint area filled and the rest (maybe) colour-shifted."""
        frame = request.image[:, :, :3].astype(np.int64) + self.context_shift
        out = np.clip(frame, 0, 255).astype(np.uint8)
        area = paint_area(request)
        salt = self.salt(request.seed, candidate)
        out[area] = pattern(request.height, request.width, salt)[area]
        return out

    def outputs(self, request: BackendRequest) -> list[bytes]:
        """The encoded candidates (subclasses bend them)."""
        return [encode(self.paint(request, i)) for i in range(request.n)]

    def generate(
        self, request: BackendRequest, cancel: threading.Event | None = None
    ) -> BackendResult:
        """Answer at once."""
        self.calls += 1
        self.requests.append(request)
        return BackendResult(images=self.outputs(request), metadata={"fake": self.name})


class ContextRepaintBackend(PatternBackend):
    """Repaints the context it was told to keep with a colour shift (gpt-image does)."""

    name = "repaint"

    def __init__(self, shift: Iterable[int] = (24, -16, 8)) -> None:
        super().__init__(context_shift=shift)


class WrongSizeBackend(PatternBackend):
    """Candidates in ``bad`` come back one column and one row too big."""

    name = "wrong-size"

    def __init__(self, bad: Iterable[int] | None = None) -> None:
        super().__init__()
        self.bad = None if bad is None else set(bad)

    def outputs(self, request: BackendRequest) -> list[bytes]:
        """Good candidates, except the bad ones padded."""
        out = []
        for i in range(request.n):
            arr = self.paint(request, i)
            if self.bad is None or i in self.bad:
                arr = np.pad(arr, ((0, 1), (0, 1), (0, 0)), mode="edge")
            out.append(encode(arr))
        return out


class NotAnImageBackend(PatternBackend):
    """Returns bytes that are no image at all."""

    name = "not-an-image"

    def outputs(self, request: BackendRequest) -> list[bytes]:
        """Garbage, one per candidate."""
        return [b"\x89PNG but not really" for _ in range(request.n)]


class RGBABackend(PatternBackend):
    """Returns RGBA with a varying alpha; the pipeline must drop the alpha, keep the RGB."""

    name = "rgba"

    def outputs(self, request: BackendRequest) -> list[bytes]:
        """The painted frame plus an alpha channel that is anything but opaque."""
        out = []
        for i in range(request.n):
            rgb = self.paint(request, i)
            alpha = pattern(request.height, request.width, 7)[:, :, :1]
            out.append(encode(np.concatenate([rgb, alpha], axis=2)))
        return out


class GreyscaleBackend(PatternBackend):
    """Returns a single-channel (L) image of the right size."""

    name = "greyscale"

    def outputs(self, request: BackendRequest) -> list[bytes]:
        """The painted frame's first channel as an L image."""
        return [encode(self.paint(request, i)[:, :, 0]) for i in range(request.n)]


class EmptyBackend(PatternBackend):
    """Answers with zero images."""

    name = "empty"

    def outputs(self, request: BackendRequest) -> list[bytes]:
        """Nothing."""
        return []


class TimeoutBackend(PatternBackend):
    """Times out on every call."""

    name = "timeout"

    def generate(
        self, request: BackendRequest, cancel: threading.Event | None = None
    ) -> BackendResult:
        """Raise a transient error, counting the call."""
        self.calls += 1
        raise TransientBackendError("request timed out after 60s", call=self.calls)


class FlakyBackend(PatternBackend):
    """Fails transiently ``failures`` times, then answers like ``PatternBackend``."""

    name = "flaky"

    def __init__(self, failures: int = 2) -> None:
        super().__init__()
        self.failures = failures

    def generate(
        self, request: BackendRequest, cancel: threading.Event | None = None
    ) -> BackendResult:
        """Transient errors first, then the pattern."""
        if self.calls < self.failures:
            self.calls += 1
            raise TransientBackendError("503 service unavailable", call=self.calls)
        return super().generate(request, cancel)


class PermanentErrorBackend(PatternBackend):
    """Rejects every request permanently (bad key, invalid request)."""

    name = "permanent"

    def generate(
        self, request: BackendRequest, cancel: threading.Event | None = None
    ) -> BackendResult:
        """Raise a permanent error, counting the call."""
        self.calls += 1
        raise PermanentBackendError("401 invalid api key", status=401)


class HookBackend(PatternBackend):
    """Calls ``hook(request)`` inside ``generate`` (e.g. to move a branch meanwhile)."""

    name = "hook"

    def __init__(self, hook: Callable[[BackendRequest], None]) -> None:
        super().__init__()
        self.hook = hook

    def generate(
        self, request: BackendRequest, cancel: threading.Event | None = None
    ) -> BackendResult:
        """Run the hook, then answer with the pattern."""
        self.hook(request)
        return super().generate(request, cancel)


class TruthBackend(LocalBackend):
    """Returns the true pixels of the frame from a full image, then drifts the whole frame.

    ``truth`` covers the plane from ``origin`` (the plane coordinate of
    ``truth[0, 0]``). Set ``parent_rect`` (and ``direction``) to the step's parent
    canvas rectangle before each step: with ``L`` read off the mask, that places the
    frame on the plane the way ``plan_step`` does (context + band, scale 1, ``ANY``).
    The drift is what gpt-image models do to a frame: a slight Gaussian blur and a
    per-channel gain and offset over every pixel, kept ones included.
    """

    name = "truth"

    def __init__(
        self,
        truth: np.ndarray,
        *,
        parent_rect: Rect,
        direction: str,
        origin: tuple[int, int] = (0, 0),
        gain: tuple[float, ...] = DRIFT_GAIN,
        offset: tuple[float, ...] = DRIFT_OFFSET,
        blur: float = DRIFT_BLUR,
        shift: tuple[float, float] = (0.0, 0.0),
        scale: float = 1.0,
        band_shift: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        self.truth = np.ascontiguousarray(truth[:, :, :3])
        self.origin = origin
        self.parent_rect = parent_rect
        self.direction = direction
        self.gain, self.offset, self.blur = gain, offset, blur
        self.shift, self.scale = shift, scale
        self.band_shift = band_shift
        self.calls = 0

    def frame_rect(self, request: BackendRequest) -> Rect:
        """Where the frame lies on the plane (scale 1, no padding)."""
        p, h, w = self.parent_rect, request.height, request.width
        area = paint_area(request)
        if self.direction in ("right", "left"):
            length = int(area.any(axis=0).sum())
            if self.direction == "right":
                return Rect(p.right + length - w, p.y, w, h)
            return Rect(p.x - length, p.y, w, h)
        length = int(area.any(axis=1).sum())
        if self.direction == "down":
            return Rect(p.x, p.bottom + length - h, w, h)
        return Rect(p.x, p.y - length, w, h)

    def true_frame(self, request: BackendRequest) -> np.ndarray:
        """The truth's pixels under the frame, before any drift."""
        rect = self.frame_rect(request)
        tr = Rect(self.origin[0], self.origin[1], self.truth.shape[1], self.truth.shape[0])
        if not tr.contains(rect):
            raise AssertionError(f"frame {tuple(rect)} is outside the truth {tuple(tr)}")
        return self.truth[rect.slices(tr)]

    def move(
        self, arr: np.ndarray, shift: tuple[float, float] | None = None, scale: float | None = None
    ) -> np.ndarray:
        """The frame's content moved by ``shift`` and scaled by ``scale`` about its centre.

        Bicubic, on an edge-padded copy, so no black comes in at the borders.
        """
        shift = self.shift if shift is None else shift
        scale = self.scale if scale is None else scale
        if shift == (0.0, 0.0) and scale == 1.0:
            return arr
        pad = 8 + int(abs(scale - 1) * max(arr.shape[:2]))
        padded = np.pad(arr, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
        h, w = padded.shape[:2]
        cx, cy, s = w / 2, h / 2, scale
        # output (x, y) samples input ((x - cx - dx) / s + cx, (y - cy - dy) / s + cy)
        dx, dy = shift
        coeffs = (1 / s, 0, cx - (cx + dx) / s, 0, 1 / s, cy - (cy + dy) / s)
        img = Image.fromarray(np.ascontiguousarray(padded), "RGB")
        moved = img.transform((w, h), Image.Transform.AFFINE, coeffs, Image.Resampling.BICUBIC)
        return np.asarray(moved)[pad:-pad, pad:-pad]

    def drift(self, arr: np.ndarray) -> np.ndarray:
        """Move, blur, then gain and offset per channel, rounded and clipped."""
        out = self.move(arr)
        if self.blur > 0:
            img = Image.fromarray(np.ascontiguousarray(out), "RGB")
            out = np.asarray(img.filter(ImageFilter.GaussianBlur(self.blur)))
        mapped = out.astype(np.float64) * np.asarray(self.gain) + np.asarray(self.offset)
        return np.clip(np.rint(mapped), 0, 255).astype(np.uint8)

    def generate(
        self, request: BackendRequest, cancel: threading.Event | None = None
    ) -> BackendResult:
        """``n`` copies of the drifted true frame (its new band moved by ``band_shift``)."""
        self.calls += 1
        true = self.true_frame(request)
        if self.band_shift != (0.0, 0.0):  # a model that redraws the band displaced
            area = paint_area(request)
            moved = self.move(true, shift=self.band_shift, scale=1.0)
            true = np.where(area[:, :, None], moved, true)
        frame = self.drift(true)
        return BackendResult(images=[encode(frame)] * request.n)


# --- regrowing a cut truth (seam-quality tests and benchmarks/seam_table.py) ---------


def cut(truth: np.ndarray, direction: str, length: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The truth minus ``length`` pixels on the ``direction`` side, and the truth's origin.

    The cut image is the start canvas at (0, 0); the origin is where ``truth[0, 0]``
    lies on that plane (negative for left / up, where the missing band comes first).
    """
    h, w = truth.shape[:2]
    if direction == "right":
        return truth[:, : w - length], (0, 0)
    if direction == "left":
        return truth[:, length:], (-length, 0)
    if direction == "up":
        return truth[length:], (0, -length)
    return truth[: h - length], (0, 0)


def regrow(
    truth: np.ndarray,
    direction: str,
    length: int,
    steps: int = 1,
    fake: dict | None = None,
    **params,
) -> tuple[np.ndarray, Step]:
    """Cut ``steps * length`` pixels off, grow them back through the pipeline from the truth.

    ``fake`` gives TruthBackend's drift (gain, offset, blur, shift, scale) other than
    the default. Returns the final canvas (aligned with ``truth``, same shape) and the
    last step.
    """
    start, origin = cut(truth, direction, steps * length)
    store = Store.memory()
    store.create_session("truth", start)
    backend = TruthBackend(
        truth, parent_rect=Rect(0, 0, 0, 0), direction=direction, origin=origin, **(fake or {})
    )
    for _ in range(steps):
        head = store.step(store.refs.head("truth", "main"))
        c = store.canvas(head)
        backend.parent_rect = Rect(c.x, c.y, c.width, c.height)
        run_step(
            store,
            "truth",
            backend_impl=backend,
            retry_delays=(0.0,),
            direction=direction,
            extension_px=length,
            **params,
        )
    last = store.step(store.refs.head("truth", "main"))
    return store.canvas_pixels(last), last


def seam_quality(
    canvas: np.ndarray,
    truth: np.ndarray,
    direction: str,
    length: int,
    context: int,
    fake: dict | None = None,
) -> tuple[int, int, np.ndarray]:
    """``(seam score, the truth's own score there, |mean colour error| per channel)``.

    Both are scored on the canonical strip the pipeline scores: ``context`` columns
    before the seam and the ``length`` new ones after it; the colour error is over
    the new band, leaving out the pixels the fake's drift (``fake``'s gain and offset,
    the defaults when not given) clips to 0 or 255: their colour is lost to any method.
    """
    got, want = to_canonical(canvas, direction), to_canonical(truth, direction)
    seam = got.shape[1] - length
    strip = slice(seam - context, seam + length)
    score = jump_score(got[:, strip], context)
    own = jump_score(want[:, strip], context)
    keep = unclipped(want[:, seam:], **{k: v for k, v in (fake or {}).items() if k in GAIN_KEYS})
    mean_got = got[:, seam:][keep].reshape(-1, 3).mean(axis=0)
    mean_want = want[:, seam:][keep].reshape(-1, 3).mean(axis=0)
    return score, own, np.abs(mean_got - mean_want)


class RepairTruthBackend(TruthBackend):
    """The drifted truth under a seam repair's strip: set ``strip`` to the plan's strip_rect.

    With the ``ANY`` policy a repair's frame is its strip on the plane at scale 1.
    """

    name = "repair-truth"

    def __init__(self, truth: np.ndarray, strip: Rect, **kw) -> None:
        super().__init__(truth, parent_rect=strip, direction="right", **kw)
        self.strip = strip

    def frame_rect(self, request: BackendRequest) -> Rect:
        """The strip, as planned."""
        return self.strip


GAIN_KEYS = ("gain", "offset")


def unclipped(
    truth: np.ndarray,
    gain: tuple[float, ...] = DRIFT_GAIN,
    offset: tuple[float, ...] = DRIFT_OFFSET,
) -> np.ndarray:
    """``H x W``: the pixels whose every channel the drift keeps inside 0..255."""
    mapped = truth[:, :, :3].astype(np.float64) * np.asarray(gain) + np.asarray(offset)
    return ((mapped >= 0.5) & (mapped <= 254.5)).all(axis=2)
