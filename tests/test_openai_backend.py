"""The openai backend end to end: the real ``openai`` client against the local fake server.

Every scripted behaviour of the fake through the whole step transaction (outcome,
invariants, attempt record, HTTP calls), what goes over the wire, candidates, cost,
budgets, dry runs, the model table, replay, and that the API key is never written.
"""

from __future__ import annotations

import io
import json
import secrets
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from openai.types.image_model import ImageModel as SdkImageModel
from PIL import Image

from exquisite_store.backends.base import BackendRequest
from exquisite_store.backends.models import MODELS, RETIRED, default_model, get_model
from exquisite_store.backends.openai_backend import OpenAIBackend
from exquisite_store.cli import cli
from exquisite_store.errors import (
    BudgetExceeded,
    ConfigError,
    DecodeError,
    DimensionMismatch,
    PermanentBackendError,
    SafetyRefusal,
    StepFailure,
    TransientBackendError,
)
from exquisite_store.manifests import Attempt, BackendResponse
from exquisite_store.money import format_usd as fmt
from exquisite_store.pipeline.cost import session_spent
from exquisite_store.pipeline.reproduce import reproduce
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store

from .fakes.openai_server import Behaviour, FakeOpenAI
from .helpers import rng_image

SECRET = secrets.token_hex(16)
KEY = "sk-test-SECRET-" + SECRET
H, W, L, OV = 96, 128, 32, 8  # canvas H x W, grown right by L with a seam zone of OV
M2 = "gpt-image-2"  # any multiple-of-16 frame: 64px context + 32px band -> 96x96
M15 = "gpt-image-1.5"  # fixed frames: 1024x1024 here
FAST = {"retry-after-ms": "1"}  # the client honours it: retries without the backoff wait
# Published per-1M-token prices in dollars = micro-dollars per token (text, image in, out).
PRICES = {M15: (5, 8, 32), M2: (5, 8, 30)}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    # run_step closes a backend it built; one a test passes in (backend_impl) is the
    # test's to close, or its keep-alive socket lingers until GC (a ResourceWarning)
    made: list = []
    client = OpenAIBackend.client

    def tracked(self: OpenAIBackend):
        if self._client is None:
            made.append(client(self))
        return client(self)

    monkeypatch.setattr(OpenAIBackend, "client", tracked)
    yield fake_openai
    for c in made:
        c.close()


@pytest.fixture
def st(store: Store) -> Store:
    store.create_session("s", rng_image(H, W, seed=3))
    return store


def grow(store: Store, impl: OpenAIBackend | None = None, **overrides):
    params = {"model": M2, "extension_px": L, "overlap_px": OV, "seed": 7, "quality": "low"}
    return run_step(store, "s", backend="openai", backend_impl=impl, **(params | overrides))


def heads(store: Store) -> dict[str, str]:
    return dict(store.refs.branches("s"))


def priced(model: str, text: int, image: int, out: int) -> int:
    """Micro-dollars of a usage, by hand: whole micro-dollars per token for these models."""
    t, i, o = PRICES[model]
    return text * t + image * i + out * o


def usage(text: int, image: int, out: int) -> dict:
    return {
        "input_tokens": text + image,
        "input_tokens_details": {"text_tokens": text, "image_tokens": image},
        "output_tokens": out,
        "total_tokens": text + image + out,
    }


def png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    return image


# --- every scripted behaviour through the pipeline --------------------------------------


@dataclass(frozen=True)
class Case:
    script: tuple[Behaviour, ...]
    error: type[StepFailure] | None  # None: commits
    calls: int  # HTTP requests the fake saw, retries included
    statuses: tuple[int, ...] = (200,)
    max_retries: int = 2
    timeout: float = 10.0


def _b(name: str, **kw) -> Behaviour:
    return Behaviour(name, **kw)


