"""A local fake of the OpenAI Images API: ``POST /v1/images/edits`` on the real wire format.

Point the official ``openai`` client at ``FakeOpenAI().base_url``. Every request is
recorded (``.calls``); per-test misbehaviour is queued with ``.script(...)``.
"""

from __future__ import annotations

import base64
import contextlib
import email.policy
import io
import json
import math
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFilter

FIXED_SIZE_MODELS = frozenset({"gpt-image-1.5", "gpt-image-1-mini", "chatgpt-image-latest"})
FREE_SIZE_MODELS = frozenset(
    {"gpt-image-2", "gpt-image-2-2026-04-21", "gpt-image-2.6-sunburst", "gpt-image-2.6-flare"}
    | {f"gpt-image-2.5-{v}{s}" for v in ("sunburst", "flare") for s in ("", "-2026-09-08")}
)
MODELS = FIXED_SIZE_MODELS | FREE_SIZE_MODELS
RETIRED_MODELS = frozenset({"gpt-image-1", "dall-e-2", "dall-e-3"})
FIXED_SIZES = ("1024x1024", "1024x1536", "1536x1024", "auto")
# output image tokens per 1024x1024 image (xhigh/max: gpt-image-2.5+ only; invented numbers)
QUALITY_TOKENS = dict(low=272, medium=1056, high=4160, auto=4160, xhigh=6240, max=8320)
ERROR_KINDS = {"rate_limit", "server_error", "unauthorized", "moderation", "content_policy"}
KINDS = ERROR_KINDS | {"honest", "repaint_shift", "wrong_size", "jpeg", "webp", "garbage_b64"}
KINDS |= {"hang", "n_images", "trickle", "bad_usage"}
KEY_URL = "https://platform.openai.com/account/api-keys"
NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header "
    "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with "
    "blank username) if you're accessing the API from your browser and are prompted for a "
    f"username. You can obtain an API key from {KEY_URL}."
)
BAD_KEY = f"Incorrect API key provided. You can find your API key at {KEY_URL}."  # no key echo
MODERATED = "Your request was rejected by the safety system. If you believe this is an error, "
MODERATED += "contact us at help.openai.com and include the request ID {}."
BAD_SIZE = "Invalid size '{}'. Width and height must be divisible by 16 and at most 3840, the "
BAD_SIZE += "aspect ratio between 1:3 and 3:1, and the total pixels at most 3840x2160."
LONG_PROMPT = "Invalid 'prompt': string too long. Expected a string with maximum length 32000, "
LONG_PROMPT += "but got a string with length {} instead."
POLICY = "Your request was rejected as a result of our safety system. Your prompt may contain "
POLICY += "text that is not allowed by our safety system."


@dataclass
class Behaviour:
    """One scripted answer. ``name`` is one of ``KINDS``; the other fields tune it."""

    name: str = "honest"
    n: int | None = None  # images returned (default: the request's n)
    usage: dict[str, Any] | Literal["omit"] | None = None  # replaces the computed usage
    gain: float = 1.06  # repaint_shift: per-channel gain, offset and blur radius
    offset: float = 8.0
    blur: float = 0.6
    size: tuple[int, int] = (512, 512)  # wrong_size: (w, h) returned
    retry_after: str | None = "0"  # rate_limit: retry-after header (None: omit it)
    categories: tuple[str, ...] = ("violence",)  # moderation: moderation_details.categories
    seconds: float = 5.0  # hang: seconds before answering (honestly); trickle: per byte
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers
    code: str | None = None  # error kinds: replaces the error's ``code``
    message: str | None = None  # error kinds: replaces the error's ``message``
    body: dict[str, Any] = field(default_factory=dict)  # success: fields merged into the body

    def __post_init__(self) -> None:
        if self.name not in KINDS:
            raise ValueError(f"unknown behaviour {self.name!r}; known: {sorted(KINDS)}")


@dataclass(frozen=True)
class UploadedFile:
    filename: str | None
    content_type: str
    data: bytes


Fields = dict[str, str | list[str]]
Files = dict[str, list[UploadedFile]]


