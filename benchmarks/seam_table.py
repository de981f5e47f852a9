"""Seam strategies on real photos where the truth is known; prints the README's tables.

Photos: scikit-image's bundled samples (tests/fakes/photos.py), central 320 x 320, in
two sets: the ones looked at while building (tuning) and the held-out ones. A band of
L = 96 is cut off and grown back by TruthBackend: the true pixels after a gpt-image-like
drift (gain 1.08/0.95/1.05, offset +10/-6/+4, blur 0.8) and a shift of the whole frame
by 1.5 px right, 1 px up. Ratio: the seam's jump score over the uncut photo's own at
the same place (1.00: as invisible as any other column); error: the band's mean colour
against the truth, worst channel, in levels, leaving out pixels the drift clips. The
chain: ten steps of 30 px to the right (400 px wide crops); band 1 and band 10 errors.

"match, main" is match as it was before issue 15 (no registration, the colour fit on
every pixel), run in the same process by swapping those two functions back in.

The badge: the seam score recorded by each step against the true error (the same
defects measured with the truth, see tests/fakes/seam_figures.py), Spearman's rank
correlation over 6 fakes x 3 strategies per photo; the jump score (the old badge) beside.

Run: ``.venv/bin/python benchmarks/seam_table.py [--quick]``
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import exquisite_store.geometry.seams as seams_module  # noqa: E402
import exquisite_store.pipeline.candidate as candidate_module  # noqa: E402
from exquisite_store.geometry.defects import defect_score  # noqa: E402
from exquisite_store.geometry.orient import DIRECTIONS  # noqa: E402
from exquisite_store.geometry.register import Registration, register, unshift  # noqa: E402
from exquisite_store.geometry.scores import seam_score  # noqa: E402
from exquisite_store.geometry.seams import div_round  # noqa: E402
from tests.fakes import seam_figures as figures  # noqa: E402
from tests.fakes.backends import TruthBackend  # noqa: E402
from tests.fakes.photos import HELD_OUT, TUNING, photo  # noqa: E402

L = 96


def main_fit(source: np.ndarray, target: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The colour fit as main had it: least squares on every pixel."""
    n = source.shape[0] * source.shape[1]
    gains, offsets = [], []
    for c in range(source.shape[2]):
        x, y = source[:, :, c].astype(np.int64), target[:, :, c].astype(np.int64)
        sx, sy, sxx, sxy = int(x.sum()), int(y.sum()), int((x * x).sum()), int((x * y).sum())
        den = n * sxx - sx * sx
        gain = 1000 if den == 0 else div_round(1000 * (n * sxy - sx * sy), den)
        gain = min(max(gain, seams_module.GAIN_MIN_MILLI), seams_module.GAIN_MAX_MILLI)
        gains.append(gain)
        offsets.append(div_round(1000 * sy - gain * sx, n))
    return tuple(gains), tuple(offsets)


@contextlib.contextmanager
def as_on_main():
    """Match without registration and with the per-pixel fit, as before issue 15."""
    saved = candidate_module.register, seams_module.fit_colour
    candidate_module.register = lambda truth, model: Registration(0, 0, 0, measured=False)
    seams_module.fit_colour = main_fit
    try:
        yield
    finally:
        candidate_module.register, seams_module.fit_colour = saved


ROWS = [("hard", "hard", False), ("feather", "feather", False), ("match, main", "match", True)]
ROWS.append(("match", "match", False))


def strategy_row(names, seam: str, old: bool, chain: bool) -> dict:
    """Worst ratio / error per direction over ``names``, and the chain's figures."""
    ctx = as_on_main() if old else contextlib.nullcontext()
    with ctx:
        per_dir = {
            d: [figures.single(photo(n), d, L, seam, figures.SHIFTING) for n in names]
            for d in DIRECTIONS
        }
        chains = (
            [figures.chain(photo(n, width=400), seam, figures.SHIFTING) for n in names]
            if chain
            else []
        )
    return {"per_dir": per_dir, "chains": chains}