CASES = {
    "honest": Case((_b("honest"),), None, 1),
    "repaint_shift": Case((_b("repaint_shift"),), None, 1),
    "wrong_size": Case((_b("wrong_size"),), DimensionMismatch, 1),
    "jpeg": Case((_b("jpeg"),), None, 1),
    "webp": Case((_b("webp"),), None, 1),
    "garbage_b64": Case((_b("garbage_b64"),), DecodeError, 1),
    "rate_limit_then_ok": Case(
        (_b("rate_limit", retry_after="0.01"), _b("honest")), None, 2, (429, 200)
    ),
    "server_error_x3": Case(
        (_b("server_error", headers=FAST),) * 3, TransientBackendError, 3, (500,) * 3
    ),
    "unauthorized": Case((_b("unauthorized"),), PermanentBackendError, 1, (401,)),
    "moderation": Case((_b("moderation", categories=("violence",)),), SafetyRefusal, 1, (400,)),
    "content_policy": Case((_b("content_policy"),), SafetyRefusal, 1, (400,)),
    "hang": Case((_b("hang", seconds=5),), TransientBackendError, 1, (), 0, 1.0),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_behaviour_outcome_record_and_calls(st, fake, name) -> None:
    case = CASES[name]
    fake.script(*case.script)
    before, parent = heads(st), st.step(st.refs.head("s", "main"))
    parent_px = st.canvas_pixels(parent)
    impl = OpenAIBackend(max_retries=case.max_retries, timeout=case.timeout)
    if case.error is None:
        out = grow(st, impl)
        assert len(fake.calls) == impl.http_calls == out.calls == case.calls
        assert [c.status for c in fake.calls] == list(case.statuses)
        # the client's own retry counter: one request per try
        assert [c.headers["x-stainless-retry-count"] for c in fake.calls] == [
            str(i) for i in range(case.calls)
        ]
        (sid,) = out.step_ids
        assert heads(st) == before | {"main": sid}
        step = st.step(sid)
        child = st.canvas_pixels(step)
        assert child.shape == (H, W + L, 3)  # I1
        assert (step.result.width, step.result.height) == (W + L, H)
        assert np.array_equal(child[:, : W - OV], parent_px[:, : W - OV])  # I2
        resp = step.response
        assert resp.provider_request_id == fake.calls[-1].request_id
        u = resp.usage
        assert resp.cost_micro_usd == priced(
            M2, u.input_text_tokens, u.input_image_tokens, u.output_tokens
        )
        assert resp.cost_micro_usd > 0 and session_spent(st, "s") == resp.cost_micro_usd
        if name == "repaint_shift":  # the model repainted the context: measured, not kept
            assert step.result.scores.drift_mean_abs_milli > 0
        assert not st.attempts("s")
        assert [e.type for e in st.events("s")][-1] == "succeeded"
        return

    with pytest.raises(case.error) as info:
        grow(st, impl)
    exc = info.value
    assert type(exc) is case.error
    assert heads(st) == before  # no head moved
    assert len(fake.calls) == impl.http_calls == case.calls
    if case.statuses:
        assert [c.status for c in fake.calls] == list(case.statuses)
    (line,) = st.attempts("s")
    assert exc.details["attempt_id"] == line.id
    att = st.objects.get_manifest(line.id, Attempt)
    assert (line.kind, att.failure_kind, att.message) == (exc.kind, exc.kind, exc.message)
    assert att.branch == "main" and att.parent == before["main"]
    assert att.recipe.model == M2 and att.request.frame_width == 96
    failed = [e for e in st.events("s") if e.type == "failed"]
    assert [(e.data["attempt_id"], e.data["kind"]) for e in failed] == [(line.id, exc.kind)]

    if case.error in (DimensionMismatch, DecodeError):  # an answer came back: billed, kept
        resp = att.response
        assert resp.provider_request_id == fake.calls[-1].request_id
        u = resp.usage
        cost = priced(M2, u.input_text_tokens, u.input_image_tokens, u.output_tokens)
        assert resp.cost_micro_usd == cost > 0
        assert session_spent(st, "s") == cost
        record = st.objects.get_manifest(resp.response_id, BackendResponse)
        assert record.cost_micro_usd == cost
        # garbage is no image; a 512x512 answer to a 96x96 frame is refused from its
        # header, never decoded (a backend cannot make a step hold gigabytes first)
        assert (resp.output_id == "") == (name in ("garbage_b64", "wrong_size"))
        if name == "wrong_size":
            assert "512x512" in att.message and "without decoding" in att.message
        return

    assert att.response is None and session_spent(st, "s") == 0  # nothing billed
    assert att.details["calls"] == str(case.calls)
    if name == "hang":
        assert "did not answer within 1s" in att.message
        return
    assert att.details["request_id"] == fake.calls[-1].request_id  # the x-request-id header
    assert att.details["status"] == str(case.statuses[-1])
    if name == "moderation":
        assert att.details["code"] == "moderation_blocked"
        moderation = json.loads(att.details["moderation_details"])
        assert moderation == {"categories": ["violence"], "flagged": True}
    elif name == "content_policy":
        assert att.details["code"] == "content_policy_violation"
        assert "moderation_details" not in att.details
    elif name == "unauthorized":
        assert att.details["code"] == "invalid_api_key" and "401" in att.message


# --- what goes over the wire ---------------------------------------------------------------


@pytest.mark.parametrize("model", [M2, M15])
def test_what_is_sent(st, fake, model) -> None:
    out = grow(st, OpenAIBackend(max_retries=0), model=model, quality="medium")
    step = st.step(out.step_ids[0])
    fw, fh = (96, 96) if model == M2 else (1024, 1024)
    assert (step.request.frame_width, step.request.frame_height) == (fw, fh)
    (call,) = fake.calls
    assert call.path == "/v1/images/edits" and call.headers["authorization"] == f"Bearer {KEY}"
    assert set(call.files) == {"image", "mask"}
    assert call.fields == {
        "model": model,
        "prompt": st.objects.get_text(step.request.final_prompt_id),
        "size": f"{fw}x{fh}",
        "n": "1",
        "quality": "medium",
        "output_format": "png",
    }  # no input_fidelity (never for gpt-image-2 and later)
    (image,) = call.files["image"]
    (mask,) = call.files["mask"]
    assert image.content_type == mask.content_type == "image/png"
    sent = png(image.data)
    assert sent.size == (fw, fh)
    frame = st.objects.get_image(step.request.frame_id)
    assert np.array_equal(np.asarray(sent.convert("RGB")), frame[:, :, :3])
    m = png(mask.data)
    assert m.mode == "RGBA" and m.size == (fw, fh)
    # right extension at scale 1: content in the top-right corner, the band is its last
    # L columns over the canvas's H rows; alpha 0 there and nowhere else
    band = np.zeros((fh, fw), bool)
    band[:H, fw - L :] = True
    assert np.array_equal(np.asarray(m)[:, :, 3] == 0, band)
    assert set(np.unique(np.asarray(m)[:, :, 3])) == {0, 255}


def test_input_fidelity_is_sent_recorded_and_named_in_the_request_id(st, fake) -> None:
    """Given for a model that takes it, ``input_fidelity`` reaches the API, is kept in the
    recipe and is part of the request id; not given, nothing of it is sent or stored."""
    plain = grow(st, OpenAIBackend(max_retries=0), model=M15, quality="low")
    high = grow(st, OpenAIBackend(max_retries=0), model=M15, quality="low", input_fidelity="high")
    first, second = fake.calls
    assert "input_fidelity" not in first.fields and second.fields["input_fidelity"] == "high"
    a, b = (st.step(o.step_ids[0]) for o in (plain, high))
    assert a.recipe.params == {} and b.recipe.params == {"input_fidelity": "high"}
    assert a.request.request_id != b.request.request_id
    # refused before any call for a model that does not take it
    with pytest.raises(ConfigError, match="does not accept input_fidelity"):
        grow(st, OpenAIBackend(max_retries=0), model=M2, input_fidelity="low")
    assert len(fake.calls) == 2


def test_input_fidelity_is_refused_for_gpt_image_2() -> None:
    assert get_model(M2).input_fidelity == () and "high" in get_model(M15).input_fidelity
    req = BackendRequest(
        image=np.zeros((96, 96, 3), np.uint8),
        mask=np.full((96, 96, 4), 255, np.uint8),
        prompt="p",
        n=1,
        seed=0,
        model=M2,
        request_id="r",
        params={"input_fidelity": "high"},
    )
    with pytest.raises(ConfigError, match="input_fidelity"):
        OpenAIBackend().kwargs(req, get_model(M2))


def test_n_candidates_from_one_call_share_its_cost(st, fake) -> None:
    out = grow(st, OpenAIBackend(max_retries=0), n=3)
    assert len(fake.calls) == 1 and fake.calls[0].fields["n"] == "3"
    assert set(out.branches) == {"main", "main~2", "main~3"}
    steps = [st.step(out.branches[b]) for b in ("main", "main~2", "main~3")]
    root = st.session("s").root
    assert {s.parent for s in steps} == {root}
    assert [s.response.candidate for s in steps] == [0, 1, 2]
    assert len({s.result.canvas_id for s in steps}) == 3  # three different candidates
    assert len({s.request.request_id for s in steps}) == 1
    (response_id,) = {s.response.response_id for s in steps}
    record = st.objects.get_manifest(response_id, BackendResponse)
    u = record.usage
    call_cost = priced(M2, u.input_text_tokens, u.input_image_tokens, u.output_tokens)
    assert record.cost_micro_usd == call_cost > 0
    assert sum(s.response.cost_micro_usd for s in steps) == call_cost
    assert session_spent(st, "s") == call_cost


# --- usage -> micro-dollars ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "tokens", "expected"),
    [
        # $5 / $8 / $32 per 1M: 1000*5 + 2000*8 + 3000*32 = 5000 + 16000 + 96000
        (M15, (1000, 2000, 3000), 117_000),
        # 123*5 + 4567*8 + 8901*32 = 615 + 36536 + 284832
        (M15, (123, 4567, 8901), 321_983),
        # $5 / $8 / $30 per 1M: 1000*5 + 2000*8 + 3000*30 = 5000 + 16000 + 90000
        (M2, (1000, 2000, 3000), 111_000),
        # 123*5 + 4567*8 + 8901*30 = 615 + 36536 + 267030
        (M2, (123, 4567, 8901), 304_181),
        # $2 / $2.50 / $8 per 1M: 3*2 + 3*2.5 + 3*8 = 37.5 micro-dollars, rounded up
        ("gpt-image-1-mini", (3, 3, 3), 38),
    ],
)
def test_usage_to_micro_dollars(st, fake, model, tokens, expected) -> None:
    fake.script(Behaviour("honest", usage=usage(*tokens)))
    step = st.step(grow(st, OpenAIBackend(max_retries=0), model=model).step_ids[0])
    text, image, out = tokens
    u = step.response.usage
    assert (u.input_text_tokens, u.input_image_tokens, u.output_tokens) == (text, image, out)
    assert u.total_tokens == text + image + out
    assert step.response.cost_micro_usd == expected
    assert session_spent(st, "s") == expected


