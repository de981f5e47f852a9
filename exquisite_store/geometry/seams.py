"""Seam strategies: how the model's new band is joined to the untouched canvas.

All arrays are canonical (extension on the right) uint8 ``H x W x ch``; arithmetic is
done in integers with explicit round-half-up, so a step recomputes bit for bit.

- ``hard``: the seam zone keeps the true context, the band is pasted as generated.
- ``feather``: across the seam zone (the last ``overlap`` context columns) the weight
  of the model's own rendering of those pixels rises linearly, ``j / overlap`` for
  zone column ``j``: the first zone column is exactly the true context and the ramp
  reaches the model's rendering at the seam, so the zone flows into the new band,
  which the model painted continuous with its own rendering.
- ``match``: fit a per-channel gain and offset (least squares over 8 x 8 block means
  of the whole context shown, clipped blocks left out, gain clipped to [0.5, 2])
  mapping the model's rendering of the context onto the true context, apply it to
  that rendering and to the new band, then feather.

Under the ``all-old`` immutable policy no old pixel may change, so the seam zone is
empty and ``feather`` / ``match`` blend the first ``overlap`` columns of the new band
instead: column ``j`` is shifted by ``(overlap - j) / overlap`` of the per-row
difference between the true and the model's last context column. The first new
column then continues the true edge the way the model continued its own rendering of
it, and the shift fades out across the blend; the model's texture is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from exquisite_store.errors import ConfigError, DimensionMismatch
from exquisite_store.params import IMMUTABLE_POLICIES, SEAMS

GAIN_MIN_MILLI, GAIN_MAX_MILLI = 500, 2000
OFFSET_LIMIT_MILLI = 255_000
# The colour fit is made on the means of blocks this big (see fit_colour).
FIT_BLOCK = 8
# Fewer unclipped blocks than this and every pixel is used.
MIN_FIT_BLOCKS = 16

_Num = TypeVar("_Num", int, np.ndarray)


@dataclass(frozen=True)
class SeamResult:
    """New values of the seam zone and of the generation band, and the colour fit applied."""

    seam_zone: np.ndarray
    gen: np.ndarray
    gain_milli: tuple[int, ...]
    offset_milli: tuple[int, ...]


def div_round(num: _Num, den: int) -> _Num:
    """Integer ``num / den`` rounded half up (exact for Python ints and int numpy arrays)."""
    return (2 * num + den) // (2 * den)


def apply_seam(
    strategy: str,
    context_canon: np.ndarray,
    model_context_canon: np.ndarray,
    gen_canon: np.ndarray,
    overlap_px: int,
    immutable_policy: str = "outside-seam",
) -> SeamResult:
    """Join the generated band to the true context with ``strategy`` (see module doc)."""
    if strategy not in SEAMS:
        raise ConfigError(
            f"unknown seam strategy {strategy!r}; expected one of {', '.join(SEAMS)}",
            field="seam",
        )
    if immutable_policy not in IMMUTABLE_POLICIES:
        raise ConfigError(
            f"unknown immutable policy {immutable_policy!r}", field="immutable_policy"
        )
    _check_shapes(context_canon, model_context_canon, gen_canon)
    width, length, ch = context_canon.shape[1], gen_canon.shape[1], context_canon.shape[2]
    limit = length if immutable_policy == "all-old" else width
    if not 0 <= overlap_px <= limit:
        raise ConfigError(f"overlap_px {overlap_px} out of range [0, {limit}]", field="overlap_px")

    gain, offset = (1000,) * ch, (0,) * ch
    model, gen = model_context_canon, gen_canon
    if strategy == "match":
        gain, offset = fit_colour(model_context_canon, context_canon)
        model, gen = correct_colour(model, gain, offset), correct_colour(gen, gain, offset)

    blend = strategy != "hard" and overlap_px > 0
    if immutable_policy == "all-old":
        zone = context_canon[:, width:].copy()
        if blend:
            gen = _pull_to_edge(gen, context_canon[:, -1], model[:, -1], overlap_px)
    else:
        start = width - overlap_px
        true_zone = context_canon[:, start:]
        zone = _ramp(true_zone, model[:, start:]) if blend else true_zone.copy()
    return SeamResult(
        seam_zone=np.ascontiguousarray(zone),
        gen=np.ascontiguousarray(gen),
        gain_milli=tuple(gain),
        offset_milli=tuple(offset),
    )


def fit_colour(source: np.ndarray, target: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per-channel least-squares ``target ~ gain * source + offset`` in integer milli units.

    Fitted on the means of ``FIT_BLOCK`` x ``FIT_BLOCK`` blocks, leaving out blocks where
    the source is clipped (a level of 0 or 255 in that channel): a model's blur changes
    pixels but hardly their block means (pixel by pixel, a blurred source biases the
    gain), and a clipped pixel says nothing about the gain. A context too small for
    blocks, or with too few unclipped ones, is fitted on all its pixels.
    """
    gains, offsets = [], []
    for c in range(source.shape[2]):
        x, y = _fit_samples(source[:, :, c], target[:, :, c])
        n = x.size
        # Exact integer sums: the fit, hence every pixel after it, is platform independent.
        sx, sy = int(x.sum()), int(y.sum())
        sxx, sxy = int((x * x).sum()), int((x * y).sum())
        den = n * sxx - sx * sx
        gain = 1000 if den == 0 else div_round(1000 * (n * sxy - sx * sy), den)
        # A clipped gain keeps a flat or mismatched context from inverting the band.
        gain = min(max(gain, GAIN_MIN_MILLI), GAIN_MAX_MILLI)
        offset = div_round(1000 * sy - gain * sx, n * FIT_BLOCK * FIT_BLOCK)
        gains.append(gain)
        offsets.append(min(max(offset, -OFFSET_LIMIT_MILLI), OFFSET_LIMIT_MILLI))
    return tuple(gains), tuple(offsets)