@dataclass
class RecordedCall:
    path: str
    headers: dict[str, str]  # lower-case names
    fields: Fields
    files: Files  # "image[]" parts are stored under "image"
    method: str = "POST"
    part_names: list[str] = field(default_factory=list)  # multipart names as sent, in order
    request_id: str = ""
    behaviour: str = ""  # the scripted behaviour consumed ("" if none was)
    status: int = 0  # 0 while the answer is pending (e.g. during "hang")
    body_bytes: int = 0  # the answer's length
    bytes_sent: int = 0  # how much of it went out (less when the client gave up: "trickle")


@dataclass
class ApiError(Exception):
    """An error answer; ``body`` is the real API's ``{"error": {...}}`` shape."""

    status: int
    message: str
    param: str | None = None
    code: str | None = None
    type_: str = "invalid_request_error"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.type_, "param": self.param}
        return {"error": error | {"code": self.code} | self.extra}


def _bad(param: str | None, code: str | None, message: str) -> ApiError:
    return ApiError(400, message, param, code)


def _invalid(param: str, value: str, allowed: tuple[str, ...] | frozenset[str]) -> ApiError:
    options = ", ".join(f"'{a}'" for a in sorted(allowed))
    return _bad(param, "invalid_value", f"Invalid value: '{value}'. Supported values: {options}.")


def parse_multipart(content_type: str, body: bytes) -> tuple[list[str], Fields, Files]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1")
    msg = BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise _bad(None, None, f"Invalid Content-Type header ({content_type}), expected multipart.")
    names: list[str] = []
    fields: Fields = {}
    files: Files = {}
    for part in msg.iter_parts():
        assert isinstance(part, EmailMessage)
        name = str(part.get_param("name", "", header="content-disposition"))
        names.append(name)
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        if part.get_filename() is not None or part.get("content-type") is not None:
            upload = UploadedFile(part.get_filename(), part.get_content_type(), data)
            files.setdefault(name.removesuffix("[]"), []).append(upload)
        else:
            old = fields.get(name)
            new = [old] if isinstance(old, str) else old
            fields[name] = data.decode() if new is None else [*new, data.decode()]
    return names, fields, files


def _field(fields: Fields, name: str, default: str | None = None) -> str | None:
    value = fields.get(name, default)
    return value[-1] if isinstance(value, list) else value


def _open(upload: UploadedFile, param: str, index: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(upload.data))
        image.load()
    except Exception:
        msg = f"Invalid image file or mode for {param} {index}, please check your image file."
        raise _bad(param, "invalid_image_file", msg) from None
    if image.format not in ("PNG", "JPEG", "WEBP"):
        msg = f"Invalid image file format ({image.format}). Supported: png, jpeg, webp."
        raise _bad(param, "invalid_image_format", msg)
    return image


def _parse_size(size: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"(\d+)x(\d+)", size)
    return (int(m[1]), int(m[2])) if m else None


def _check_size(model: str, size: str) -> None:
    if size == "auto":
        return
    if model in FIXED_SIZE_MODELS:
        if size not in FIXED_SIZES:
            raise _invalid("size", size, FIXED_SIZES)
        return
    w, h = _parse_size(size) or (0, 0)
    bad = w % 16 or h % 16 or min(w, h) < 16 or w * h > 3840 * 2160
    if bad or max(w, h) > min(3840, 3 * min(w, h)):
        raise _bad("size", "invalid_value", BAD_SIZE.format(size))