def print_strategies(title: str, names, chain: bool) -> list[str]:
    """One table for a set of photos; returns SUMMARY fragments."""
    print(f"\n{title}: {', '.join(names)}\n")
    head = " | ".join(DIRECTIONS)
    print(
        f"| seam | {head} | worst ratio | worst error | median error | "
        "chain band 1 -> 10 (median / worst) | chain worst ratio |"
    )
    print("|---" * (len(DIRECTIONS) + 6) + "|")
    summary = []
    for label, seam, old in ROWS:
        row = strategy_row(names, seam, old, chain)
        cells, ratios, errors = [], [], []
        for d in DIRECTIONS:
            figs = row["per_dir"][d]
            r, e = max(f.ratio for f in figs), max(f.error for f in figs)
            ratios += [f.ratio for f in figs]
            errors += [f.error for f in figs]
            cells.append(f"{r:.2f} / {e:.1f}")
        chain_cell, chain_ratio = "-", "-"
        if row["chains"]:
            first = [c[0][0] for c in row["chains"]]
            last = [c[0][-1] for c in row["chains"]]
            growth = [c[0][-1] - c[0][0] for c in row["chains"]]
            chain_cell = (
                f"{np.median(first):.1f} -> {np.median(last):.1f} / "
                f"{max(first):.1f} -> {max(last):.1f} (worst growth {max(growth):+.1f})"
            )
            chain_ratio = f"{max(c[1] for c in row['chains']):.2f}"
        print(
            f"| {label} | {' | '.join(cells)} | {max(ratios):.2f} | {max(errors):.1f} | "
            f"{np.median(errors):.1f} | {chain_cell} | {chain_ratio} |",
            flush=True,
        )
        summary.append(f"{label} {max(ratios):.2f}x/{max(errors):.1f}")
    return summary


def badge_table(names, size: int) -> tuple[float, float]:
    """Rank correlation of the badge and of the old jump score with the true error."""
    cases = [
        figures.badge_case(n, photo(n, size=size), f, s, DIRECTIONS[k % 4])
        for k, (n, f, s) in enumerate(
            (n, f, s) for n in names for f in figures.BADGE_FAKES for s in figures.BADGE_SEAMS
        )
    ]
    truth = [c.true_error for c in cases]
    raw = [c.raw for c in cases]
    colour = [c.colour for c in cases]
    badge = [c.badge for c in cases]
    jump = [c.jump for c in cases]
    out = []
    for label, score in (("badge (defects)", badge), ("jump score (old badge)", jump)):
        out.append(
            f"| {label} | {len(cases)} | {figures.spearman(score, truth):.2f} | "
            f"{figures.spearman(score, colour):.2f} | {figures.spearman(score, raw):.2f} |"
        )
    exact = [c.badge for c in cases if c.fake == "exact"]
    print("\n".join(out))
    print(f"(no-defect fake: badge median {np.median(exact):.2f}, max {max(exact):.2f})")
    return figures.spearman(badge, truth), figures.spearman(jump, truth)


def uncut(names) -> None:
    """The badge and the jump score on uncut photos at random cut positions."""
    rng = np.random.default_rng(0)
    badges, jumps = [], []
    for n in names:
        img = photo(n)
        for _ in range(20):
            seam = int(rng.integers(70, img.shape[1] - 64))
            strip = img[:, seam - 64 : seam + 64]
            badges.append(
                defect_score(strip[:, :64], strip[:, :64], strip, 64).score_permille / 1000
            )
            jumps.append(seam_score(strip, 64) / 1000)
    print(
        f"\nuncut photos, {len(badges)} random cuts: badge median {np.median(badges):.2f}, "
        f"max {max(badges):.2f}; jump score median {np.median(jumps):.2f}, max {max(jumps):.2f}"
    )


def timing() -> str:
    """Registration and the defect score of one 1024-row step (context 256, band 512)."""
    img = np.tile(photo("astronaut"), (4, 3, 1))[:1024, :768]
    fake = TruthBackend(img, parent_rect=None, direction="right", shift=figures.DRIFT_SHIFT)  # type: ignore[arg-type]
    moved = fake.drift(img)
    ctx, model = img[:, :256], moved[:, :256]
    times = {}
    for label, fn in (
        ("register", lambda: register(ctx, model)),
        ("unshift", lambda: unshift(moved, Registration(-16, 24, 0, True))),
        ("defect score", lambda: defect_score(ctx, model, img, 256)),
    ):
        fn()
        t0 = time.perf_counter()
        for _ in range(5):
            fn()
        times[label] = (time.perf_counter() - t0) / 5 * 1000
    line = ", ".join(f"{k} {v:.1f} ms" for k, v in times.items())
    print(f"\nper step, 1024 rows (context 256, band 512): {line}")
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="held-out photos only, no chains")
    args = ap.parse_args()
    summary = print_strategies("held-out photos", HELD_OUT, chain=not args.quick)
    if not args.quick:
        print_strategies("tuning photos", TUNING, chain=True)
    print("\nthe badge against the true error (Spearman), photos at 224 x 224:\n")
    print("| score | cases | true error | colour error | raw pixel error |")
    print("|---|---|---|---|---|")
    rho, rho_old = badge_table(HELD_OUT, 224)
    if not args.quick:
        print("(tuning photos:)")
        badge_table(TUNING, 224)
    uncut(HELD_OUT)
    line = timing()
    print(
        "SUMMARY seams on held-out photos, drifting + shifting fake (worst ratio / error): "
        + ", ".join(summary)
        + f"; badge rank correlation {rho:.2f} (old {rho_old:.2f}); {line}"
    )


if __name__ == "__main__":
    main()
