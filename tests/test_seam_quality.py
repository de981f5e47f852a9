"""Seam quality measured where the truth is known.

A band is cut off the photo-like fixture and grown back by ``TruthBackend``, which
returns the true missing pixels after a gpt-image-like drift of the whole frame
(gain 1.08/0.95/1.05, offset +10/-6/+4, blur 0.8). The composite is compared with the
uncut photo: ``match`` must hide the seam as well as the photo hides its own columns
and get the band's colour right; ``hard`` shows the drift.
"""

from __future__ import annotations

import numpy as np
import pytest

from exquisite_store.geometry.orient import DIRECTIONS, to_canonical
from exquisite_store.geometry.scores import seam_score

from .fakes.backends import DRIFT_GAIN, DRIFT_OFFSET, regrow, seam_quality

L = 128
SEAM_RATIO_MAX = 1.15
COLOUR_LEVELS_MAX = 2.0


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_match_hides_the_seam_and_the_drift(photo, direction) -> None:
    canvas, step = regrow(photo, direction, L, seam="match", seed=1)
    assert canvas.shape == photo.shape
    c, ov = step.recipe.context_px, step.recipe.overlap_px
    score, own, colour = seam_quality(canvas, photo, direction, L, c)
    assert score <= SEAM_RATIO_MAX * own, (score, own)
    assert colour.max() <= COLOUR_LEVELS_MAX, colour
    assert step.result.scores.seam_permille == score  # the recorded score is this measure
    # the fit found the drift: gain and offset are its inverse, about
    gain = np.asarray(step.result.scores.gain_milli) / 1000
    assert np.allclose(gain, 1 / np.asarray(DRIFT_GAIN), atol=0.02)
    # and every old pixel outside the seam zone is the photo's, bit for bit
    got, want = to_canonical(canvas, direction), to_canonical(photo, direction)
    kept = got.shape[1] - L - ov
    assert np.array_equal(got[:, :kept], want[:, :kept])


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_hard_shows_the_drift(photo, direction) -> None:
    canvas, step = regrow(photo, direction, L, seam="hard", seed=1)
    score, own, colour = seam_quality(canvas, photo, direction, L, step.recipe.context_px)
    band = to_canonical(photo, direction)[:, -L:].reshape(-1, 3).mean(axis=0)
    drift = np.abs(band * (np.asarray(DRIFT_GAIN) - 1) + np.asarray(DRIFT_OFFSET))
    assert np.all(np.abs(colour - drift) < 1.5), (colour, drift)
    assert colour.max() > 5 * COLOUR_LEVELS_MAX
    assert score > 1.3 * own  # a visible step


def test_colour_error_does_not_accumulate_over_ten_steps(photo) -> None:
    truth = photo[:, :500]
    canvas, step = regrow(truth, "right", 30, steps=10, seam="match", seed=1)
    assert canvas.shape == truth.shape
    errors = [
        np.abs(
            canvas[:, x : x + 30].reshape(-1, 3).mean(axis=0)
            - truth[:, x : x + 30].reshape(-1, 3).mean(axis=0)
        ).max()
        for x in range(200, 500, 30)
    ]
    assert max(errors) <= COLOUR_LEVELS_MAX, errors
    assert errors[-1] <= COLOUR_LEVELS_MAX
    c = step.recipe.context_px
    for x in range(200, 500, 30):  # every one of the ten seams
        score = seam_score(canvas[:, x - c : x + 30], c)
        own = seam_score(truth[:, x - c : x + 30], c)
        assert score <= SEAM_RATIO_MAX * own, (x, score, own)
    assert np.array_equal(canvas[:, :168], truth[:, :168])  # the start image, minus one zone
