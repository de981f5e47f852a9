"""The deterministic prompt builder: same inputs, same bytes; stored verbatim."""

from __future__ import annotations

SIDES = {"right": "right", "left": "left", "up": "top", "down": "bottom"}
DEFAULT_SCENE = "Continue the scene naturally."
PROMPT_VERSION = 1


def build_prompt(
    user_text: str,
    *,
    direction: str,
    extension_px: int,
    context_px: int,
    band_px: int,
    frame_width: int,
    frame_height: int,
) -> str:
    """The final prompt: the user's text, then the geometry and the invariant clauses."""
    side = SIDES[direction]
    scene = " ".join(user_text.split()) or DEFAULT_SCENE
    across = "tall" if direction in ("right", "left") else "wide"
    lines = [
        scene,
        "",
        "Outpainting instructions:",
        f"- This {frame_width}x{frame_height} image shows a {context_px}px strip of a larger "
        f"{band_px}px-{across} picture; the transparent area of the mask along its {side} edge "
        f"({extension_px}px of the picture) is new canvas where the picture continues {direction}.",
        "- Paint only that area, as a seamless continuation of what is visible: the same "
        "lighting, colour palette, perspective, texture and style, with lines and shapes "
        "running on across the edge.",
        "- No border, frame, seam, gap, text, watermark or change of scale at the join.",
        "- Keep every pixel outside the transparent area exactly as it is.",
    ]
    return "\n".join(lines)


def build_repair_prompt(
    user_text: str,
    *,
    direction: str,
    width_px: int,
    band_px: int,
    frame_width: int,
    frame_height: int,
) -> str:
    """The final prompt of a seam repair: repaint the masked band across an old seam."""
    scene = " ".join(user_text.split()) or "Keep the scene as it is."
    across = "vertical" if direction in ("right", "left") else "horizontal"
    lines = [
        scene,
        "",
        "Seam repair instructions:",
        f"- This {frame_width}x{frame_height} image shows part of a larger {band_px}px picture "
        f"with a visible {across} seam; the transparent area of the mask is a {width_px}px "
        f"{across} band centred on that seam.",
        "- Repaint only that band so the picture runs on across it without any visible join: "
        "match the lighting, colour, texture, perspective and lines on both of its sides.",
        "- No border, frame, seam, gap, text, watermark or change of scale.",
        "- Keep every pixel outside the transparent area exactly as it is.",
    ]
    return "\n".join(lines)
