"""Seam figures where the truth is known (tests/test_seam_quality.py, benchmarks/seam_table.py).

A band is cut off a photo and grown back through the pipeline by TruthBackend: the
true pixels after a gpt-image-like drift (gain, offset, blur and, with ``SHIFTING``, a
shift of the whole frame by 1.5 px right and 1 px up). Ratio: the seam's jump score over
the uncut photo's own at the same place (1.00: as invisible as any other column).
Error: the new band's mean colour against the truth, worst channel, in levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exquisite_store.geometry.defects import TEXTURE_FLOOR, _residual_parts, _texture
from exquisite_store.geometry.orient import to_canonical

from .backends import DRIFT_SHIFT, jump_score, regrow, seam_quality, unclipped

SHIFTING = {"shift": DRIFT_SHIFT}
CHAIN_LENGTH, CHAIN_STEPS = 30, 10


@dataclass(frozen=True)
class Figure:
    """One regrowth: seam ratio, colour error (levels), the recorded badge and shift."""

    ratio: float
    error: float
    badge: float
    shift: tuple[float, float]
    detail: float


def single(
    truth: np.ndarray, direction: str, length: int, seam: str, fake: dict | None = None, **params
) -> Figure:
    """Cut ``length`` px off ``truth`` on ``direction``, grow it back once, measure."""
    canvas, step = regrow(truth, direction, length, seam=seam, seed=1, fake=fake, **params)
    score, own, colour = seam_quality(
        canvas, truth, direction, length, step.recipe.context_px, fake
    )
    sc = step.result.scores
    check = sc.seam
    return Figure(
        ratio=score / own,
        error=float(colour.max()),
        badge=sc.seam_permille / 1000,
        shift=(check.shift_x_milli / 1000, check.shift_y_milli / 1000),
        detail=check.detail_permille / 1000,
    )


def chain(truth: np.ndarray, seam: str, fake: dict | None = None) -> tuple[list[float], float]:
    """Ten steps of 30 px to the right (the last 300 px of ``truth``).

    Returns each band's colour error and the worst seam ratio of the ten.
    """
    width = truth.shape[1]
    start = width - CHAIN_STEPS * CHAIN_LENGTH
    canvas, step = regrow(
        truth, "right", CHAIN_LENGTH, steps=CHAIN_STEPS, seam=seam, seed=1, fake=fake
    )
    c = step.recipe.context_px
    errors, ratios = [], []
    gains = {k: v for k, v in (fake or {}).items() if k in ("gain", "offset")}
    for x in range(start, width, CHAIN_LENGTH):
        band = slice(x, x + CHAIN_LENGTH)
        keep = unclipped(truth[:, band], **gains)
        got = canvas[:, band][keep].reshape(-1, 3).mean(axis=0)
        want = truth[:, band][keep].reshape(-1, 3).mean(axis=0)
        errors.append(float(np.abs(got - want).max()))
        strip = slice(x - c, x + CHAIN_LENGTH)
        ratios.append(jump_score(canvas[:, strip], c) / jump_score(truth[:, strip], c))
    return errors, max(ratios)


def canonical_band(canvas: np.ndarray, direction: str, length: int) -> np.ndarray:
    """The new band of a canvas, in canonical orientation."""
    return to_canonical(canvas, direction)[:, -length:]


# --- the badge against the true error ------------------------------------------------

# Fakes whose defects are known: colour drift (none, mild, gpt-image's), blur, a shift of
# the whole frame (registered away), a band redrawn displaced (the context is not).
BADGE_FAKES: dict[str, dict] = {
    "exact": {"gain": (1, 1, 1), "offset": (0, 0, 0), "blur": 0},
    "blur": {"gain": (1, 1, 1), "offset": (0, 0, 0), "blur": 1.2},
    "mild": {"gain": (1.02, 0.99, 1.01), "offset": (3, -2, 1), "blur": 0.5},
    "drift": {},
    "drift+shift": SHIFTING,
    "band moved": {"gain": (1, 1, 1), "offset": (0, 0, 0), "blur": 0, "band_shift": (2.0, 3.0)},
}
BADGE_SEAMS = ("hard", "feather", "match")
TRUE_ERROR_AFTER = 32  # new columns the true error is taken over, with the seam zone


@dataclass(frozen=True)
class BadgeCase:
    """One regrowth scored by the badge, the old jump score, and its true error."""

    photo: str
    fake: str
    seam: str
    direction: str
    badge: float
    jump: float
    true_error: float
    raw: float
    colour: float


def badge_case(
    name: str, truth: np.ndarray, fake: str, seam: str, direction: str, length: int = 96
) -> BadgeCase:
    """Regrow ``length`` px with a known fake and measure its true error against the truth.

    The true error is the badge's definition computed with the truth: over the seam
    zone and the first TRUE_ERROR_AFTER new columns, the colour error (per block of 16
    rows, the worst channel's mean of canvas - truth, averaged over blocks) plus the
    structure error (the mean absolute grey difference once each block's mean is
    taken off), over the truth's own texture there (mean column-to-column change,
    at least 2 levels), plus 1. ``raw`` is the plain mean absolute grey difference.
    """
    canvas, step = regrow(
        truth, direction, length, seam=seam, seed=1, fake=BADGE_FAKES[fake], overlap_px=32
    )
    got = to_canonical(canvas, direction)[:, :, :3].astype(np.int64)
    want = to_canonical(truth, direction)[:, :, :3].astype(np.int64)
    seam_col = got.shape[1] - length
    window = slice(seam_col - step.recipe.overlap_px, seam_col + TRUE_ERROR_AFTER)
    diff = got[:, window] - want[:, window]
    colour, structure = _residual_parts(diff)
    texture = max(_texture(want[:, window].sum(axis=2)), TEXTURE_FLOOR)
    sc = step.result.scores
    return BadgeCase(
        photo=name,
        fake=fake,
        seam=seam,
        direction=direction,
        badge=sc.seam_permille / 1000,
        jump=sc.seam.jump_permille / 1000,
        true_error=1 + (colour + structure) / texture,
        raw=float(np.abs(diff.mean(axis=2)).mean()),
        colour=colour,
    )


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    ra, rb = _ranks(np.asarray(a)), _ranks(np.asarray(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for value in np.unique(x):  # ties share their mean rank
        same = x == value
        ranks[same] = ranks[same].mean()
    return ranks
