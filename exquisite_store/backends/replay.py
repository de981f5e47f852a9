"""Replay: answer a request from a stored response with the same request id."""

from __future__ import annotations

import threading
from collections.abc import Callable

from exquisite_store import imageio
from exquisite_store.backends.base import BackendRequest, BackendResult
from exquisite_store.errors import PermanentBackendError
from exquisite_store.geometry.frames import ANY, FramePolicy
from exquisite_store.manifests import BackendResponse
from exquisite_store.store.objects import ObjectStore


class ReplayBackend:
    """No model call and no cost: the recorded images, bit for bit."""

    name = "replay"
    ignores_prompt = True
    retries_inside = False

    def __init__(
        self,
        objects: ObjectStore,
        lookup: Callable[[str], str | None],
        policy: FramePolicy | None = None,
    ) -> None:
        self.objects = objects
        self.lookup = lookup
        self.policy = policy

    def frame_policy(self, model: str) -> FramePolicy:
        """The frame rule of the model that made the recording (any size for local ones).

        Frames must come out exactly as they were sent, or the request ids differ.
        """
        if self.policy is not None:
            return self.policy
        from exquisite_store.backends.models import MODELS

        return MODELS[model].frames if model in MODELS else ANY

    def resolve_model(self, model: str) -> str:
        """Keep the recorded model name."""
        return model

    def estimate_cost(self, request: BackendRequest) -> int:
        """Replays are free."""
        return 0

    def generate(
        self, request: BackendRequest, cancel: threading.Event | None = None
    ) -> BackendResult:
        """The stored response for ``request.request_id``; a miss is permanent."""
        rid = self.lookup(request.request_id)
        if rid is None:
            raise PermanentBackendError(
                f"replay has no recorded response for request {request.request_id[:12]}",
                request_id=request.request_id,
            )
        rec = self.objects.get_manifest(rid, BackendResponse)
        images = [
            imageio.encode_png(imageio.from_array(self.objects.get_image(oid)))
            for oid in rec.output_ids
        ]
        return BackendResult(
            images=images,
            model=rec.model,
            usage=rec.usage,
            cost_micro_usd=0,
            provider_request_id=rec.provider_request_id,
            metadata={"replayed_response": rid},
        )
