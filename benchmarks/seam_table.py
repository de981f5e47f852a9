"""Seam strategies compared where the truth is known; prints a markdown table.

A band of fixtures/photo.png is cut off and grown back by TruthBackend (the true
pixels after a gpt-image-like drift: gain 1.08/0.95/1.05, offset +10/-6/+4, blur 0.8).
For each strategy and direction: the seam score over the photo's own score at the
same place (1.00 = as invisible as the uncut photo) and the new band's mean colour
error in levels (worst channel). The last columns chain 10 steps of 30 px to the right
(from a 200 px wide crop): the worst of its 10 seams, and the last band's colour error.

Run: ``.venv/bin/python benchmarks/seam_table.py [--length 128] [--overlap 32]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exquisite_store import imageio  # noqa: E402
from exquisite_store.geometry.orient import DIRECTIONS  # noqa: E402
from exquisite_store.geometry.scores import seam_score  # noqa: E402
from exquisite_store.geometry.seams import SEAMS  # noqa: E402
from tests.fakes.backends import regrow, seam_quality  # noqa: E402


def measure(truth, direction: str, length: int, seam: str, steps: int = 1, **params):
    """``(seam ratio, worst-channel colour error)`` of one regrowth."""
    canvas, step = regrow(truth, direction, length, steps=steps, seam=seam, seed=1, **params)
    score, own, colour = seam_quality(canvas, truth, direction, length, step.recipe.context_px)
    return score / own, float(colour.max())


def measure_chain(truth, seam: str, start: int = 200, length: int = 30, steps: int = 10):
    """Worst seam ratio over every seam of a chain to the right, and the last band's error."""
    canvas, step = regrow(truth, "right", length, steps=steps, seam=seam, seed=1)
    c = step.recipe.context_px
    ratios = [
        seam_score(canvas[:, x - c : x + length], c) / seam_score(truth[:, x - c : x + length], c)
        for x in range(start, start + steps * length, length)
    ]
    _, _, colour = seam_quality(canvas, truth, "right", length, c)
    return max(ratios), float(colour.max())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=128, help="extension L in px")
    ap.add_argument("--overlap", type=int, default=32, help="seam zone in px")
    args = ap.parse_args()
    photo = imageio.read_image_file(str(ROOT / "fixtures" / "photo.png"))

    print(f"L = {args.length}, overlap = {args.overlap}, photo 512x384; ratio = seam score /")
    print("the uncut photo's own score there (<= 1.15 passes); error = |mean colour| levels\n")
    head = " | ".join(f"{d} ratio | {d} error" for d in DIRECTIONS)
    print(f"| seam | {head} | worst ratio | worst error | right x10 ratio | right x10 error |")
    print("|---" * (3 + 2 * len(DIRECTIONS) + 2) + "|")
    summary = []
    for seam in SEAMS:
        cells, ratios, errors = [], [], []
        for d in DIRECTIONS:
            ratio, error = measure(photo, d, args.length, seam, overlap_px=args.overlap)
            ratios.append(ratio)
            errors.append(error)
            cells.append(f"{ratio:.2f} | {error:.1f}")
        chain_ratio, chain_error = measure_chain(photo[:, :500], seam)
        print(
            f"| {seam} | {' | '.join(cells)} | {max(ratios):.2f} | {max(errors):.1f} | "
            f"{chain_ratio:.2f} | {chain_error:.1f} |"
        )
        summary.append(f"{seam} {max(ratios):.2f}x / {max(errors):.1f} levels")
    print("SUMMARY seams (worst seam ratio / colour error): " + ", ".join(summary))


if __name__ == "__main__":
    main()