def validate(fields: Fields, files: Files) -> tuple[list[Image.Image], Image.Image | None]:
    """Check a request like the real API; return the decoded images and mask."""
    model = _field(fields, "model", "gpt-image-1.5") or ""
    if model in RETIRED_MODELS:
        msg = f"The model `{model}` does not exist or you do not have access to it."
        raise ApiError(404, msg, code="model_not_found")
    if model not in MODELS:
        raise _invalid("model", model, MODELS)
    prompt = _field(fields, "prompt")
    if not prompt:
        raise _bad("prompt", "missing_required_parameter", "Missing required parameter: 'prompt'.")
    if len(prompt) > 32000:
        raise _bad("prompt", "string_above_max_length", LONG_PROMPT.format(len(prompt)))
    uploads = files.get("image", [])
    if not uploads:
        raise _bad("image", "missing_required_parameter", "Missing required parameter: 'image'.")
    if len(uploads) > 16:
        raise _bad("image", "invalid_value", "Too many images: at most 16 are allowed.")
    images = [_open(u, "image", i + 1) for i, u in enumerate(uploads)]
    mask = _open(files["mask"][0], "mask", 1) if "mask" in files else None
    if mask is not None:
        alpha = mask.mode in ("RGBA", "LA", "PA") or "transparency" in mask.info
        if mask.format != "PNG" or not alpha:
            msg = f"Invalid mask image: expected a PNG with an alpha channel, got {mask.format}"
            raise _bad("mask", "invalid_image_format", f"{msg} {mask.mode}.")
        if mask.size != images[0].size:
            msg = "Invalid mask image: mask size ({}x{}) does not match image size ({}x{})."
            raise _bad("mask", "invalid_image_format", msg.format(*mask.size, *images[0].size))
    _check_size(model, _field(fields, "size", "auto") or "auto")
    n = _field(fields, "n", "1") or ""
    if not re.fullmatch(r"-?\d+", n):
        raise _bad("n", "invalid_type", "Invalid type for 'n': expected an integer.")
    if not 1 <= int(n) <= 10:
        low = int(n) < 1
        msg = f"Invalid 'n': integer {'below minimum' if low else 'above maximum'} value. Expected"
        msg += f" a value {'>= 1' if low else '<= 10'}, but got {n} instead."
        raise _bad("n", "integer_below_min_value" if low else "integer_above_max_value", msg)
    fidelity = _field(fields, "input_fidelity")
    if fidelity is not None and model in FREE_SIZE_MODELS:
        msg = "Unsupported parameter: 'input_fidelity' is not supported with this model."
        raise _bad("input_fidelity", "unsupported_parameter", msg)
    allowed = ("low",) if model == "gpt-image-1-mini" else ("high", "low")
    if fidelity is not None and fidelity not in allowed:
        raise _invalid("input_fidelity", fidelity, allowed)
    quality = _field(fields, "quality", "auto") or ""
    qualities = ("low", "medium", "high", "auto")
    if model.startswith(("gpt-image-2.5", "gpt-image-2.6")):
        qualities += ("xhigh", "max")
    if quality not in qualities:
        raise _invalid("quality", quality, qualities)
    fmt = _field(fields, "output_format", "png") or ""
    if fmt not in ("png", "jpeg", "webp"):
        raise _invalid("output_format", fmt, ("png", "jpeg", "webp"))
    return images, mask