# --- budgets ---------------------------------------------------------------------------------


def test_budget_refuses_before_any_call_then_lets_through(store, fake) -> None:
    store.create_session("s", rng_image(H, W, seed=3), budget_micro_usd=100)
    before = heads(store)
    with pytest.raises(BudgetExceeded) as info:
        grow(store)  # through the registry: OpenAIBackend() from the environment
    assert fake.calls == []  # refused before any HTTP call
    assert heads(store) == before
    (line,) = store.attempts("s")
    att = store.objects.get_manifest(line.id, Attempt)
    assert att.failure_kind == "BudgetExceeded" and att.response is None
    assert att.details["budget_micro_usd"] == "100" and att.details["spent_micro_usd"] == "0"
    assert int(att.details["estimate_micro_usd"]) > 100
    assert info.value.details["attempt_id"] == line.id

    store.update_session("s", "budget: $1", budget_micro_usd=1_000_000)
    out = grow(store)
    assert len(fake.calls) == 1
    cost = store.step(out.step_ids[0]).response.cost_micro_usd
    assert cost > 0 and session_spent(store, "s") == cost


# --- dry run ----------------------------------------------------------------------------------


def files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_dry_run_calls_and_writes_nothing(st, fake) -> None:
    root = st.root
    before, objects = files(root), len(list((root / "objects").rglob("*")))
    out = grow(st, dry_run=True, n=2)
    p = out.preview
    assert p["frame"] == "96x96" and p["model"] == M2 and not out.step_ids
    # by hand: text ceil(chars / 4); two 96x96 images in (65 + 129 * 1 tile each); two
    # low-quality 96x96 outputs of ceil(272 * 96 * 96 / 1024^2) = 3 tokens; $5/$8/$30 per 1M
    text = -(-len(p["prompt"]) // 4)
    estimate = text * 5 + 2 * (65 + 129) * 8 + 2 * 3 * 30
    assert p["estimate_micro_usd"] == estimate

    args = ["--store", str(root), "step", "s", "--backend", "openai", "--model", M2]
    args += ["--px", str(L), "--overlap", str(OV), "--seed", "7", "--quality", "low"]
    res = CliRunner().invoke(cli, [*args, "-n", "2", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "frame 96x96" in res.output and f"estimate {fmt(estimate)}" in res.output
    for line in p["prompt"].splitlines():
        assert line in res.output
    assert fake.calls == []
    assert len(list((root / "objects").rglob("*"))) == objects
    assert files(root) == before  # no object, ref, log or event written


# --- model table ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "replacement"),
    [("gpt-image-1", "gpt-image-2.5-sunburst"), ("dall-e-2", "gpt-image-2.6-sunburst")],
)
def test_retired_models_name_the_replacement(st, fake, model, replacement) -> None:
    before = heads(st)
    with pytest.raises(ConfigError, match=replacement) as info:
        grow(st, model=model)
    assert info.value.field == "model" and info.value.message == RETIRED[model]
    assert fake.calls == [] and heads(st) == before and not st.attempts("s")


def test_unknown_model_lists_the_known_ones(st, fake) -> None:
    with pytest.raises(ConfigError) as info:
        grow(st, model="gpt-image-9")
    assert "gpt-image-9" in info.value.message
    for known in MODELS:
        assert known in info.value.message
    assert fake.calls == []


def test_quality_the_model_does_not_take_is_refused_before_any_call(st, fake) -> None:
    with pytest.raises(ConfigError) as info:
        grow(st, model=M15, quality="xhigh")
    assert info.value.field == "quality"
    # the backend's own check (the model table) also refuses it before a request is built
    impl = OpenAIBackend(max_retries=0)
    req = BackendRequest(
        image=np.zeros((1024, 1024, 3), np.uint8),
        mask=np.full((1024, 1024, 4), 255, np.uint8),
        prompt="p",
        n=1,
        seed=0,
        model=M15,
        request_id="r",
        quality="xhigh",
    )
    for refuse in (impl.estimate_cost, impl.generate):
        with pytest.raises(ConfigError, match="gpt-image-1.5 accepts quality"):
            refuse(req)
    assert fake.calls == [] and impl.http_calls == 0


def test_default_model_is_the_newest_general_one_the_sdk_lists(st, fake) -> None:
    sdk = typing.get_args(SdkImageModel)
    default = default_model()
    assert default in sdk and default not in RETIRED
    m = MODELS[default]
    assert m.general
    assert all(o.generation <= m.generation for o in MODELS.values() if o.general and o.id in sdk)
    step = st.step(grow(st, OpenAIBackend(max_retries=0), model="").step_ids[0])
    assert step.recipe.model == default and fake.calls[0].fields["model"] == default


# --- replay -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [M2, M15])
def test_replay_reproduces_with_the_server_gone(st, fake, monkeypatch, model) -> None:
    sid = grow(st, OpenAIBackend(max_retries=0), model=model).step_ids[0]
    calls = len(fake.calls)
    fake.stop()
    monkeypatch.delenv("OPENAI_API_KEY")
    rep = reproduce(st, sid, replay=True)
    assert rep.matches and rep.got == st.step(sid).result.canvas_id
    assert len(fake.calls) == calls == 1


# --- the key is never written -----------------------------------------------------------------


def test_the_api_key_is_written_nowhere(st, fake) -> None:
    grow(st)
    fake.script("unauthorized")
    with pytest.raises(PermanentBackendError):
        grow(st)
    fake.script("moderation")
    with pytest.raises(SafetyRefusal):
        grow(st)
    fake.script("wrong_size")  # a billed attempt, so `exq cost` lists one
    with pytest.raises(DimensionMismatch):
        grow(st)
    grow(st, n=2, seed=8)

    env = {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake.base_url}
    runner = CliRunner(env=env)

    def exq(*args: str, code: int = 0) -> str:
        res = runner.invoke(cli, ["--store", str(st.root), *args])
        assert res.exit_code == code, (res.output, res.exception)
        return res.output

    fake.script("unauthorized")
    failing = exq("step", "s", "--backend", "openai", "--model", M2, "--px", "32", code=1)
    assert "PermanentBackendError" in failing and "attempt" in failing
    rendered = [failing, exq("log", "s"), exq("attempts", "s"), exq("cost", "s")]
    rendered += [exq("log", "s", "-b", b) for b in heads(st)]
    ids = {sid for head in heads(st).values() for sid, _ in st.history(head)}
    ids |= {line.id for line in st.attempts("s")}
    rendered += [exq("show", oid) for oid in sorted(ids)]
    assert "billed" in rendered[3] and "SafetyRefusal" in rendered[2]
    rendered += [json.dumps(e.data) for e in st.events("s")]

    # the key really was in use: every request carried it
    assert len(fake.calls) == 6
    assert all(c.headers["authorization"] == f"Bearer {KEY}" for c in fake.calls)
    stored = files(st.root)
    assert any(name.startswith("objects") for name in stored) and len(stored) > 20
    for needle in (KEY, SECRET):
        assert [n for n, data in stored.items() if needle.encode() in data] == []
        assert [text for text in rendered if needle in text] == []


def test_a_trickling_answer_ends_at_the_total_deadline(st, fake) -> None:
    """One byte every 20 ms resets any per-read timeout; the call's deadline still ends
    it, before the answer is through, and the step is a TransientBackendError."""
    fake.script(Behaviour("trickle", seconds=0.02))
    before = heads(st)
    impl = OpenAIBackend(max_retries=0, timeout=1.0)
    with pytest.raises(TransientBackendError, match="did not answer within 1s"):
        grow(st, impl)
    impl.close()
    (call,) = fake.calls
    assert 0 < call.bytes_sent < call.body_bytes  # the client stopped reading mid-answer
    assert heads(st) == before and session_spent(st, "s") == 0
    (line,) = st.attempts("s")
    assert line.kind == "TransientBackendError"


def test_impossible_usage_is_a_decode_error_counted_at_the_estimate(st, fake) -> None:
    """A provider reporting negative tokens must not make the session's spend negative
    (every later step would then pass the budget): the answer is kept, the step is a
    DecodeError attempt, and the call counts at its estimate."""
    fake.script(Behaviour("bad_usage"))
    est = run_step(
        st,
        "s",
        dry_run=True,
        backend="openai",
        model=M2,
        extension_px=L,
        overlap_px=OV,
        seed=7,
        quality="low",
    ).preview["estimate_micro_usd"]
    with pytest.raises(DecodeError, match=r"impossible token usage \(output_tokens=-5000\)"):
        grow(st, OpenAIBackend(max_retries=0))
    (line,) = st.attempts("s")
    att = st.objects.get_manifest(line.id, Attempt)
    assert att.response.cost_micro_usd == est > 0
    assert session_spent(st, "s") == est
    record = st.objects.get_manifest(att.response.response_id, BackendResponse)
    assert record.usage.output_tokens == -5000  # the raw answer, as it came
    assert record.metadata["usage_rejected"].startswith("the backend reported impossible")
    assert record.output_ids and all(record.output_ids)  # its image kept too


def test_more_images_than_asked_for_are_dropped(st, fake) -> None:
    """40 images for ``-n 1``: one candidate, one branch; the record says what was dropped."""
    fake.script(Behaviour("n_images", n=40))
    out = grow(st, OpenAIBackend(max_retries=0))
    assert len(out.step_ids) == 1 and list(out.branches) == ["main"]
    assert set(heads(st)) == {"main"}
    step = st.step(out.step_ids[0])
    record = st.objects.get_manifest(step.response.response_id, BackendResponse)
    assert len(record.output_ids) == 1 and record.metadata["outputs_dropped"] == "39"


@pytest.mark.parametrize(
    "echo",
    [
        pytest.param(lambda k: k, id="whole"),
        pytest.param(lambda k: k[3:], id="without-sk-prefix"),
        pytest.param(lambda k: k[len("sk-test-") :], id="random-part-only"),
        pytest.param(lambda k: k[:-6] + "******", id="tail-masked"),
        pytest.param(lambda k: json.dumps({"key": k[5:]}), id="inside-json"),
    ],
)
def test_scrub_takes_out_any_long_run_of_the_key(monkeypatch, echo) -> None:
    from exquisite_store.backends.openai_backend import scrub

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    said = scrub(f"code={echo(KEY)}; request id {echo(KEY)}.")
    assert SECRET[:10] not in said and SECRET[-10:] not in said
    assert said.startswith("code=") and said.endswith(".")
    assert scrub("Incorrect API key provided.") == "Incorrect API key provided."


def test_the_http_clients_debug_trace_is_scrubbed(st, fake, caplog) -> None:
    """A header echoing the key reaches httpcore's DEBUG trace: the record is scrubbed."""
    import logging

    caplog.set_level(logging.DEBUG)
    fake.script(Behaviour(headers={"x-request-id": KEY, "x-echo": KEY[3:]}))
    out = grow(st)
    assert st.step(out.step_ids[0]).response.provider_request_id == "[key]"
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "x-echo" in logged, "the trace never printed the headers: nothing was tested"
    assert SECRET not in logged
