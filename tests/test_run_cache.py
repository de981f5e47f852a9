"""The run cache: a request this store has answered is answered again with no call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from exquisite_store import core
from exquisite_store.backends.cache import CachedBackend
from exquisite_store.backends.openai_backend import OpenAIBackend
from exquisite_store.cli import cli
from exquisite_store.manifests import BackendResponse
from exquisite_store.pipeline.cost import session_spent
from exquisite_store.store import Store

from .fakes.openai_server import FakeOpenAI
from .helpers import TickClock, rng_image

KEY = "sk-test-cache-0123456789abcdef"
PARAMS = {
    "backend": "openai",
    "model": "gpt-image-2",
    "extension_px": 32,
    "overlap_px": 8,
    "quality": "low",
}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)
    yield fake_openai


@pytest.fixture
def st(tmp_path) -> Store:
    store = Store.init(tmp_path / "store", clock=TickClock())
    for name in ("s", "twin"):  # two sessions from the same start image
        start = core.StartImage(rng_image(96, 128, seed=3), "start.png")
        core.create_session(store, core.new_session(name, start))
    return store


def grow(store: Store, session: str = "s", *, fresh: bool = False, **params):
    root = store.session(session).root
    req = core.step_request(
        store, session, {**PARAMS, **params}, parent=root, branch=None, fresh=fresh
    )
    sid = core.grow(store, req).step_ids[0]
    return sid, store.step(sid)


def test_the_same_explicit_seed_step_twice_is_one_call(st, fake) -> None:
    first_id, first = grow(st, seed=11)
    second_id, second = grow(st, seed=11)
    assert len(fake.calls) == 1
    assert first.response.cost_micro_usd > 0
    assert second.response.cost_micro_usd == 0
    assert second.response.output_id == first.response.output_id
    assert second.result.canvas_id == first.result.canvas_id
    assert second.request.request_id == first.request.request_id
    assert core.cached_response_of(st, second_id) == first.response.response_id
    assert core.cached_response_of(st, first_id) is None
    assert session_spent(st, "s") == first.response.cost_micro_usd
    rec = st.objects.get_manifest(second.response.response_id, BackendResponse)
    assert rec.metadata["cached_response"] == first.response.response_id


def test_a_random_seed_or_fresh_is_a_new_call(st, fake) -> None:
    grow(st)
    grow(st)
    assert len(fake.calls) == 2  # two random seeds: two requests
    grow(st, seed=5)
    grow(st, seed=5, fresh=True)
    assert len(fake.calls) == 4
    _, again = grow(st, seed=5)  # answered from the newest answer to that request
    assert len(fake.calls) == 4 and again.response.cost_micro_usd == 0


def test_any_session_of_the_store_answers(st, fake) -> None:
    grow(st, "s", seed=21)
    _, twin = grow(st, "twin", seed=21)
    assert len(fake.calls) == 1
    assert twin.response.cost_micro_usd == 0
    assert session_spent(st, "twin") == 0


def test_dry_run_says_it_would_be_a_cache_hit(st, fake) -> None:
    runner = CliRunner()
    base = ["--store", str(st.root), "step", "s", "--from", st.session("s").root[:12]]
    opts = [
        "--backend=openai",
        "--model=gpt-image-2",
        "--px=32",
        "--overlap=8",
        "--quality=low",
        "--seed=9",
    ]
    res = runner.invoke(cli, [*base, *opts, "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "run cache" not in res.output
    res = runner.invoke(cli, [*base, *opts])
    assert res.exit_code == 0, res.output
    assert "run cache" not in res.output and len(fake.calls) == 1
    res = runner.invoke(cli, [*base, *opts, "--dry-run"])
    assert "run cache: this store has answered this request before" in res.output
    assert "estimate $0.00" in res.output
    res = runner.invoke(cli, [*base, *opts])
    assert res.exit_code == 0, res.output
    assert "answered from the run cache" in res.output and len(fake.calls) == 1
    res = runner.invoke(cli, [*base, *opts, "--fresh"])
    assert res.exit_code == 0, res.output
    assert "answered from the run cache" not in res.output and len(fake.calls) == 2


def test_a_swept_output_is_no_answer(st, fake) -> None:
    _, first = grow(st, seed=31)
    # the recorded response names an output that is gone: the cache must call again
    rec = st.objects.get_manifest(first.response.response_id, BackendResponse)
    cached = CachedBackend(OpenAIBackend(), st)
    assert cached.cached(first.request.request_id) == first.response.response_id
    path = st.storage.object_path(rec.output_ids[0])
    path.unlink()
    assert cached.cached(first.request.request_id) is None
