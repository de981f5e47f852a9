"""The fake OpenAI Images API, driven through the real ``openai`` client."""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import socket
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import numpy as np
import openai
import pytest
from PIL import Image, UnidentifiedImageError

from .fakes.openai_server import Behaviour, FakeOpenAI, image_tokens

KEY = "sk-test-0123456789abcdefSECRET"
PROMPT = "extend the scene to the right"


def png(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="PNG")
    return out.getvalue()


def encoded(arr: np.ndarray, fmt: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format=fmt)
    return out.getvalue()


def frame(w: int = 256, h: int = 256) -> np.ndarray:
    """A smooth gradient with a magenta block on the right (the part the mask frees)."""
    ys, xs = np.mgrid[0:h, 0:w]
    arr = np.stack([xs * 255 // w, ys * 255 // h, (xs + ys) * 127 // (w + h) + 64], axis=-1)
    arr = arr.astype(np.uint8)
    arr[:, w * 3 // 4 :] = (255, 0, 255)
    return arr


def right_mask(w: int = 256, h: int = 256) -> np.ndarray:
    mask = np.full((h, w, 4), 255, np.uint8)
    mask[:, w * 3 // 4 :, 3] = 0
    return mask


def decode(b64: str | None) -> Image.Image:
    assert b64 is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64, validate=True)))
    image.load()
    return image


@pytest.fixture
def client(fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=0, timeout=2) as c:
        yield c


def edit(client: openai.OpenAI, **kwargs: object) -> openai.types.ImagesResponse:
    args: dict = {
        "image": ("frame.png", png(frame()), "image/png"),
        "mask": ("mask.png", png(right_mask()), "image/png"),
        "prompt": PROMPT,
        "model": "gpt-image-1.5",
    }
    return client.images.edit(**(args | kwargs))


def multipart(fields: dict[str, str], files: dict[str, bytes]) -> tuple[str, bytes]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    for name, data in files.items():
        disposition = f'form-data; name="{name}"; filename="{name}.png"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        parts.append(f"{head}Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def raw_request(
    server: FakeOpenAI, method: str, path: str, body: bytes = b"", **headers: str
) -> tuple[int, dict[str, str], bytes, bytes]:
    """One request on a fresh socket; returns (status, headers, body, every byte received)."""
    port = urlsplit(server.base_url).port
    assert port is not None
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    lines += [f"Content-Length: {len(body)}"] + [f"{k}: {v}" for k, v in headers.items()]
    chunks = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall("\r\n".join(lines).encode() + b"\r\n\r\n" + body)
        while data := sock.recv(65536):
            chunks.append(data)
    raw = b"".join(chunks)
    head, _, payload = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in parsed.items()}, payload, raw


# -- success ------------------------------------------------------------------------------------


