"""Phases generate and decode: call the backend, keep what it returned, decode it."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import msgspec
import numpy as np

from exquisite_store import imageio
from exquisite_store.backends.base import Backend, BackendResult
from exquisite_store.errors import (
    DecodeError,
    DimensionMismatch,
    ImageRejected,
    StepFailure,
    TransientBackendError,
)
from exquisite_store.manifests import BackendResponse, Response
from exquisite_store.pipeline.job import Job
from exquisite_store.pipeline.outputs import decode_output_keeping
from exquisite_store.pipeline.prepare import Prepared
from exquisite_store.store import Store

#: tokens one call may report in any usage field; more (or fewer than 0) is refused
MAX_TOKENS = 10_000_000
#: an output is decoded only up to this many times the frame's pixels (a header says
#: its size first): a backend cannot make a step hold gigabytes before it is refused
MAX_OUTPUT_AREA_FACTOR = 4


@dataclass(frozen=True)
class Generated:
    """The backend's answer: its record, the stored outputs, and each decoded (or why not).

    ``cost_micro_usd`` is what the call is counted at: the provider's figure, or the
    estimate when its usage could not be believed (see ``usage_problem``).
    """

    result: BackendResult
    response_id: str
    output_ids: tuple[str, ...]
    outputs: tuple[np.ndarray | StepFailure, ...]
    cost_micro_usd: int
    problem: str = ""

    def billed(self) -> Response:
        """The whole call, as an attempt that failed before any candidate records it."""
        return Response(
            response_id=self.response_id,
            cost_micro_usd=self.cost_micro_usd,
            usage=self.result.usage,
            provider_request_id=self.result.provider_request_id,
        )

    def candidate(self, i: int) -> Response:
        """Candidate ``i``'s part: its output, and its share of the cost (the rest on 0)."""
        n, cost = len(self.output_ids), self.cost_micro_usd
        return Response(
            response_id=self.response_id,
            output_id=self.output_ids[i],
            candidate=i,
            metadata_id="",
            usage=self.result.usage if i == 0 else type(self.result.usage)(),
            cost_micro_usd=cost // n + (cost % n if i == 0 else 0),
            provider_request_id=self.result.provider_request_id,
        )


def usage_problem(result: BackendResult) -> str:
    """Why a reported usage or cost cannot be true ("" when it can)."""
    usage = msgspec.structs.asdict(result.usage)
    for name, value in usage.items():
        if not 0 <= value <= MAX_TOKENS:
            return f"the backend reported impossible token usage ({name}={value})"
    if result.cost_micro_usd < 0:
        return f"the backend's answer comes to a negative cost ({result.cost_micro_usd})"
    return ""


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

    An output that is no image, of a size far from the frame (judged from its header,
    before decoding), or grey is kept as its failure (its candidate becomes an
    attempt). At most the ``n`` asked for are taken. ``log`` lists the response for
    replay.
    """
    run.phase("decode")
    n, width, height = (
        prepared.params.n,
        prepared.request.frame_width,
        prepared.request.frame_height,
    )
    images = result.images[:n]
    metadata = dict(result.metadata)
    if len(result.images) > n:
        metadata["outputs_dropped"] = str(len(result.images) - n)
    output_ids: list[str] = []
    outputs: list[np.ndarray | StepFailure] = []
    for data in images:
        try:
            _check_header(data, width, height)
            raw, refused, keep = decode_output_keeping(data)
            # kept as returned: a PNG that decodes to these pixels is not encoded again
            output_ids.append(store.objects.put_image(raw, data if keep else None))
            outputs.append(refused or np.ascontiguousarray(raw[:, :, :3]))
        except StepFailure as exc:
            output_ids.append("")
            outputs.append(exc)
    problem = usage_problem(result)
    cost = prepared.estimate_micro_usd if problem else result.cost_micro_usd
    if problem:
        metadata["usage_rejected"] = problem
    record = BackendResponse(
        request_id=prepared.request.request_id,
        backend=backend_name,
        model=result.model or prepared.recipe.model,
        output_ids=tuple(output_ids),
        usage=result.usage,  # as reported: the record keeps what came back
        cost_micro_usd=result.cost_micro_usd,
        provider_request_id=result.provider_request_id,
        metadata=metadata,
    )
    response_id = store.objects.put_json(record)
    if log:
        store.record_response(prepared.session, prepared.request.request_id, response_id)
    run.done("decode")
    return Generated(result, response_id, tuple(output_ids), tuple(outputs), cost, problem)


def _check_header(data: bytes, width: int, height: int) -> None:
    """Refuse an output far larger than the frame from its header, before it is decoded."""
    try:
        fmt, w, h = imageio.probe(data, what="backend output")
    except ImageRejected as exc:
        raise DecodeError(exc.message, bytes=len(data)) from exc
    if w * h > MAX_OUTPUT_AREA_FACTOR * width * height:
        raise DimensionMismatch(
            f"backend output is {w}x{h}, expected {width}x{height}; refused from its "
            f"{fmt} header without decoding",
            expected=(width, height),
            got=(w, h),
        )
