"""What a seam's defects are, measured: the seam badge, and the fine detail a model keeps.

A model paints its new band continuous with its own rendering of the context it was
shown, so wherever that rendering (registered and colour-corrected as the band was)
differs from the true context, the band will not continue the canvas: that residual,
near the seam, is the defect the eye sees. Its low-frequency part is a colour cast or
step (block means of 16 rows), its high-frequency part is structure that breaks at the
seam (misregistration, a repainted edge, lost detail). A fill that keeps the context
exactly (PatchMatch) has no residual, so the composite itself is checked too: an edge
that exists only on the seam line (the jump across it beyond the jumps of the columns
on either side, the 35th percentile over row blocks, so a photo's own edge at the cut
counts only where it runs along most of the seam). All three are in levels and divided by the
texture of the true context at the seam (its mean column-to-column change), so a
step that flat sky shows at once weighs more than the same step in foliage.

``defect_score`` is 1000 for an invisible seam, like the seam score before it.
Integer arithmetic throughout (grey = the channel sum), so a step's record is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exquisite_store.errors import DimensionMismatch

# Rows per block of the low-frequency (colour) part.
BLOCK_ROWS = 16
# Context columns next to the seam that the residual is taken over (at most).
RESIDUAL_COLS = 16
# The edge term is this percentile of the blocks' excess: a seam that breaks the picture
# breaks it all along, while a photo's own edge at the cut rarely spans two thirds of it.
EDGE_PERCENTILE = 35
# The texture is floored here (levels): below it a step is judged against this.
TEXTURE_FLOOR = 2.0


@dataclass(frozen=True)
class Defects:
    """A seam's defects in milli-levels, and the badge (1000 = invisible)."""

    colour_milli: int
    structure_milli: int
    edge_milli: int
    texture_milli: int
    score_permille: int


def defect_score(
    context: np.ndarray, model_context: np.ndarray, strip: np.ndarray, seam_col: int
) -> Defects:
    """Score the seam of ``strip`` (canonical, seam at ``seam_col``) against its context.

    ``context`` is the true context band (H x C), ``model_context`` the model's rendering
    of it as the band was joined (registered, colour-corrected), ``strip`` the new
    canvas's context columns and new band side by side.
    """
    if context.shape != model_context.shape or context.ndim != 3 or strip.ndim != 3:
        raise DimensionMismatch(
            f"context {context.shape} and model context {model_context.shape} differ",
            expected=context.shape,
            got=model_context.shape,
        )
    if not 3 <= seam_col <= strip.shape[1] - 2:
        raise DimensionMismatch(
            f"seam column {seam_col} needs 3 columns before it, 2 after (strip {strip.shape})",
            seam_col=seam_col,
        )
    k = min(context.shape[1], RESIDUAL_COLS)
    truth = context[:, -k:, :3].astype(np.int64)
    resid = truth - model_context[:, -k:, :3].astype(np.int64)
    colour, structure = _residual_parts(resid)
    edge = _edge_excess(_grey(strip[:, seam_col - 3 : seam_col + 2]), 3)
    texture = max(_texture(_grey(context[:, -k:])), TEXTURE_FLOOR)
    score = 1.0 + (colour + structure + edge) / texture
    return Defects(
        colour_milli=int(round(1000 * colour)),
        structure_milli=int(round(1000 * structure)),
        edge_milli=int(round(1000 * edge)),
        texture_milli=int(round(1000 * texture)),
        score_permille=int(round(1000 * score)),
    )


def _grey(arr: np.ndarray) -> np.ndarray:
    """Channel sum as int64 (0 to 765: three times the levels)."""
    return arr[:, :, :3].astype(np.int64).sum(axis=2)


def _residual_parts(resid: np.ndarray) -> tuple[float, float]:
    """``(colour, structure)`` of a residual H x K x 3, in levels.

    Colour: per block of rows, the worst channel's mean residual, averaged over blocks.
    Structure: the mean absolute residual of the grey image once each block's mean is taken off.
    """
    h = resid.shape[0]
    rows = max(1, min(BLOCK_ROWS, h))
    n = h // rows
    blocks = resid[: n * rows].reshape(n, rows * resid.shape[1], 3)
    means = blocks.mean(axis=1)  # n x 3
    colour = float(np.abs(means).max(axis=1).mean())
    grey = blocks.sum(axis=2)
    structure = float(np.abs(grey - grey.mean(axis=1, keepdims=True)).mean()) / 3
    return colour, structure


def _texture(grey: np.ndarray) -> float:
    """Mean absolute change from column to column, in levels."""
    if grey.shape[1] < 2:
        return 0.0
    return float(np.abs(np.diff(grey, axis=1)).mean()) / 3


def _edge_excess(grey: np.ndarray, seam: int) -> float:
    """35th percentile over row blocks of the seam's RMS jump beyond its neighbours', in levels.

    Per block, ``sqrt(max(0, ms(seam) - max(ms(before), ms(after))))`` of the mean
    squared jumps: a band redrawn displaced decorrelates the two columns at the seam,
    which squares show more than absolute values do.
    """
    d = np.diff(grey[:, seam - 2 : seam + 2], axis=1)  # before, seam, after
    h = grey.shape[0]
    rows = max(1, min(BLOCK_ROWS, h))
    n = h // rows
    ms = (d[: n * rows] ** 2).reshape(n, rows, 3).mean(axis=1)
    excess = ms[:, 1] - np.maximum(ms[:, 0], ms[:, 2])
    return float(np.sqrt(max(0.0, float(np.percentile(excess, EDGE_PERCENTILE))))) / 3


def detail_ratio(truth: np.ndarray, model: np.ndarray) -> int:
    """Per-mille of the true fine detail the model's rendering keeps (1000 = all).

    Fine detail is the mean absolute difference from the 3 x 3 box mean (integers),
    of the grey images; a flat truth (no detail to lose) gives 1000.
    """
    t, m = _fine(_grey(truth)), _fine(_grey(model))
    if t == 0:
        return 1000
    return (2000 * m + t) // (2 * t)


def _fine(grey: np.ndarray) -> int:
    """Sum of ``|9 x pixel - 3 x 3 box sum|`` over the interior."""
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        return 0
    pad = np.cumsum(np.cumsum(np.pad(grey, ((1, 0), (1, 0))), axis=0), axis=1)
    box = pad[3:, 3:] - pad[:-3, 3:] - pad[3:, :-3] + pad[:-3, :-3]
    return int(np.abs(9 * grey[1:-1, 1:-1] - box).sum())
