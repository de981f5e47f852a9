"""How far each branch's colour has wandered: against the session's root and seam by seam.

``match`` fits every band's colour to its parent's context, so a small error at each
seam could add up along a branch unseen: each step would look right against its
parent. This report anchors on the root instead: each band's mean colour against the
start image's, and the colour casts measured at every seam of the branch added up
(an upper bound of how far seam errors can have carried the colour).
"""

from __future__ import annotations

from dataclasses import dataclass

from exquisite_store.ids import ObjectId
from exquisite_store.manifests import SeamCheck, Step
from exquisite_store.store import Store


@dataclass(frozen=True)
class StepDrift:
    """One step of a branch: its band against the root, its seam's cast, how the model moved."""

    step: ObjectId
    direction: str
    band_vs_root: tuple[float, ...]
    cast: float
    accumulated_cast: float
    shift: tuple[float, float]
    detail: float


@dataclass(frozen=True)
class BranchDrift:
    """A branch: its steps (root first), the root's mean colour, its worst and last drift."""

    branch: str
    head: ObjectId
    root_mean: tuple[float, ...]
    steps: list[StepDrift]
    unmeasured: int

    @property
    def last_vs_root(self) -> float:
        """The last measured band's worst channel against the root, in levels (0 if none)."""
        return (
            max((abs(v) for v in self.steps[-1].band_vs_root), default=0.0) if self.steps else 0.0
        )

    @property
    def accumulated_cast(self) -> float:
        """The seam casts of the branch, added up (levels)."""
        return self.steps[-1].accumulated_cast if self.steps else 0.0


def branch_drift(store: Store, session: str, branch: str) -> BranchDrift:
    """The drift report of one branch (steps made before issue 15 count as unmeasured)."""
    head = store.refs.head(session, branch)
    chain = list(reversed(list(store.history(head))))
    root_id, root = chain[0]
    pixels = store.canvas_pixels(root)[:, :, :3]
    root_mean = tuple(float(v) for v in pixels.reshape(-1, 3).mean(axis=0))
    rows: list[StepDrift] = []
    unmeasured, total = 0, 0.0
    for sid, step in chain[1:]:
        check = _check(step)
        if check is None:
            unmeasured += 1
            continue
        total += check.colour_milli / 1000
        band = tuple(m / 1000 - r for m, r in zip(check.band_mean_milli, root_mean, strict=False))
        rows.append(
            StepDrift(
                step=sid,
                direction=step.recipe.direction if step.recipe else "",
                band_vs_root=band,
                cast=check.colour_milli / 1000,
                accumulated_cast=total,
                shift=(check.shift_x_milli / 1000, check.shift_y_milli / 1000),
                detail=check.detail_permille / 1000,
            )
        )
    return BranchDrift(branch, head, root_mean, rows, unmeasured)


def session_drift(store: Store, session: str) -> list[BranchDrift]:
    """The drift report of every branch of a session, by name."""
    return [branch_drift(store, session, b) for b in sorted(store.refs.branches(session))]


def _check(step: Step) -> SeamCheck | None:
    """The step's seam check, or None for a step recorded without one."""
    seam = step.result.scores.seam
    if isinstance(seam, SeamCheck) and seam.band_mean_milli:
        return seam
    return None


def worst_channel(values: tuple[float, ...]) -> float:
    """The value of largest magnitude, sign kept."""
    return float(max(values, key=abs)) if values else 0.0
