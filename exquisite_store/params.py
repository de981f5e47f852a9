"""What a step accepts: every parameter's vocabulary and limits, defined once.

``manifests.StepParams`` is typed with these; geometry, the CLI's help, the viewer's
form and the parser all read them from here (pure: no I/O, no imports of the project).
"""

from __future__ import annotations

from typing import Literal, get_args

Direction = Literal["right", "left", "up", "down"]
SeamStrategy = Literal["hard", "feather", "match"]
ImmutablePolicy = Literal["outside-seam", "all-old"]
BackendName = Literal["patchmatch", "patchmatch-fast", "replay", "openai"]
#: every quality any backend knows; each model's own list is checked by its backend
Quality = Literal["auto", "low", "medium", "high", "xhigh", "max"]
InputFidelity = Literal["low", "high"]

DIRECTIONS: tuple[str, ...] = get_args(Direction)
SEAMS: tuple[str, ...] = get_args(SeamStrategy)
IMMUTABLE_POLICIES: tuple[str, ...] = get_args(ImmutablePolicy)
BACKENDS: tuple[str, ...] = get_args(BackendName)
QUALITIES: tuple[str, ...] = get_args(Quality)
INPUT_FIDELITIES: tuple[str, ...] = get_args(InputFidelity)

#: new pixels of one step (every model's frame is at most 3840 px on a side)
MAX_EXTENSION_PX = 4096
#: context band shown to the backend (fitted into its frame, scaled when it must be)
MAX_CONTEXT_PX = 16384
MAX_N = 10
MAX_SEED = 2**63 - 1
MAX_MODEL_ID = 64
#: the user's prompt text; the final prompt adds about 700 characters of instructions
MAX_PROMPT = 30_000
