"""Frame policies (which image sizes a backend accepts) and fitting a band into a frame.

Everything here is in canonical orientation: the content sent to the model is ``H``
rows (the band across the seam) by ``C + L`` columns, context on the left, generation
band on the right. A *frame* is the image actually sent; anything of it outside the
content is padding.

Fitting rules:

- ``any``: the frame is exactly the content, ``(C + L) x H``, scale 1. No size limits
  (a content-aware fill takes any size).
- ``multiple``: both frame sides are multiples of ``multiple``, the aspect ``W/H`` lies
  in ``[min_aspect_milli, max_aspect_milli] / 1000``, and the side and pixel limits hold.
  The frame is the content padded up to the multiple, then up to the aspect limit
  (padding below a too-wide content, left of a too-tall one), then to ``min_pixels``
  (growing the short side first). Context beyond the seam zone is optional, so at
  scale 1 the context first shrinks (down to ``min_context`` = max(overlap, 1)) to
  meet a size limit, and never adds padding rows: if the band is too wide for the
  aspect limit, context is dropped before the frame is padded below. Only if even the
  minimum context does not fit is the content scaled down, by the smallest factor that
  fits.
- ``fixed``: each listed ``W x H`` is tried; the content must fit inside it (scaled
  down only when the band height or ``L + min_context`` does not fit), and the context
  takes whatever width is left, up to the requested ``C``. The size that needs the
  least scaling wins; ties go to the least padding, then to the order listed.

The content sits at the frame's top-right corner: padding goes left of the context
(where the canvas really continues) and below, never between context and generation.

Scales are rationals ``num/den`` (content pixel -> frame pixel) so manifests stay
float-free. A scale is searched as ``k / D`` with ``D`` the longer content side, so it
is exact to one pixel of that side; each part (band height, context, generation) is
scaled with floor rounding but to at least one pixel. No policy ever scales up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from exquisite_store.errors import CompositeError, ConfigError
from exquisite_store.geometry.rect import Rect

FrameKind = Literal["any", "fixed", "multiple"]
FRAME_KINDS: tuple[str, ...] = ("any", "fixed", "multiple")


@dataclass(frozen=True)
class FramePolicy:
    """Which frame sizes a backend accepts; plain data so a model table can list it."""

    kind: FrameKind
    sizes: tuple[tuple[int, int], ...] = ()
    multiple: int = 16
    min_aspect_milli: int = 333
    max_aspect_milli: int = 3000
    max_w: int = 3840
    max_h: int = 3840
    max_pixels: int = 3840 * 2160
    min_pixels: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FRAME_KINDS:
            raise ConfigError(f"unknown frame policy kind {self.kind!r}", field="frame_policy")
        if self.kind == "fixed" and not self.sizes:
            raise ConfigError("a fixed frame policy needs at least one size", field="frame_policy")
        if any(w < 1 or h < 1 for w, h in self.sizes):
            raise ConfigError(f"frame sizes must be positive: {self.sizes}", field="frame_policy")
        if self.multiple < 1 or not 1 <= self.min_aspect_milli <= self.max_aspect_milli:
            raise ConfigError("frame multiple or aspect limits out of range", field="frame_policy")

    def accepts(self, width: int, height: int) -> bool:
        """Whether a frame of ``width`` x ``height`` is one this policy allows."""
        if width < 1 or height < 1:
            return False
        if self.kind == "any":
            return True
        if self.kind == "fixed":
            return (width, height) in self.sizes
        return (
            width % self.multiple == 0
            and height % self.multiple == 0
            and self.min_aspect_milli * height <= 1000 * width <= self.max_aspect_milli * height
            and width <= self.max_w
            and height <= self.max_h
            and self.min_pixels <= width * height <= self.max_pixels
        )


ANY = FramePolicy("any")


def fixed(*sizes: tuple[int, int]) -> FramePolicy:
    """A policy that accepts only the listed ``(width, height)`` sizes."""
    return FramePolicy("fixed", sizes=tuple((int(w), int(h)) for w, h in sizes))


def multiple_of(
    multiple: int = 16,
    *,
    min_aspect_milli: int = 333,
    max_aspect_milli: int = 3000,
    max_w: int = 3840,
    max_h: int = 3840,
    max_pixels: int = 3840 * 2160,
    min_pixels: int = 0,
) -> FramePolicy:
    """A policy that accepts any size with both sides divisible by ``multiple``, within limits."""
    return FramePolicy(
        "multiple",
        multiple=multiple,
        min_aspect_milli=min_aspect_milli,
        max_aspect_milli=max_aspect_milli,
        max_w=max_w,
        max_h=max_h,
        max_pixels=max_pixels,
        min_pixels=min_pixels,
    )


@dataclass(frozen=True)
class FramePlan:
    """Where the (scaled) content sits in the frame sent to the backend, in frame pixels."""

    width: int
    height: int
    scale_num: int
    scale_den: int
    content: Rect
    context_w: int
    gen_w: int

    @property
    def scaled(self) -> bool:
        """Whether content is resampled on its way into (and out of) the frame."""
        return self.scale_num != self.scale_den

    @property
    def gen_rect(self) -> Rect:
        """The generation area inside the frame (the mask's paint-here region)."""
        c = self.content
        return Rect(c.x + self.context_w, c.y, self.gen_w, c.h)


def fit_frame(
    band_px: int, extension_px: int, context_px: int, min_context_px: int, policy: FramePolicy
) -> tuple[FramePlan, int]:
    """Fit ``band_px`` rows of context + generation into a frame; returns it and the C used."""
    height, gen, ctx = band_px, extension_px, context_px
    if height < 1 or gen < 1 or not 1 <= min_context_px <= ctx:
        raise ConfigError(
            f"cannot frame {height} rows x {min_context_px}..{ctx}+{gen} columns",
            field="frame",
        )
    if policy.kind == "any":
        content = Rect(0, 0, ctx + gen, height)
        return FramePlan(ctx + gen, height, 1, 1, content, ctx, gen), ctx
    targets: tuple[tuple[int, int] | None, ...] = (
        policy.sizes if policy.kind == "fixed" else (None,)
    )
    best: tuple[FramePlan, int] | None = None
    best_key: tuple[Fraction, int, int] | None = None
    for index, target in enumerate(targets):
        found = _fit_target(height, gen, ctx, min_context_px, policy, target)
        if found is None:
            continue
        plan = found[0]
        padding = plan.width * plan.height - plan.content.area
        key = (-Fraction(plan.scale_num, plan.scale_den), padding, index)
        if best_key is None or key < best_key:
            best, best_key = found, key
    if best is None:
        raise CompositeError(
            f"no {policy.kind} frame fits a band of {height} rows x {min_context_px}+{gen} columns",
            band_px=height,
            extension_px=gen,
            min_context_px=min_context_px,
        )
    return best


def _fit_target(
    height: int,
    gen: int,
    ctx: int,
    min_ctx: int,
    policy: FramePolicy,
    target: tuple[int, int] | None,
) -> tuple[FramePlan, int] | None:
    """The least-scaled fit into one target size (or the multiple policy), or None."""
    unscaled = _fit_at(Fraction(1), height, gen, ctx, min_ctx, policy, target)
    if unscaled is not None:
        return unscaled
    # Fitting is monotone in the scale, so binary-search the largest k / D that fits.
    longest = max(height, gen + min_ctx)
    lo, hi = 0, longest - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _fit_at(Fraction(mid, longest), height, gen, ctx, min_ctx, policy, target):
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return None
    return _fit_at(Fraction(lo, longest), height, gen, ctx, min_ctx, policy, target)


def _fit_at(
    scale: Fraction,
    height: int,
    gen: int,
    ctx: int,
    min_ctx: int,
    policy: FramePolicy,
    target: tuple[int, int] | None,
) -> tuple[FramePlan, int] | None:
    """The fit at one scale with the widest context that still fits, or None."""
    content_h, gen_w = _scaled(height, scale), _scaled(gen, scale)

    def frame_for(c: int) -> tuple[int, int] | None:
        return _frame_size(_scaled(c, scale) + gen_w, content_h, policy, target)

    base = frame_for(min_ctx)
    if base is None:
        return None

    def fits(c: int) -> bool:
        # Extra context may widen the frame but never add padding rows: a band too wide
        # for the aspect limit gives up optional context before it gets padded below.
        size = frame_for(c)
        return size is not None and size[1] <= base[1]

    lo, hi = min_ctx, max(min_ctx, ctx)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    size = frame_for(lo)
    assert size is not None  # lo is always a context width that fits
    context_w = _scaled(lo, scale)
    content = Rect(size[0] - context_w - gen_w, 0, context_w + gen_w, content_h)
    plan = FramePlan(
        size[0], size[1], scale.numerator, scale.denominator, content, context_w, gen_w
    )
    return plan, lo


def _frame_size(
    content_w: int, content_h: int, policy: FramePolicy, target: tuple[int, int] | None
) -> tuple[int, int] | None:
    """The smallest frame of the policy that holds the content, or None."""
    if target is not None:
        fits = content_w <= target[0] and content_h <= target[1]
        return target if fits else None
    m = policy.multiple
    width, height = _ceil_to(content_w, m), _ceil_to(content_h, m)
    if 1000 * width > policy.max_aspect_milli * height:
        height = _ceil_to(-(-1000 * width // policy.max_aspect_milli), m)
    elif 1000 * width < policy.min_aspect_milli * height:
        width = _ceil_to(-(-policy.min_aspect_milli * height // 1000), m)
    need = policy.min_pixels
    if width * height < need:
        # Grow the short side first (up to a square), then both: the least-skewed frame.
        if width < height:
            width = min(_ceil_to(-(-need // height), m), height)
        elif height < width:
            height = min(_ceil_to(-(-need // width), m), width)
        if width * height < need:
            side = _ceil_to(_ceil_sqrt(need), m)
            width, height = max(width, side), max(height, side)
    return (width, height) if policy.accepts(width, height) else None


def _scaled(n: int, scale: Fraction) -> int:
    """``n >= 1`` content pixels at ``scale``: floored, but never to nothing."""
    # Floor keeps a scaled part inside what the scale allows; the floor of 1 keeps a
    # one-pixel context or band from vanishing (it is then stretched a little instead).
    return max(1, n * scale.numerator // scale.denominator)


def _ceil_to(n: int, m: int) -> int:
    """``n`` rounded up to a multiple of ``m``."""
    return -(-n // m) * m


def _ceil_sqrt(n: int) -> int:
    """The smallest integer whose square is at least ``n``."""
    return 0 if n <= 0 else math.isqrt(n - 1) + 1
