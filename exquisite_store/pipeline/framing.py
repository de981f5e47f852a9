"""Frame policies seen from the canonical orientation of a step."""

from __future__ import annotations

import dataclasses

from exquisite_store.geometry.frames import FramePolicy


def oriented_policy(policy: FramePolicy, direction: str) -> FramePolicy:
    """The policy for a canonical frame that is sent rotated back to the plane.

    The model sees the frame upright; for up/down the canonical frame is the sent
    frame turned a quarter, so sizes, side limits and aspect limits are transposed.
    """
    if direction in ("right", "left") or policy.kind == "any":
        return policy
    return dataclasses.replace(
        policy,
        sizes=tuple((h, w) for w, h in policy.sizes),
        max_w=policy.max_h,
        max_h=policy.max_w,
        min_aspect_milli=-(-1_000_000 // policy.max_aspect_milli),
        max_aspect_milli=1_000_000 // policy.min_aspect_milli,
    )