def _fill_rows(arr: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Copy into unknown pixels the nearest known pixel of their row; return the still unknown."""
    w = known.shape[1]
    cols = np.arange(w)
    left = np.maximum.accumulate(np.where(known, cols, -1), axis=1)
    right = np.minimum.accumulate(np.where(known, cols, w)[:, ::-1], axis=1)[:, ::-1]
    src = np.where((left >= 0) & ((right >= w) | (cols - left <= right - cols)), left, right)
    ys, xs = np.nonzero(~known & (src >= 0) & (src < w))
    arr[ys, xs] = arr[ys, src[ys, xs]]
    return ~known & ((src < 0) | (src >= w))


def honest_fill(image: Image.Image, hole: np.ndarray, seed: int = 0) -> Image.Image:
    """Edge-replicate into ``hole`` (rows, then columns) plus a small fixed pattern."""
    mode = "RGBA" if "A" in image.getbands() else "RGB"
    arr = np.array(image.convert(mode))
    if hole.any():
        rest = _fill_rows(arr, ~hole)
        if rest.any():  # rows with nothing known: fill along columns (the view writes through)
            rest = _fill_rows(arr.transpose(1, 0, 2), ~rest.T).T
        arr[rest] = 128
        ys, xs = np.nonzero(hole)
        pattern = ((xs * 7 + ys * 13 + seed * 5) % 16).astype(np.int16)[:, None] - 8
        arr[ys, xs, :3] = np.clip(arr[ys, xs, :3].astype(np.int16) + pattern, 0, 255)
        arr[ys, xs, 3:] = 255
    return Image.fromarray(arr, mode)


def _encode(image: Image.Image, fmt: str) -> str:
    out = io.BytesIO()
    (image.convert("RGB") if fmt == "jpeg" else image).save(out, format=fmt.upper())
    return base64.b64encode(out.getvalue()).decode()


def image_tokens(w: int, h: int) -> int:
    return 65 + 129 * math.ceil(w / 512) * math.ceil(h / 512)


def edit_response(
    fields: Fields, images: list[Image.Image], mask: Image.Image | None, b: Behaviour
) -> dict[str, Any]:
    """The success body; hole = the mask's alpha == 0 (else the image's own alpha == 0)."""
    alpha_of = mask if mask is not None else images[0]
    hole = np.zeros((images[0].height, images[0].width), dtype=bool)
    if "A" in alpha_of.getbands() or "transparency" in alpha_of.info:
        hole = np.array(alpha_of.convert("RGBA").getchannel("A")) == 0
    n = b.n or int(_field(fields, "n", "1") or 1)
    fmt = b.name if b.name in ("jpeg", "webp") else _field(fields, "output_format", "png") or "png"
    outs = [honest_fill(images[0], hole, seed=i) for i in range(n)]
    if b.name == "repaint_shift":
        for i, out in enumerate(outs):
            arr = np.array(out, dtype=np.float32)
            arr[..., :3] = arr[..., :3] * b.gain + b.offset
            out = Image.fromarray(np.clip(arr, 0, 255).round().astype(np.uint8), out.mode)
            outs[i] = out.filter(ImageFilter.GaussianBlur(b.blur))
    elif b.name == "wrong_size":
        size = b.size if b.size != outs[0].size else (outs[0].width + 16, outs[0].height)
        outs = [out.resize(size, Image.Resampling.BILINEAR) for out in outs]
    garbage = b.name == "garbage_b64"
    data = [
        {"b64_json": "@@not base64, not an image@@" if garbage else _encode(o, fmt)} for o in outs
    ]
    out_w, out_h = _parse_size(_field(fields, "size", "auto") or "") or images[0].size
    quality = _field(fields, "quality", "auto") or "auto"
    text = math.ceil(len(_field(fields, "prompt") or "") / 4)
    img_in = sum(image_tokens(*im.size) for im in [*images, *([mask] if mask else [])])
    out_tokens = n * round(QUALITY_TOKENS[quality] * out_w * out_h / (1024 * 1024))
    body: dict[str, Any] = {"created": int(time.time()), "data": data}
    if b.usage != "omit":
        body["usage"] = b.usage or {
            "input_tokens": text + img_in,
            "input_tokens_details": {"image_tokens": img_in, "text_tokens": text},
            "output_tokens": out_tokens,
            "total_tokens": text + img_in + out_tokens,
            "output_tokens_details": {"image_tokens": out_tokens, "text_tokens": 0},
        }
    body["size"] = "{}x{}".format(*outs[0].size)
    body["quality"] = "high" if quality == "auto" else quality
    body["output_format"] = fmt
    body["background"] = "transparent" if fields.get("background") == "transparent" else "opaque"
    return body


def scripted_error(b: Behaviour, model: str, request_id: str) -> ApiError:
    if b.name == "rate_limit":
        msg = f"Rate limit reached for {model} in organization org-fake on images per min (IPM): "
        msg += "Limit 5, Used 5, Requested 1. Please try again in 12s."
        return ApiError(429, msg, code="rate_limit_exceeded", type_="requests")
    if b.name == "server_error":
        msg = "The server had an error while processing your request. Sorry about that!"
        return ApiError(500, msg, type_="server_error")
    if b.name == "unauthorized":
        return ApiError(401, BAD_KEY, code="invalid_api_key")
    if b.name == "moderation":
        details = {"categories": list(b.categories), "flagged": True}
        extra = {"moderation_details": details}
        msg = MODERATED.format(request_id)
        return ApiError(400, msg, None, "moderation_blocked", "image_generation_user_error", extra)
    return ApiError(400, POLICY, code="content_policy_violation")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet

    def _send(
        self,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str],
        trickle: float = 0.0,
        call: RecordedCall | None = None,
    ) -> None:
        raw = json.dumps(body).encode()
        if call is not None:
            call.body_bytes = len(raw)
        self.send_response(status)
        headers = {"content-type": "application/json", "content-length": str(len(raw))} | headers
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not trickle:
            self.wfile.write(raw)
            if call is not None:
                call.bytes_sent = len(raw)
            return
        for i in range(len(raw)):  # one byte at a time: every read gets something
            if self.server.fake._stopping.wait(trickle):
                return
            self.wfile.write(raw[i : i + 1])
            self.wfile.flush()
            if call is not None:
                call.bytes_sent = i + 1

    def _handle(self) -> None:
        fake = self.server.fake
        request_id = f"req_{uuid.uuid4().hex}"
        body = self.rfile.read(int(self.headers.get("content-length") or 0))  # always read it all
        headers = {k.lower(): v for k, v in self.headers.items()}
        call = RecordedCall(self.path, headers, {}, {}, self.command, request_id=request_id)
        fake._record(call)
        status, payload = 200, {}
        b: Behaviour | None = None
        out_headers = {"x-request-id": request_id, "openai-version": "2020-10-01"}
        try:
            path = self.path.split("?")[0]
            if self.command != "POST" or path != "/v1/images/edits":
                raise ApiError(404, f"Invalid URL ({self.command} {path})")
            auth = headers.get("authorization", "")
            key = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
            if not key:
                raise ApiError(401, NO_KEY)
            if fake.api_key is not None and key != fake.api_key:
                raise ApiError(401, BAD_KEY, code="invalid_api_key")
            parsed = parse_multipart(headers.get("content-type", ""), body)
            call.part_names, call.fields, call.files = parsed
            b = fake._next()
            call.behaviour = b.name
            out_headers |= b.headers
            if b.name == "rate_limit" and b.retry_after is not None:
                out_headers.setdefault("retry-after", b.retry_after)
            if b.name in ERROR_KINDS:
                err = scripted_error(b, _field(call.fields, "model") or "gpt-image-1.5", request_id)
                err.code = err.code if b.code is None else b.code
                err.message = err.message if b.message is None else b.message
                raise err
            if b.name == "hang" and fake._stopping.wait(b.seconds):
                self.close_connection = True  # stop() was called: drop the connection
                return
            payload = edit_response(call.fields, *validate(call.fields, call.files), b) | b.body
            if b.name == "bad_usage":  # a provider reporting impossible usage
                payload["usage"]["output_tokens"] = -5000
        except ApiError as err:
            status, payload = err.status, err.body
        except Exception as err:  # a bug in the fake itself: record it, answer 500
            fake.errors.append(err)
            status, payload = 500, scripted_error(Behaviour("server_error"), "", "").body
        call.status = status
        try:
            trickle = b.seconds if b is not None and b.name == "trickle" else 0.0
            self._send(status, payload, out_headers, trickle, call)
        except OSError:  # the client gave up (timeout) or stop() cut the connection
            self.close_connection = True

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    def __init__(self, fake: FakeOpenAI, host: str) -> None:
        self.fake = fake
        super().__init__((host, 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        args = (request, client_address)
        thread = threading.Thread(target=self.process_request_thread, args=args, daemon=True)
        with self.fake._lock:
            self.fake._conns[request] = thread
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self.fake._lock:
            self.fake._conns.pop(request, None)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # connection resets from clients that timed out, or cut by stop()


class FakeOpenAI:
    """The fake API server. ``api_key=None`` accepts any non-empty Bearer key."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        default: str | Behaviour = "honest",
        host: str = "127.0.0.1",
    ) -> None:
        self.api_key = api_key
        self.default = default
        self.host = host
        self.errors: list[Exception] = []  # exceptions raised inside the fake (bugs)
        self._calls: list[RecordedCall] = []
        self._queue: list[Behaviour] = []
        self._lock = threading.Lock()
        self._conns: dict[Any, threading.Thread] = {}
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None, "start() first"
        return f"http://{self.host}:{self._httpd.server_address[1]}/v1"

    @property
    def calls(self) -> list[RecordedCall]:
        with self._lock:
            return list(self._calls)

    def script(self, *behaviours: str | Behaviour) -> None:
        """Queue behaviours, consumed one per authorised edits request; then ``default``."""
        parsed = [b if isinstance(b, Behaviour) else Behaviour(b) for b in behaviours]
        with self._lock:
            self._queue.extend(parsed)

    def _next(self) -> Behaviour:
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
        return self.default if isinstance(self.default, Behaviour) else Behaviour(self.default)

    def _record(self, call: RecordedCall) -> None:
        with self._lock:
            self._calls.append(call)

    def start(self) -> FakeOpenAI:
        self._stopping.clear()
        self._httpd = _Server(self, self.host)
        kwargs = {"poll_interval": 0.01}
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs=kwargs, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None or self._thread is None:
            return
        self._stopping.set()  # wakes "hang" handlers
        self._httpd.shutdown()
        with self._lock:
            conns = list(self._conns.items())
        for sock, _ in conns:  # idle keep-alive handlers block in readline: cut them
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for _, thread in conns:
            thread.join(timeout=5)
        self._httpd.server_close()
        self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