def test_edit_decodes_and_is_recorded(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    sent, mask = frame(1024, 1024), right_mask(1024, 1024)
    res = client.images.with_raw_response.edit(
        image=("frame.png", png(sent), "image/png"),
        mask=("mask.png", png(mask), "image/png"),
        prompt=PROMPT,
        model="gpt-image-1.5",
        size="1024x1024",
        n=2,
    )
    result = res.parse()
    assert result.data is not None and len(result.data) == 2
    outs = [np.array(decode(d.b64_json)) for d in result.data]
    for out in outs:
        assert out.shape == (1024, 1024, 3)
        assert np.array_equal(out[:, :768], sent[:, :768])  # outside the hole: as sent
        # the hole is filled from its edge, not left as the magenta that was sent
        assert np.abs(out[:, 768:].astype(int) - sent[:, 767:768]).max() <= 8
    assert not np.array_equal(outs[0], outs[1])
    assert (result.size, result.quality, result.output_format, result.background) == (
        "1024x1024",
        "high",
        "png",
        "opaque",
    )
    assert isinstance(result.created, int) and abs(result.created - time.time()) < 60
    text, images = math.ceil(len(PROMPT) / 4), 2 * image_tokens(1024, 1024)
    assert result.usage is not None
    assert result.usage.model_dump() == {
        "input_tokens": text + images,
        "input_tokens_details": {"image_tokens": images, "text_tokens": text},
        "output_tokens": 2 * 4160,
        "total_tokens": text + images + 2 * 4160,
        "output_tokens_details": {"image_tokens": 2 * 4160, "text_tokens": 0},
    }
    [call] = fake_openai.calls
    assert res.headers["x-request-id"] == call.request_id and call.request_id.startswith("req_")
    assert (call.method, call.path, call.status, call.behaviour) == (
        "POST",
        "/v1/images/edits",
        200,
        "honest",
    )
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert call.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert call.fields == {
        "prompt": PROMPT,
        "model": "gpt-image-1.5",
        "n": "2",
        "size": "1024x1024",
    }
    assert call.part_names == ["prompt", "model", "n", "size", "image", "mask"]
    [image], [mask_file] = call.files["image"], call.files["mask"]
    assert (image.filename, image.content_type, image.data) == ("frame.png", "image/png", png(sent))
    assert (mask_file.filename, mask_file.data) == ("mask.png", png(mask))


def test_several_images_go_as_image_array(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    second = ("ref.jpg", encoded(frame(128, 64), "JPEG"), "image/jpeg")
    result = edit(client, image=[("frame.png", png(frame()), "image/png"), second])
    [call] = fake_openai.calls
    assert call.part_names.count("image[]") == 2
    assert [f.filename for f in call.files["image"]] == ["frame.png", "ref.jpg"]
    assert result.usage is not None
    expected = 2 * image_tokens(256, 256) + image_tokens(128, 64)
    assert result.usage.input_tokens_details.image_tokens == expected


def test_without_mask_the_image_alpha_is_the_hole(client: openai.OpenAI) -> None:
    rgba = np.dstack([frame(), np.full((256, 256), 255, np.uint8)])
    rgba[:, 200:, 3] = 0
    result = edit(client, image=("frame.png", png(rgba), "image/png"), mask=openai.omit)
    assert result.data is not None
    out = np.array(decode(result.data[0].b64_json))
    assert np.array_equal(out[:, :200], rgba[:, :200]) and (out[..., 3] == 255).all()


def test_repaint_shift_changes_the_whole_frame(
    fake_openai: FakeOpenAI, client: openai.OpenAI
) -> None:
    fake_openai.script("repaint_shift")
    result = edit(client)
    assert result.data is not None
    out = np.array(decode(result.data[0].b64_json)).astype(float)
    kept = frame()[8:-8, 8:180].astype(float)
    assert np.abs(out[8:-8, 8:180] - (kept * 1.06 + 8)).mean() < 2.0


@pytest.mark.parametrize(
    ("behaviour", "fmt", "size", "output_format"),
    [
        ("wrong_size", "PNG", (512, 512), "png"),
        (Behaviour("wrong_size", size=(300, 200)), "PNG", (300, 200), "png"),
        ("jpeg", "JPEG", (256, 256), "jpeg"),
        ("webp", "WEBP", (256, 256), "webp"),
    ],
)
def test_misshapen_results(
    fake_openai: FakeOpenAI,
    client: openai.OpenAI,
    behaviour: str | Behaviour,
    fmt: str,
    size: tuple[int, int],
    output_format: str,
) -> None:
    fake_openai.script(behaviour)
    result = edit(client)
    assert result.data is not None and result.output_format == output_format
    image = decode(result.data[0].b64_json)
    assert (image.format, image.size) == (fmt, size)


def test_garbage_b64(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    fake_openai.script("garbage_b64")
    result = edit(client)
    assert result.data is not None
    with pytest.raises((binascii.Error, UnidentifiedImageError)):
        decode(result.data[0].b64_json)


def test_n_images_and_usage_overrides(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    usage = {"input_tokens": 1, "input_tokens_details": {"image_tokens": 0, "text_tokens": 1}}
    usage |= {"output_tokens": 2, "total_tokens": 3}
    fake_openai.script(Behaviour("n_images", n=3), Behaviour(usage=usage), Behaviour(usage="omit"))
    three = edit(client, n=1, quality="low")
    assert three.data is not None and len(three.data) == 3
    assert three.usage is not None and three.usage.output_tokens == 3 * 272 // 16  # 256x256 out
    assert three.quality == "low"
    overridden = edit(client)
    assert overridden.usage is not None and overridden.usage.total_tokens == 3
    assert edit(client).usage is None


def test_free_sizes_for_gpt_image_2(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    result = edit(client, model="gpt-image-2", size="1536x864", quality="medium")
    assert result.usage is not None
    assert result.usage.output_tokens == round(1056 * 1536 * 864 / 1024**2)
    edit(client, model="gpt-image-2.5-flare-2026-09-08", size="3840x2160", quality="xhigh")
    edit(client, model="chatgpt-image-latest", size="auto", input_fidelity="high")
    edit(client, model="gpt-image-1-mini", input_fidelity="low")
    assert [c.status for c in fake_openai.calls] == [200] * 4


# -- errors -------------------------------------------------------------------------------------

ERRORS = [
    ("rate_limit", openai.RateLimitError, 429, "requests", "rate_limit_exceeded"),
    ("server_error", openai.InternalServerError, 500, "server_error", None),
    ("unauthorized", openai.AuthenticationError, 401, "invalid_request_error", "invalid_api_key"),
    (
        "moderation",
        openai.BadRequestError,
        400,
        "image_generation_user_error",
        "moderation_blocked",
    ),
    (
        "content_policy",
        openai.BadRequestError,
        400,
        "invalid_request_error",
        "content_policy_violation",
    ),
]


@pytest.mark.parametrize(("behaviour", "exc", "status", "type_", "code"), ERRORS)
def test_scripted_errors(
    fake_openai: FakeOpenAI,
    client: openai.OpenAI,
    behaviour: str,
    exc: type[openai.APIStatusError],
    status: int,
    type_: str,
    code: str | None,
) -> None:
    fake_openai.script(behaviour)
    with pytest.raises(exc) as info:
        edit(client)
    err = info.value
    [call] = fake_openai.calls
    assert err.status_code == status == call.status
    assert err.request_id == call.request_id and err.request_id.startswith("req_")
    assert isinstance(err.body, dict)  # the client hands back the inner "error" object
    keys = {"message", "type", "param", "code"} | (
        {"moderation_details"} if code == "moderation_blocked" else set()
    )
    assert set(err.body) == keys
    assert (err.body["type"], err.code, err.param) == (type_, code, None)
    assert KEY not in err.message and KEY[8:] not in json.dumps(err.body)
    if code == "moderation_blocked":
        assert err.body["moderation_details"] == {"categories": ["violence"], "flagged": True}
        assert call.request_id in err.body["message"]
    if behaviour == "rate_limit":
        assert err.response.headers["retry-after"] == "0"


def test_rate_limits_are_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.script("rate_limit", "rate_limit", "honest")
    with openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=2, timeout=2) as c:
        start = time.monotonic()
        result = edit(c)
        elapsed = time.monotonic() - start
    assert result.data is not None
    calls = fake_openai.calls
    assert [c.status for c in calls] == [429, 429, 200]
    assert [c.headers["x-stainless-retry-count"] for c in calls] == ["0", "1", "2"]
    # each attempt re-encodes the body (new boundary) with the same content; no idempotency key
    assert all((c.fields, c.files) == (calls[0].fields, calls[0].files) for c in calls)
    assert len({c.headers["content-type"] for c in calls}) == 3
    assert "idempotency-key" not in calls[0].headers
    # `retry-after: 0` is not "now": the client only honours 0 < delay <= 120 s and otherwise
    # backs off 0.5 s then 1 s, each minus up to 25 % jitter
    assert elapsed >= 0.5 * 0.75 + 1.0 * 0.75


def test_server_errors_exhaust_retries(fake_openai: FakeOpenAI) -> None:
    fake_openai.script(*[Behaviour("server_error", headers={"retry-after-ms": "1"})] * 3)
    with (
        openai.OpenAI(api_key=KEY, base_url=fake_openai.base_url, max_retries=2, timeout=2) as c,
        pytest.raises(openai.InternalServerError) as info,
    ):
        edit(c)
    calls = fake_openai.calls
    assert [c.status for c in calls] == [500] * 3
    assert info.value.request_id == calls[-1].request_id


def test_hang_times_out_without_blocking_the_server() -> None:
    with FakeOpenAI() as server:
        server.script(Behaviour("hang", seconds=30))
        with openai.OpenAI(api_key=KEY, base_url=server.base_url, max_retries=0, timeout=0.5) as c:
            start = time.monotonic()
            with pytest.raises(openai.APITimeoutError):
                edit(c)
            assert time.monotonic() - start < 2
            assert edit(c).data is not None  # answered while the first handler still sleeps
        assert [c.status for c in server.calls] == [0, 200]
        start = time.monotonic()
    assert time.monotonic() - start < 2  # stop() wakes the sleeper instead of waiting 30 s
    assert not server.errors


def test_missing_key_is_401(fake_openai: FakeOpenAI) -> None:
    content_type, body = multipart({"prompt": PROMPT}, {"image": png(frame())})
    status, headers, payload, _ = raw_request(
        fake_openai, "POST", "/v1/images/edits", body, **{"Content-Type": content_type}
    )
    error = json.loads(payload)["error"]
    assert status == 401 and headers["x-request-id"].startswith("req_")
    assert error["message"].startswith("You didn't provide an API key.")
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, None)


def test_wrong_key_is_401_without_echo() -> None:
    with (
        FakeOpenAI(api_key="sk-the-right-one") as server,
        openai.OpenAI(api_key=KEY, base_url=server.base_url, max_retries=0, timeout=2) as c,
        pytest.raises(openai.AuthenticationError) as info,
    ):
        edit(c)
    assert info.value.code == "invalid_api_key"
    assert info.value.message.startswith("Error code: 401") and "SECRET" not in info.value.message


def test_other_paths_are_404(fake_openai: FakeOpenAI, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.models.list()
    assert info.value.body == {
        "message": "Invalid URL (GET /v1/models)",
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }
    status, _, payload, _ = raw_request(fake_openai, "POST", "/v1/images/generations?x=1")
    assert status == 404
    assert json.loads(payload)["error"]["message"] == "Invalid URL (POST /v1/images/generations)"


def jpeg_mask() -> bytes:
    return encoded(np.zeros((256, 256, 3), np.uint8), "JPEG")


INVALID = [
    ({"prompt": "x" * 32001}, "prompt", "string_above_max_length"),
    ({"mask": ("m.jpg", jpeg_mask(), "image/jpeg")}, "mask", "invalid_image_format"),
    ({"mask": ("m.png", png(frame()), "image/png")}, "mask", "invalid_image_format"),  # no alpha
    ({"mask": ("m.png", png(right_mask(128, 256)), "image/png")}, "mask", "invalid_image_format"),
    ({"image": ("f.png", b"not an image", "image/png")}, "image", "invalid_image_file"),
    ({"model": "gpt-image-9"}, "model", "invalid_value"),
    ({"size": "2048x2048"}, "size", "invalid_value"),
    ({"size": "512x512", "model": "gpt-image-1-mini"}, "size", "invalid_value"),
    ({"size": "1000x1008", "model": "gpt-image-2"}, "size", "invalid_value"),  # not /16
    ({"size": "3840x1008", "model": "gpt-image-2"}, "size", "invalid_value"),  # aspect > 3:1
    ({"size": "3840x2176", "model": "gpt-image-2"}, "size", "invalid_value"),  # > 3840x2160 px
    ({"size": "4096x2048", "model": "gpt-image-2.6-flare"}, "size", "invalid_value"),  # side
    ({"n": 0}, "n", "integer_below_min_value"),
    ({"n": 11}, "n", "integer_above_max_value"),
    ({"input_fidelity": "low", "model": "gpt-image-2"}, "input_fidelity", "unsupported_parameter"),
    ({"input_fidelity": "high", "model": "gpt-image-1-mini"}, "input_fidelity", "invalid_value"),
    ({"quality": "xhigh"}, "quality", "invalid_value"),
]


@pytest.mark.parametrize(("kwargs", "param", "code"), INVALID)
def test_invalid_requests_are_400(
    fake_openai: FakeOpenAI,
    client: openai.OpenAI,
    kwargs: dict,
    param: str,
    code: str,
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        edit(client, **kwargs)
    assert (info.value.param, info.value.code, info.value.type) == (
        param,
        code,
        "invalid_request_error",
    )
    assert info.value.request_id == fake_openai.calls[0].request_id


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-2", "dall-e-3"])
def test_retired_models_are_not_found(client: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        edit(client, model=model)
    assert info.value.code == "model_not_found" and f"`{model}`" in info.value.message


def test_missing_image_and_prompt(fake_openai: FakeOpenAI) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    for fields, files, param in [
        ({"prompt": PROMPT}, {}, "image"),
        ({}, {"image": png(frame())}, "prompt"),
    ]:
        content_type, body = multipart(fields, files)
        status, _, payload, _ = raw_request(
            fake_openai, "POST", "/v1/images/edits", body, **auth, **{"Content-Type": content_type}
        )
        error = json.loads(payload)["error"]
        assert status == 400
        assert (error["param"], error["code"]) == (param, "missing_required_parameter")


@pytest.mark.parametrize("behaviour", ["honest", "garbage_b64", *[e[0] for e in ERRORS]])
def test_the_key_is_never_echoed(fake_openai: FakeOpenAI, behaviour: str) -> None:
    fake_openai.script(behaviour)
    files = {"image": png(frame()), "mask": png(right_mask())}
    requests = [
        ("POST", "/v1/images/edits", *multipart({"prompt": PROMPT}, files)),
        ("POST", "/v1/images/edits", *multipart({"prompt": PROMPT, "model": "dall-e-3"}, files)),
        ("POST", "/v1/images/edits", "multipart/form-data; boundary=x", b"junk"),
        ("GET", "/v1/models", "application/json", b""),
    ]
    for method, path, content_type, body in requests:
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": content_type}
        *_, raw = raw_request(fake_openai, method, path, body, **headers)
        assert raw.startswith(b"HTTP/1.1 ")
        for secret in (KEY.encode(), KEY[3:].encode(), b"SECRET"):
            assert secret not in raw


def test_wrong_key_never_echoed() -> None:
    with FakeOpenAI(api_key="sk-other") as server:
        *_, raw = raw_request(
            server, "POST", "/v1/images/edits", b"", Authorization=f"Bearer {KEY}"
        )
    assert b"401" in raw.split(b"\r\n")[0] and b"SECRET" not in raw and b"sk-" not in raw


def test_unknown_behaviour_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown behaviour"):
        Behaviour("teapot")
