"""Phases generate and decode: call the backend, keep what it returned, decode it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from exquisite_store.backends.base import Backend, BackendResult
from exquisite_store.errors import StepFailure, TransientBackendError
from exquisite_store.manifests import BackendResponse, Response
from exquisite_store.pipeline.job import Job
from exquisite_store.pipeline.outputs import decode_output
from exquisite_store.pipeline.prepare import Prepared
from exquisite_store.store import Store


@dataclass(frozen=True)
class Generated:
    """The backend's answer: its record, the stored outputs, and each decoded (or why not)."""

    result: BackendResult
    response_id: str
    output_ids: tuple[str, ...]
    outputs: tuple[np.ndarray | StepFailure, ...]

    def billed(self) -> Response:
        """The whole call, as an attempt that failed before any candidate records it."""
        return Response(
            response_id=self.response_id,
            cost_micro_usd=self.result.cost_micro_usd,
            usage=self.result.usage,
            provider_request_id=self.result.provider_request_id,
        )

    def candidate(self, i: int) -> Response:
        """Candidate ``i``'s part: its output, and its share of the cost (the rest on 0)."""
        n, cost = len(self.outputs), self.result.cost_micro_usd
        return Response(
            response_id=self.response_id,
            output_id=self.output_ids[i],
            candidate=i,
            metadata_id="",
            usage=self.result.usage if i == 0 else type(self.result.usage)(),
            cost_micro_usd=cost // n + (cost % n if i == 0 else 0),
            provider_request_id=self.result.provider_request_id,
        )


def call_backend(
    backend: Backend,
    prepared: Prepared,
    run: Job,
    cancel: threading.Event | None,
    delays: tuple[float, ...],
) -> tuple[BackendResult, int]:
    """The backend's result and the number of calls it took; transient errors are retried."""
    run.phase("generate")
    calls, tries = 0, 0
    while True:
        try:
            result = backend.generate(prepared.backend_request, cancel)
            break
        except TransientBackendError:
            calls += 1
            if backend.retries_inside or tries >= len(delays) or (cancel and cancel.is_set()):
                raise
            time.sleep(delays[tries])
            tries += 1
    run.done("generate")
    return result, calls + result.calls


def decode_result(
    store: Store,
    prepared: Prepared,
    result: BackendResult,
    backend_name: str,
    run: Job,
    *,
    log: bool,
) -> Generated:
    """Store every output as returned and the response record; decode each output.

    An output that is no image, or a grey one, is kept as its failure (its candidate
    becomes an attempt); ``log`` lists the response for replay.
    """
    run.phase("decode")
    output_ids: list[str] = []
    outputs: list[np.ndarray | StepFailure] = []
    for data in result.images:
        try:
            raw, refused = decode_output(data)
            output_ids.append(store.objects.put_image(raw))  # kept as returned
            outputs.append(refused or np.ascontiguousarray(raw[:, :, :3]))
        except StepFailure as exc:
            output_ids.append("")
            outputs.append(exc)
    record = BackendResponse(
        request_id=prepared.request.request_id,
        backend=backend_name,
        model=result.model or prepared.recipe.model,
        output_ids=tuple(output_ids),
        usage=result.usage,
        cost_micro_usd=result.cost_micro_usd,
        provider_request_id=result.provider_request_id,
        metadata=dict(result.metadata),
    )
    response_id = store.objects.put_json(record)
    if log:
        store.record_response(prepared.session, prepared.request.request_id, response_id)
    run.done("decode")
    return Generated(result, response_id, tuple(output_ids), tuple(outputs))
