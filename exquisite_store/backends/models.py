"""The OpenAI image model table: ids, frame rules, options and prices, as data.

Prices are the published per-1M-token rates in micro-dollars (so $5.00 / 1M tokens
is 5_000_000); costs are computed in integers. Checked against the model pages on
2026-11-24: gpt-image-1-mini $2 / $2.50 / $8 (text in / image in / image out),
gpt-image-1.5 $5 / $8 / $32, gpt-image-2, 2.5 and 2.6 $5 / $8 / $30.
"""

from __future__ import annotations

from dataclasses import dataclass

from exquisite_store.errors import ConfigError
from exquisite_store.geometry.frames import FramePolicy, fixed, multiple_of

STANDARD_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))
FIXED = fixed(*STANDARD_SIZES)
ANY_16 = multiple_of(
    16, min_aspect_milli=334, max_aspect_milli=3000, max_w=3840, max_h=3840, max_pixels=3840 * 2160
)
#: Output image tokens of one 1024x1024 image by quality; other sizes scale by area.
#: ``auto`` is estimated as ``high`` so a budget is never under-estimated.
OUTPUT_TOKENS_1024 = {
    "low": 272,
    "medium": 1056,
    "high": 4160,
    "auto": 4160,
    "xhigh": 6240,
    "max": 8320,
}


@dataclass(frozen=True)
class ImageModel:
    """One model: what frames it takes, which options it accepts, what it costs."""

    id: str
    frames: FramePolicy
    qualities: tuple[str, ...]
    input_fidelity: tuple[str, ...]
    text_in: int
    image_in: int
    image_out: int
    general: bool = True
    generation: tuple[int, int] = (1, 0)


_Q = ("auto", "low", "medium", "high")
_Q25 = (*_Q, "xhigh", "max")
_P1M = (2_000_000, 2_500_000, 8_000_000)  # gpt-image-1-mini
_P15 = (5_000_000, 8_000_000, 32_000_000)  # gpt-image-1.5
_P2 = (5_000_000, 8_000_000, 30_000_000)  # gpt-image-2 and later


def _model(
    id_: str,
    frames: FramePolicy,
    qualities: tuple[str, ...],
    fidelity: tuple[str, ...],
    prices: tuple[int, int, int],
    generation: tuple[int, int],
    general: bool = True,
) -> ImageModel:
    return ImageModel(
        id_, frames, qualities, fidelity, *prices, general=general, generation=generation
    )


# dated snapshots and aliases are listed but never the default (general=False)
MODELS: dict[str, ImageModel] = {
    m.id: m
    for m in (
        _model("gpt-image-1-mini", FIXED, _Q, ("low",), _P1M, (1, 0), general=False),
        _model("gpt-image-1.5", FIXED, _Q, ("low", "high"), _P15, (1, 5)),
        _model("chatgpt-image-latest", FIXED, _Q, ("low", "high"), _P15, (1, 5), general=False),
        _model("gpt-image-2", ANY_16, _Q, (), _P2, (2, 0)),
        _model("gpt-image-2-2026-04-21", ANY_16, _Q, (), _P2, (2, 0), general=False),
        _model("gpt-image-2.5-flare", ANY_16, _Q25, (), _P2, (2, 5)),
        _model("gpt-image-2.5-sunburst", ANY_16, _Q25, (), _P2, (2, 5)),
        _model("gpt-image-2.5-flare-2026-09-08", ANY_16, _Q25, (), _P2, (2, 5), general=False),
        _model("gpt-image-2.5-sunburst-2026-09-08", ANY_16, _Q25, (), _P2, (2, 5), general=False),
        _model("gpt-image-2.6-flare", ANY_16, _Q25, (), _P2, (2, 6)),
        _model("gpt-image-2.6-sunburst", ANY_16, _Q25, (), _P2, (2, 6)),
    )
}
RETIRED = {
    "gpt-image-1": "gpt-image-1 was shut down on 2026-10-23; use gpt-image-2.5-sunburst or "
    "gpt-image-2.5-flare (or a newer model)",
    "dall-e-2": "dall-e-2 was retired on 2026-05-12; use a GPT image model such as "
    "gpt-image-2.6-sunburst",
    "dall-e-3": "dall-e-3 was retired on 2026-05-12; use a GPT image model such as "
    "gpt-image-2.6-sunburst",
}


def installed_sdk_models() -> tuple[str, ...]:
    """Model ids the installed ``openai`` package knows (its ``ImageModel`` literal)."""
    import typing

    from openai.types.image_model import ImageModel as SdkImageModel

    return tuple(typing.get_args(SdkImageModel))


def default_model() -> str:
    """The newest general model (by the generation in its name) the installed SDK lists.

    Among equally new ones, sunburst (the precise-editing variant) wins over flare:
    outpainting is an edit that must leave the unmasked pixels alone.
    """
    known = set(installed_sdk_models())
    candidates = [m for m in MODELS.values() if m.general and m.id in known]
    return max(candidates, key=lambda m: (m.generation, "sunburst" in m.id, m.id)).id


def get_model(model_id: str) -> ImageModel:
    """The table entry of a model; ConfigError for retired and unknown ids."""
    if model_id in RETIRED:
        raise ConfigError(RETIRED[model_id], field="model")
    try:
        return MODELS[model_id]
    except KeyError:
        raise ConfigError(
            f"unknown OpenAI image model {model_id!r}; known: {', '.join(sorted(MODELS))}",
            field="model",
        ) from None


def output_tokens(model: ImageModel, width: int, height: int, quality: str) -> int:
    """Estimated output tokens of one image of this size and quality."""
    per = OUTPUT_TOKENS_1024.get(quality, OUTPUT_TOKENS_1024["high"])
    return -(-per * width * height // (1024 * 1024))


def image_input_tokens(width: int, height: int) -> int:
    """Estimated tokens of one input image (512-pixel tiles, as vision inputs are counted)."""
    return 65 + 129 * (-(-width // 512)) * (-(-height // 512))


def cost_micro_usd(model: ImageModel, text_in: int, image_in: int, out: int) -> int:
    """Integer micro-dollars of a usage, rounded up."""
    total = text_in * model.text_in + image_in * model.image_in + out * model.image_out
    return -(-total // 1_000_000)
