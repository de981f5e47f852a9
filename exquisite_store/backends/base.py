"""The backend protocol: a frame, a mask and a prompt in; encoded images out.

A backend knows images, masks, prompts and frame sizes, never directions.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from exquisite_store.geometry.frames import ANY, FramePolicy
from exquisite_store.manifests import Usage


@dataclass(frozen=True)
class BackendRequest:
    """One call: ``image`` HxWx3 RGB, ``mask`` HxWx4 RGBA (alpha 0 = paint here)."""

    image: np.ndarray
    mask: np.ndarray
    prompt: str
    n: int
    seed: int
    model: str
    request_id: str
    quality: str = "auto"
    params: dict[str, str] = field(default_factory=dict)

    @property
    def width(self) -> int:
        """Frame width."""
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        """Frame height."""
        return int(self.image.shape[0])


@dataclass
class BackendResult:
    """What came back: encoded images as returned, usage, cost, provider metadata."""

    images: list[bytes]
    model: str = ""
    usage: Usage = field(default_factory=Usage)
    cost_micro_usd: int = 0
    provider_request_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    calls: int = 1


class Backend(Protocol):
    """What the pipeline needs of a backend."""

    name: str
    #: the backend ignores prompt text (shown in the UI)
    ignores_prompt: bool
    #: the backend (or its client) retries transient errors itself
    retries_inside: bool

    def frame_policy(self, model: str) -> FramePolicy:
        """Which frame sizes the model accepts."""
        ...

    def resolve_model(self, model: str) -> str:
        """The model id to use (validating it); '' where the backend has none."""
        ...

    def estimate_cost(self, request: BackendRequest) -> int:
        """Micro-dollars this request is expected to cost."""
        ...

    def generate(
        self, request: BackendRequest, cancel: threading.Event | None = None
    ) -> BackendResult:
        """Run the request; raise a StepFailure subclass on failure."""
        ...


class LocalBackend:
    """Defaults for backends that run here: any frame size, no model, no cost."""

    name = "local"
    ignores_prompt = True
    retries_inside = False

    def frame_policy(self, model: str) -> FramePolicy:
        """Any size."""
        return ANY

    def resolve_model(self, model: str) -> str:
        """Local backends have no model choice."""
        return ""

    def estimate_cost(self, request: BackendRequest) -> int:
        """Free."""
        return 0
