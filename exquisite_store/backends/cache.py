"""The run cache: a request this store has already had answered is not made again.

A request id names what is sent (frame, mask, final prompt, model, n, seed, quality and
options), so two steps with the same id would send the model the very same thing. The
cache answers the second from the recorded response: no call, no cost, the same output
images (and so the same output ids), and the response record says where it came from
(``cached_response``). Only steps with an explicit seed can hit it (a random seed is a
new request); ``--fresh`` makes a new call anyway.
"""

from __future__ import annotations

import threading

from exquisite_store.backends.base import Backend, BackendRequest, BackendResult
from exquisite_store.errors import ExqError
from exquisite_store.geometry.frames import FramePolicy
from exquisite_store.manifests import BackendResponse
from exquisite_store.store import Store


class CachedBackend:
    """``inner``, answered from the store wherever it already answered the same request."""

    def __init__(self, inner: Backend, store: Store) -> None:
        self.inner = inner
        self.store = store
        self.name = inner.name
        self.ignores_prompt = inner.ignores_prompt
        self.retries_inside = inner.retries_inside

    def cached(self, request_id: str) -> str | None:
        """The recorded response to ``request_id`` whose every output is still stored."""
        rid = self.store.find_cached_response(request_id)
        if rid is None:
            return None
        try:
            rec = self.store.objects.get_manifest(rid, BackendResponse)
        except ExqError:  # swept by gc or damaged: not an answer
            return None
        outputs = rec.output_ids
        if not outputs or not all(oid and self.store.objects.has(oid) for oid in outputs):
            return None
        return rid

    def frame_policy(self, model: str) -> FramePolicy:
        """The inner backend's frames: the request must be built exactly as it would be."""
        return self.inner.frame_policy(model)

    def resolve_model(self, model: str) -> str:
        """The inner backend's model."""
        return self.inner.resolve_model(model)

    def estimate_cost(self, request: BackendRequest) -> int:
        """Nothing for a request answered before; the inner backend's estimate otherwise."""
        if self.cached(request.request_id) is not None:
            return 0
        return self.inner.estimate_cost(request)

    def generate(
        self, request: BackendRequest, cancel: threading.Event | None = None
    ) -> BackendResult:
        """The recorded answer's images as they were stored, or the inner backend's call."""
        rid = self.cached(request.request_id)
        if rid is None:
            return self.inner.generate(request, cancel)
        rec = self.store.objects.get_manifest(rid, BackendResponse)
        return BackendResult(
            images=[self.store.objects.get_bytes(oid)[1] for oid in rec.output_ids],
            model=rec.model,
            cost_micro_usd=0,
            provider_request_id=rec.provider_request_id,
            metadata={"cached_response": rid},
            calls=0,
        )

    def close(self) -> None:
        """Close the inner backend's connections, if it keeps any."""
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()
