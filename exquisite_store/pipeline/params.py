"""Step parameters parsed through ``StepParams``: one parser for argv, forms, JSON and defaults.

``msgspec.convert(..., strict=False)`` turns ``"512"`` into 512 and checks every
``Literal`` and ``Meta`` bound; a failure becomes a ``ConfigError`` that names the
field, worded the same whichever front end sent it. The recipe <-> parameters
mapping lives here too, once.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from exquisite_store.errors import ConfigError
from exquisite_store.manifests import Recipe, StepParams
from exquisite_store.params import MAX_PROMPT

#: short names accepted by ``exq defaults KEY=VALUE`` and used by the CLI's options
ALIASES = {
    "px": "extension_px",
    "overlap": "overlap_px",
    "context": "context_px",
    "immutable": "immutable_policy",
}
FIELDS: tuple[str, ...] = StepParams.__struct_fields__


@dataclass(frozen=True)
class FieldSpec:
    """What one parameter accepts, for help texts and form controls."""

    name: str
    kind: str  # "choice", "int" or "text"
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    max_length: int | None = None
    optional: bool = False
    default: Any = None

    def describe(self) -> str:
        """What the field must be, as the end of a sentence."""
        if self.kind == "choice":
            return f"must be one of {', '.join(self.choices)}"
        if self.kind == "int":
            return f"must be between {self.minimum} and {self.maximum}"
        return f"must be at most {self.max_length} characters"


def _spec(name: str, hint: Any, default: Any) -> FieldSpec:
    optional = False
    args = [a for a in typing.get_args(hint) if a not in (type(None), msgspec.UnsetType)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        optional = True
        hint = args[0]
    if typing.get_origin(hint) is typing.Literal:
        return FieldSpec(name, "choice", typing.get_args(hint), optional=optional, default=default)
    base, *meta = typing.get_args(hint) if typing.get_origin(hint) is typing.Annotated else (hint,)
    m = meta[0] if meta else msgspec.Meta()
    if base is int:
        return FieldSpec(
            name, "int", minimum=m.ge, maximum=m.le, optional=optional, default=default
        )
    return FieldSpec(name, "text", max_length=m.max_length, optional=optional, default=default)


def _specs() -> dict[str, FieldSpec]:
    hints = typing.get_type_hints(StepParams, include_extras=True)
    defaults = StepParams()
    return {f: _spec(f, hints[f], getattr(defaults, f)) for f in FIELDS}


SPECS: dict[str, FieldSpec] = _specs()
_AT = re.compile(r"at `\$\.(\w+)`")
_UNKNOWN = re.compile(r"unknown field `([^`]*)`")


def _error(exc: msgspec.ValidationError, raw: Mapping[str, Any]) -> ConfigError:
    """A ConfigError naming the field, worded from its spec (not from msgspec's text)."""
    text = str(exc)
    unknown = _UNKNOWN.search(text)
    if unknown:
        return ConfigError(f"unknown step parameter {unknown.group(1)!r:.60}", field=unknown[1])
    at = _AT.search(text)
    if at is None or at.group(1) not in SPECS:
        return ConfigError(f"invalid step parameters: {text}")
    spec = SPECS[at.group(1)]
    value = str(raw.get(spec.name))  # quoted alike whether it came as 0 or "0"
    if spec.kind == "int" and text.startswith("Expected `int") and "got" in text:
        return ConfigError(
            f"{spec.name} must be a whole number, not {value!r:.40}", field=spec.name
        )
    return ConfigError(f"{spec.name} {spec.describe()}, not {value!r:.40}", field=spec.name)


def merge(defaults: StepParams, overrides: Mapping[str, Any]) -> StepParams:
    """``defaults`` with ``overrides`` applied; values may be strings (argv, forms, JSON).

    ``None`` and ``""`` mean "not given" (keep the default). ConfigError names the
    first bad field.
    """
    raw = msgspec.to_builtins(defaults)
    for key, value in overrides.items():
        if value is None or value == "":
            continue
        raw[ALIASES.get(key, key)] = value
    try:
        return msgspec.convert(raw, StepParams, strict=False)
    except msgspec.ValidationError as exc:
        raise _error(exc, raw) from None


def parse_settings(settings: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` words (``exq defaults``) as changes; ``none`` or empty clears a field."""
    changes: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"expected KEY=VALUE, not {item!r:.60}", field=item[:60])
        key = ALIASES.get(key, key)
        if key not in SPECS:
            raise ConfigError(f"unknown step parameter {key!r:.60}", field=key[:60])
        changes[key] = value
    return changes


def change_defaults(defaults: StepParams, changes: Mapping[str, Any]) -> StepParams:
    """New session defaults: ``changes`` applied; ``None``/``""``/``"none"`` clears a field.

    Only fields that may be empty can be cleared (``seed``, ``context_px``,
    ``input_fidelity``); clearing any other is a ConfigError naming it.
    """
    cleared = [k for k, v in changes.items() if v is None or v in ("", "none")]
    for key in cleared:
        if not SPECS[key].optional:
            raise ConfigError(f"{key} {SPECS[key].describe()}, not empty", field=key)
    merged = merge(defaults, {k: v for k, v in changes.items() if k not in cleared})
    blanks = {k: (msgspec.UNSET if k == "input_fidelity" else None) for k in cleared}
    return msgspec.structs.replace(merged, **blanks)


def check_prompt(prompt: Any) -> str:
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


def check_against_canvas(params: StepParams, width: int, height: int) -> None:
    """Checks that need the parent canvas: the overlap must fit inside it."""
    extent = width if params.direction in ("right", "left") else height
    if params.overlap_px >= extent:
        raise ConfigError(
            f"overlap_px {params.overlap_px} must be smaller than the canvas's "
            f"{extent}px along the {params.direction} axis",
            field="overlap_px",
        )


def extra_params(params: StepParams) -> dict[str, str]:
    """Parameters that only some models accept, as they are recorded and sent."""
    if params.input_fidelity is msgspec.UNSET:
        return {}
    return {"input_fidelity": str(params.input_fidelity)}


def recipe_params(recipe: Recipe) -> dict[str, Any]:
    """The parameters a recipe was made with, to be merged again (reproduce, retry).

    Raw values, not a StepParams: ``merge`` checks them, so a recipe made by a backend
    this installation does not know is a ConfigError naming ``backend``.
    """
    return {
        "direction": recipe.direction,
        "extension_px": recipe.extension_px,
        "overlap_px": recipe.overlap_px,
        "context_px": recipe.context_px,
        "immutable_policy": recipe.immutable_policy,
        "seam": recipe.seam,
        "backend": recipe.backend,
        "model": recipe.model,
        "quality": recipe.quality,
        "n": recipe.n,
        "seed": recipe.seed,
        **{k: v for k, v in recipe.params.items() if k in SPECS},
    }
