"""Step parameters: session defaults + per-step overrides, validated field by field."""

from __future__ import annotations

from typing import Any

import msgspec

from exquisite_store.errors import ConfigError
from exquisite_store.geometry.orient import DIRECTIONS
from exquisite_store.geometry.seams import SEAMS
from exquisite_store.manifests import StepParams

BACKENDS = ("patchmatch", "replay", "openai")
IMMUTABLE_POLICIES = ("outside-seam", "all-old")
#: every quality any backend knows; each model's own list is checked by its backend
QUALITIES = ("auto", "low", "medium", "high", "xhigh", "max")
MAX_N = 10
MAX_EXTENSION_PX = 4096
MAX_SEED = 2**63 - 1
#: the user's prompt text; the final prompt adds about 700 characters of instructions
MAX_PROMPT = 30_000


def check_prompt(prompt: str) -> str:
    """A prompt of at most MAX_PROMPT characters of valid text, without NUL."""
    if not isinstance(prompt, str) or len(prompt) > MAX_PROMPT or "\0" in prompt:
        raise ConfigError(
            f"the prompt must be at most {MAX_PROMPT} characters, without NUL", field="prompt"
        )
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (a JSON "\ud800" escape, a bad argv)
        raise ConfigError("the prompt is not valid Unicode text", field="prompt") from None
    return prompt


def _choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(
            f"{field} must be one of {', '.join(choices)}, not {value!r:.40}", field=field
        )
    return value


def _int(field: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{field} must be a whole number, not {value!r:.40}", field=field)
    if not lo <= value <= hi:
        raise ConfigError(f"{field} must be between {lo} and {hi}, not {value}", field=field)
    return value


def validate(params: StepParams) -> StepParams:
    """Check every field; ConfigError names the first bad one."""
    _choice("direction", params.direction, DIRECTIONS)
    _int("extension_px", params.extension_px, 1, MAX_EXTENSION_PX)
    _int("overlap_px", params.overlap_px, 0, MAX_EXTENSION_PX)
    if params.context_px is not None:
        _int("context_px", params.context_px, 1, 16384)
    _choice("immutable_policy", params.immutable_policy, IMMUTABLE_POLICIES)
    _choice("seam", params.seam, SEAMS)
    _choice("backend", params.backend, BACKENDS)
    _choice("quality", params.quality, QUALITIES)
    _int("n", params.n, 1, MAX_N)
    if params.seed is not None:
        _int("seed", params.seed, 0, MAX_SEED)
    if not isinstance(params.model, str) or len(params.model) > 64:
        raise ConfigError("model must be a model id of at most 64 characters", field="model")
    return params


def merge(defaults: StepParams, overrides: dict[str, Any]) -> StepParams:
    """Session defaults with the non-None ``overrides`` applied, validated."""
    known = set(StepParams.__struct_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"unknown step parameter {unknown[0]!r}", field=unknown[0])
    changes = {k: v for k, v in overrides.items() if v is not None}
    return validate(msgspec.structs.replace(defaults, **changes))


def check_against_canvas(params: StepParams, width: int, height: int) -> None:
    """Checks that need the parent canvas: the overlap must fit inside it."""
    extent = width if params.direction in ("right", "left") else height
    if params.overlap_px >= extent:
        raise ConfigError(
            f"overlap_px {params.overlap_px} must be smaller than the canvas's "
            f"{extent}px along the {params.direction} axis",
            field="overlap_px",
        )
