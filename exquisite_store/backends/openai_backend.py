"""The OpenAI image-edit backend, through the official ``openai`` client.

The key comes from ``OPENAI_API_KEY`` (the client's own configuration) and is never
stored, logged or put into an error message: every string the provider sends back
(messages, error codes, moderation details, request ids, response fields) is
scrubbed of it before anything keeps or shows it. ``OPENAI_BASE_URL`` points the
client at any compatible server. The client retries 408/409/429/5xx, timeouts and
connection errors itself (honouring ``retry-after``); what still fails maps onto
the failure kinds.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import re
import threading
from typing import Any

from exquisite_store import imageio
from exquisite_store.backends.base import BackendRequest, BackendResult
from exquisite_store.backends.deadline import deadline, deadline_transport
from exquisite_store.backends.models import (
    ImageModel,
    cost_micro_usd,
    default_model,
    get_model,
    image_input_tokens,
    output_tokens,
)
from exquisite_store.errors import (
    ConfigError,
    PermanentBackendError,
    SafetyRefusal,
    StepFailure,
    TransientBackendError,
)
from exquisite_store.geometry.frames import FramePolicy
from exquisite_store.manifests import Usage

REFUSAL_CODES = ("moderation_blocked", "content_policy_violation")
_KEYLIKE = re.compile(r"sk-[A-Za-z0-9_\-*]{4,}")
#: this many characters of the key in a row are the key: echoed whole, cut short or
#: without its ``sk-`` prefix (random key characters never run this long by chance)
KEY_RUN = 10


def scrub(text: str) -> str:
    """Remove the API key (whole, in part, without its prefix) and anything shaped like one."""
    key = os.environ.get("OPENAI_API_KEY", "")
    if key:
        text = _without_key(text, key)
    return _KEYLIKE.sub("sk-[redacted]", text)


class _KeyScrubber(logging.Filter):
    """Scrubs the key from log records of the HTTP client's loggers.

    Their DEBUG traces print the response headers, which a provider may make echo the key.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = scrub(text)
        if clean != text:
            record.msg, record.args = clean, None
        return True


_SCRUBBER = _KeyScrubber()
#: loggers of the client and its HTTP stack (``httpx``, ``httpcore`` and their forks)
CLIENT_LOGGERS = ("openai", "httpx", "httpcore")


def guard_client_logs() -> None:
    """Put the key scrubber on every logger of the client and its HTTP stack."""
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        mine = name.startswith(CLIENT_LOGGERS) and isinstance(logger, logging.Logger)
        if mine and _SCRUBBER not in logger.filters:
            logger.addFilter(_SCRUBBER)


def _without_key(text: str, key: str) -> str:
    """``text`` with every run of at least KEY_RUN characters of ``key`` made ``[key]``."""
    if len(key) < KEY_RUN:
        return text.replace(key, "[key]")
    runs = {key[i : i + KEY_RUN] for i in range(len(key) - KEY_RUN + 1)}
    out, i = [], 0
    while i < len(text):
        if text[i : i + KEY_RUN] in runs:
            j = i + KEY_RUN
            while j < len(text) and text[i : j + 1] in key:
                j += 1
            out.append("[key]")
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