def _fit_samples(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block sums (int64) of one channel of source and target: the samples of the fit.

    Each sum is over FIT_BLOCK^2 pixels; where blocks cannot be used, each pixel's value
    times FIT_BLOCK^2, so the offset's scale is the same either way.
    """
    b = FIT_BLOCK
    h, w = (source.shape[0] // b) * b, (source.shape[1] // b) * b
    area = b * b
    if h and w:
        shape = (h // b, b, w // b, b)
        x = source[:h, :w].astype(np.int64).reshape(shape).sum(axis=(1, 3)).ravel()
        y = target[:h, :w].astype(np.int64).reshape(shape).sum(axis=(1, 3)).ravel()
        blocks = source[:h, :w].reshape(shape)
        clipped = ((blocks == 0) | (blocks == 255)).any(axis=(1, 3)).ravel()
        if int(np.count_nonzero(~clipped)) >= MIN_FIT_BLOCKS:
            return x[~clipped], y[~clipped]
    return source.astype(np.int64).ravel() * area, target.astype(np.int64).ravel() * area


def correct_colour(
    arr: np.ndarray, gain_milli: tuple[int, ...], offset_milli: tuple[int, ...]
) -> np.ndarray:
    """Apply ``value * gain / 1000 + offset / 1000`` per channel, rounded half up and clipped.

    Through a 256-entry table per channel (the same integers, computed once per value),
    so the cost is one lookup per pixel.
    """
    values = np.arange(256, dtype=np.int64)
    out = np.empty_like(arr)
    for c in range(arr.shape[2]):
        table = np.clip(div_round(values * gain_milli[c] + offset_milli[c], 1000), 0, 255)
        np.take(table.astype(np.uint8), arr[:, :, c], out=out[:, :, c])  # no temporary
    return out


def _ramp(true_zone: np.ndarray, model_zone: np.ndarray) -> np.ndarray:
    """Blend zone column ``j`` as ``(true * (ov - j) + model * j) / ov``."""
    ov = true_zone.shape[1]
    j = np.arange(ov, dtype=np.int64)[None, :, None]
    mixed = true_zone.astype(np.int64) * (ov - j) + model_zone.astype(np.int64) * j
    return div_round(mixed, ov).astype(np.uint8)


def _pull_to_edge(
    gen: np.ndarray, true_edge: np.ndarray, model_edge: np.ndarray, ov: int
) -> np.ndarray:
    """Shift the first ``ov`` new columns toward the true edge, fading out linearly."""
    diff = (true_edge.astype(np.int64) - model_edge.astype(np.int64))[:, None, :]
    j = np.arange(ov, dtype=np.int64)[None, :, None]
    out = gen.copy()
    shifted = gen[:, :ov].astype(np.int64) + div_round(diff * (ov - j), ov)
    out[:, :ov] = np.clip(shifted, 0, 255).astype(np.uint8)
    return out


def _check_shapes(context: np.ndarray, model: np.ndarray, gen: np.ndarray) -> None:
    """Raise DimensionMismatch unless the three arrays agree as the seam needs."""
    ok = (
        context.ndim == model.ndim == gen.ndim == 3
        and context.shape == model.shape
        and gen.shape[0] == context.shape[0]
        and gen.shape[2] == context.shape[2]
        and context.shape[1] >= 1
        and context.dtype == model.dtype == gen.dtype == np.uint8
    )
    if not ok:
        raise DimensionMismatch(
            f"seam inputs disagree: context {context.shape}, model context {model.shape}, "
            f"generation {gen.shape}",
            context=context.shape,
            model_context=model.shape,
            gen=gen.shape,
        )
