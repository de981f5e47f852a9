"""Pure geometry of a step: orientation, planning, frames, seams and scores (no I/O)."""

from exquisite_store.geometry.frames import (
    ANY,
    FramePlan,
    FramePolicy,
    fit_frame,
    fixed,
    multiple_of,
)
from exquisite_store.geometry.orient import DIRECTIONS, from_canonical, to_canonical
from exquisite_store.geometry.plan import (
    IMMUTABLE_POLICIES,
    MAX_EXTENSION_PX,
    StepPlan,
    build_frame,
    plan_step,
    to_channels,
    unframe,
)
from exquisite_store.geometry.rect import Rect
from exquisite_store.geometry.scores import DriftScores, drift_scores, seam_score
from exquisite_store.geometry.seams import (
    SEAMS,
    SeamResult,
    apply_seam,
    correct_colour,
    fit_colour,
)

__all__ = [
    "ANY",
    "DIRECTIONS",
    "IMMUTABLE_POLICIES",
    "MAX_EXTENSION_PX",
    "SEAMS",
    "DriftScores",
    "FramePlan",
    "FramePolicy",
    "Rect",
    "SeamResult",
    "StepPlan",
    "apply_seam",
    "build_frame",
    "correct_colour",
    "drift_scores",
    "fit_colour",
    "fit_frame",
    "fixed",
    "from_canonical",
    "multiple_of",
    "plan_step",
    "seam_score",
    "to_canonical",
    "to_channels",
    "unframe",
]