class OpenAIBackend:
    """``images.edit`` with the frame and its mask; ``n`` candidates from one call."""

    name = "openai"
    ignores_prompt = False
    retries_inside = True

    def __init__(self, client: Any = None, *, max_retries: int = 2, timeout: float = 180.0) -> None:
        self._client = client
        self.max_retries = max_retries
        self.timeout = timeout
        self.http_calls = 0
        self._lock = threading.Lock()

    # --- model table -------------------------------------------------------------------

    def resolve_model(self, model: str) -> str:
        """The model to use: the default when none is given; retired/unknown are errors."""
        return get_model(model or default_model()).id

    def frame_policy(self, model: str) -> FramePolicy:
        """The model's frame rule."""
        return get_model(model).frames

    def estimate_cost(self, request: BackendRequest) -> int:
        """Micro-dollars expected for this request (text, image and mask in; n images out)."""
        m = get_model(request.model)
        self.kwargs(request, m)  # refuse unaccepted options before anything is spent
        w, h = request.width, request.height
        text = -(-len(request.prompt) // 4)
        image_in = 2 * image_input_tokens(w, h)
        out = request.n * output_tokens(m, w, h, request.quality)
        return cost_micro_usd(m, text, image_in, out)

    # --- the call ------------------------------------------------------------------------

    def client(self) -> Any:
        """The ``openai.OpenAI`` client (created on first use, from the environment)."""
        if self._client is None:
            import openai

            if not os.environ.get("OPENAI_API_KEY"):
                raise PermanentBackendError(
                    "the openai backend needs OPENAI_API_KEY in the environment"
                )
            hooks = {"request": [self._count]}
            self._client = openai.OpenAI(
                max_retries=self.max_retries,
                timeout=self.timeout,
                http_client=openai.DefaultHttpxClient(
                    event_hooks=hooks, transport=deadline_transport()
                ),
            )
            guard_client_logs()
        return self._client

    def close(self) -> None:
        """Close the client's HTTP connections (the pipeline calls it after a step)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _count(self, _request: Any) -> None:
        with self._lock:
            self.http_calls += 1

    def kwargs(self, request: BackendRequest, m: ImageModel) -> dict[str, Any]:
        """The arguments of ``images.edit`` (without the files)."""
        if request.quality not in m.qualities:
            raise ConfigError(
                f"{m.id} accepts quality {', '.join(m.qualities)}, not {request.quality!r}",
                field="quality",
            )
        kw: dict[str, Any] = {
            "model": m.id,
            "prompt": request.prompt,
            "n": request.n,
            "size": f"{request.width}x{request.height}",
            "quality": request.quality,
            "output_format": "png",
        }
        fidelity = request.params.get("input_fidelity")
        if fidelity:
            if fidelity not in m.input_fidelity:
                raise ConfigError(
                    f"{m.id} does not accept input_fidelity={fidelity!r}", field="input_fidelity"
                )
            kw["input_fidelity"] = fidelity
        return kw

    def generate(
        self, request: BackendRequest, cancel: threading.Event | None = None
    ) -> BackendResult:
        """One ``images.edit`` call; errors mapped onto the failure kinds."""
        import openai

        m = get_model(request.model)
        kw = self.kwargs(request, m)
        image = imageio.png_bytes(request.image[:, :, :3])
        mask = imageio.png_bytes(request.mask)
        before = self.http_calls
        try:
            # ``timeout`` bounds the whole call, retries included: a server that trickles
            # its answer cannot hold the step (and the store's writer lock) past it
            with deadline(self.timeout):
                resp = self.client().images.edit(
                    image=("frame.png", image, "image/png"),
                    mask=("mask.png", mask, "image/png"),
                    **kw,
                )
        except openai.APIStatusError as exc:
            raise self._status_error(exc, self.http_calls - before) from None
        except openai.APITimeoutError:
            raise TransientBackendError(
                f"the OpenAI API did not answer within {self.timeout:g}s "
                f"({self.http_calls - before} tries)",
                calls=self.http_calls - before,
            ) from None
        except openai.APIConnectionError as exc:
            raise TransientBackendError(
                f"cannot reach the OpenAI API: {scrub(str(exc))}", calls=self.http_calls - before
            ) from None
        except openai.APIError as exc:  # e.g. a body that is not the API's shape
            raise PermanentBackendError(
                f"the OpenAI API answered in an unexpected way: {scrub(str(exc))}",
                calls=self.http_calls - before,
            ) from None
        images = [_b64(d.b64_json) for d in (resp.data or [])]
        usage = _usage(resp.usage)
        cost = cost_micro_usd(
            m, usage.input_text_tokens, usage.input_image_tokens, usage.output_tokens
        )
        meta = {  # provider-supplied: scrubbed like every string it sends
            k: scrub(str(v))
            for k, v in (
                ("size", resp.size),
                ("quality", resp.quality),
                ("output_format", resp.output_format),
                ("created", resp.created),
            )
            if v is not None
        }
        return BackendResult(
            images=images,
            model=m.id,
            usage=usage,
            cost_micro_usd=cost,
            provider_request_id=scrub(getattr(resp, "_request_id", None) or ""),
            metadata=meta,
            calls=self.http_calls - before,
        )

    def _status_error(self, exc: Any, calls: int) -> StepFailure:
        body = exc.body if isinstance(exc.body, dict) else {}
        err = body.get("error", body) if isinstance(body, dict) else {}
        err = err if isinstance(err, dict) else {}
        code = str(err.get("code") or "")
        message = scrub(str(err.get("message") or exc.message))
        details = {  # every string here came from the provider: scrubbed
            "status": exc.status_code,
            "code": scrub(code),
            "request_id": scrub(exc.request_id or ""),
            "calls": calls,
        }
        if exc.status_code == 400 and code in REFUSAL_CODES:
            moderation = err.get("moderation_details")
            if moderation is not None:
                details["moderation_details"] = scrub(json.dumps(moderation, sort_keys=True))
            return SafetyRefusal(f"the model refused: {message}", **details)
        if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
            return TransientBackendError(
                f"OpenAI API error {exc.status_code} after {calls} tries: {message}", **details
            )
        return PermanentBackendError(f"OpenAI API error {exc.status_code}: {message}", **details)


def _b64(value: str | None) -> bytes:
    """Decode ``b64_json``; garbage becomes b"" (the pipeline reports a DecodeError)."""
    try:
        return base64.b64decode(value or "", validate=True)
    except (binascii.Error, ValueError):
        return b""


def _usage(u: Any) -> Usage:
    if u is None:
        return Usage()
    details = getattr(u, "input_tokens_details", None)
    return Usage(
        input_text_tokens=int(getattr(details, "text_tokens", 0) or 0),
        input_image_tokens=int(getattr(details, "image_tokens", 0) or 0),
        output_tokens=int(u.output_tokens or 0),
        total_tokens=int(u.total_tokens or 0),
    )
