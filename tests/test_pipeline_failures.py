"""Every way a backend can misbehave: the outcome, the attempt record, and heads that stay put."""

from __future__ import annotations

import numpy as np
import pytest

from exquisite_store.errors import (
    BranchMoved,
    Cancelled,
    ConfigError,
    DecodeError,
    DimensionMismatch,
    PermanentBackendError,
    StepFailure,
    TransientBackendError,
)
from exquisite_store.manifests import Attempt, BackendResponse, Validation
from exquisite_store.pipeline.reproduce import reproduce
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck
from exquisite_store.store.gc import gc

from .fakes.backends import (
    ContextRepaintBackend,
    EmptyBackend,
    FlakyBackend,
    GreyscaleBackend,
    HookBackend,
    NotAnImageBackend,
    PatternBackend,
    PermanentErrorBackend,
    RGBABackend,
    TimeoutBackend,
    WrongSizeBackend,
    pattern,
)
from .helpers import TickClock, rng_image

H, W, L, OV = 48, 70, 24, 6
NO_WAIT = (0.0, 0.0)


@pytest.fixture
def mem() -> Store:
    st = Store.memory(tile_size=64, clock=TickClock())
    st.create_session("s", rng_image(H, W, seed=5))
    return st


def step(store: Store, impl, **overrides):
    params = {"extension_px": L, "overlap_px": OV, "seed": 11, **overrides}
    return run_step(store, "s", backend_impl=impl, retry_delays=NO_WAIT, **params)


def heads(store: Store) -> dict[str, str]:
    return dict(store.refs.branches("s"))


def check_attempt(store: Store, exc: StepFailure, kind: str, parent: str = "") -> Attempt:
    """The one attempt: logged with kind and message, a report, and a failed event."""
    (line,) = store.attempts("s")
    assert (line.kind, line.message) == (kind, exc.message)
    assert exc.details["attempt_id"] == line.id
    attempt = store.objects.get_manifest(line.id, Attempt)
    assert (attempt.failure_kind, attempt.message) == (kind, exc.message)
    assert attempt.branch == "main"
    assert attempt.parent == (parent or store.refs.head("s", "main"))
    assert attempt.recipe is not None and attempt.request is not None  # what was asked, kept
    report = store.objects.get_manifest(attempt.validation_id, Validation)
    assert not report.ok and any(not c.ok for c in report.checks)
    failed = [e for e in store.events("s") if e.type == "failed"]
    assert [(e.data["attempt_id"], e.data["kind"]) for e in failed] == [(line.id, kind)]
    job = failed[0].data["job"]
    assert not [e for e in store.events("s") if e.type == "succeeded" and e.data["job"] == job]
    return attempt


# --- outputs that must not commit -----------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "decoded"),
    [
        (WrongSizeBackend, DimensionMismatch, 3),
        (NotAnImageBackend, DecodeError, None),
        (GreyscaleBackend, DecodeError, 0),
    ],
    ids=["wrong-size", "not-an-image", "greyscale"],
)
def test_bad_output_is_an_attempt_and_moves_no_head(mem, make, error, decoded) -> None:
    backend = make()
    before = heads(mem)
    with pytest.raises(error) as info:
        step(mem, backend)
    assert heads(mem) == before
    attempt = check_attempt(mem, info.value, error.kind)
    report = mem.objects.get_manifest(attempt.validation_id, Validation)
    assert [c.name for c in report.checks] == [error.kind]
    assert (report.expected_width, report.expected_height) == (W + L, H)
    # the whole answer is kept for replay; the candidate's image whenever it decoded
    # (a greyscale one too, as returned, so you can see what was refused)
    response = mem.objects.get_manifest(attempt.response.response_id, BackendResponse)
    assert response.output_ids == (attempt.response.output_id,)
    if decoded is None:
        assert attempt.response.output_id == ""
    else:
        raw = mem.objects.get_image(attempt.response.output_id)
        if decoded:
            assert raw.shape[2] == decoded
        else:
            assert raw.ndim == 2  # greyscale, kept as it came
    assert backend.calls == 1  # a bad answer is not retried


def test_no_image_at_all_is_a_decode_error(mem) -> None:
    before = heads(mem)
    with pytest.raises(DecodeError, match="no image") as info:
        step(mem, EmptyBackend())
    assert heads(mem) == before
    attempt = check_attempt(mem, info.value, "DecodeError")
    response = mem.objects.get_manifest(attempt.response.response_id, BackendResponse)
    assert response.output_ids == ()


@pytest.mark.parametrize(
    ("make", "error", "calls"),
    [(TimeoutBackend, TransientBackendError, 3), (PermanentErrorBackend, PermanentBackendError, 1)],
    ids=["timeout", "permanent"],
)
def test_backend_errors_retry_only_when_transient(mem, make, error, calls) -> None:
    backend = make()
    before = heads(mem)
    with pytest.raises(error) as info:
        step(mem, backend)
    assert backend.calls == calls  # 1 + len(retry_delays) tries for a transient error
    assert heads(mem) == before
    attempt = check_attempt(mem, info.value, error.kind)
    assert attempt.response is None  # nothing came back


def test_a_backend_that_retries_itself_is_not_retried_again(mem) -> None:
    backend = TimeoutBackend()
    backend.retries_inside = True
    with pytest.raises(TransientBackendError):
        step(mem, backend)
    assert backend.calls == 1


def test_transient_then_success_commits_after_retries(mem) -> None:
    backend = FlakyBackend(failures=2)
    out = step(mem, backend)
    assert backend.calls == 3 and out.calls == 3
    assert out.step_ids and not out.attempt_ids and not mem.attempts("s")
    assert mem.refs.head("s", "main") == out.step_ids[0]
    assert [e.type for e in mem.events("s")][-1] == "succeeded"
    assert not [e for e in mem.events("s") if e.type == "failed"]


def test_transient_errors_past_the_retries_fail(mem) -> None:
    backend = FlakyBackend(failures=3)
    with pytest.raises(TransientBackendError):
        step(mem, backend)
    assert backend.calls == 3
    assert [line.kind for line in mem.attempts("s")] == ["TransientBackendError"]


# --- outputs that commit despite misbehaving ------------------------------------------


def test_rgba_output_commits_with_alpha_dropped(mem) -> None:
    root = mem.refs.head("s", "main")
    parent = mem.canvas_pixels(mem.step(root))
    out = step(mem, RGBABackend(), overlap_px=0, seam="hard")
    s = mem.step(out.step_ids[0])
    child = mem.canvas_pixels(s)
    assert child.shape == (H, W + L, 3) and mem.canvas(s).mode == "RGB"
    assert np.array_equal(child[:, :W], parent)
    frame = pattern(H, s.recipe.context_px + L, PatternBackend.salt(11, 0))
    assert np.array_equal(child[:, W:], frame[:, -L:])  # colour kept even where alpha was 0
    assert mem.objects.get_image(s.response.output_id).shape[2] == 4  # the raw output, as returned


@pytest.mark.parametrize("seam", ["hard", "feather", "match"])
def test_repainted_context_is_restored_and_the_seam_zone_blended(mem, seam) -> None:
    parent = mem.canvas_pixels(mem.step(mem.refs.head("s", "main")))
    out = step(mem, ContextRepaintBackend(), seam=seam)
    s = mem.step(out.step_ids[0])
    child = mem.canvas_pixels(s)
    assert np.array_equal(child[:, : W - OV], parent[:, : W - OV])  # I2, bit for bit
    zone_err = np.abs(child[:, W - OV : W].astype(int) - parent[:, W - OV : W]).mean()
    # hard keeps the zone; feather blends toward the shifted rendering; match blends
    # toward the rendering with the shift fitted away (only clipped pixels stay off)
    if seam == "hard":
        assert zone_err == 0
    elif seam == "feather":
        assert zone_err > 4
    else:
        assert zone_err < 1.5
    scores = s.result.scores
    assert scores.drift_mean_abs_milli > 10_000 and scores.drift_changed_permille > 900
    if seam == "match":
        assert scores.offset_milli[0] < -20_000 and scores.offset_milli[1] > 12_000
        assert scores.corrected_drift_mean_abs_milli < scores.drift_mean_abs_milli // 5
    report = mem.objects.get_manifest(s.result.validation_id, Validation)
    assert report.ok and report.immutable_mismatch_px == 0


def test_one_bad_candidate_of_three(mem) -> None:
    root = mem.refs.head("s", "main")
    out = step(mem, WrongSizeBackend(bad={2}), n=3)
    assert len(out.step_ids) == 2 and len(out.attempt_ids) == 1
    assert [type(f) for f in out.failures] == [DimensionMismatch]
    assert out.branches == {"main": out.step_ids[0], "main~2": out.step_ids[1]}
    assert heads(mem) == {"main": out.step_ids[0], "main~2": out.step_ids[1]}
    assert all(mem.step(sid).parent == root for sid in out.step_ids)
    assert [mem.step(sid).response.candidate for sid in out.step_ids] == [0, 1]
    attempt = mem.objects.get_manifest(out.attempt_ids[0], Attempt)
    assert attempt.failure_kind == "DimensionMismatch" and attempt.response.candidate == 2
    assert mem.objects.get_image(attempt.response.output_id).shape[0] == H + 1
    types = [e.type for e in mem.events("s")]
    assert types.count("failed") == 1 and types[-1] == "succeeded"
    assert mem.events("s")[-1].data["attempt_ids"] == out.attempt_ids


# --- a branch that moves while the model works ---------------------------------------


def test_branch_moved_keeps_the_step_reachable(store) -> None:
    _, root = store.create_session("s", rng_image(H, W, seed=5))
    first = step(store, PatternBackend()).step_ids[0]

    def other_writer(_request) -> None:
        store.refs.update("s", "main", first, root, "someone else reset main")

    with pytest.raises(BranchMoved) as info:
        step(store, HookBackend(other_writer))
    assert heads(store) == {"main": root}  # where the other writer left it
    sid = info.value.details["step_id"]
    attempt = check_attempt(store, info.value, "BranchMoved", parent=first)
    assert attempt.step_id == sid
    assert store.step(sid).parent == first  # a whole step, stored
    orphan = store.objects.put_text("unreachable")
    assert fsck(store).ok and sid not in fsck(store).dangling
    removed = gc(store, grace_s=0).removed
    assert orphan in removed and sid not in removed
    kept = store.step(sid)
    assert store.canvas_pixels(kept).shape == (H, W + 2 * L, 3)
    assert fsck(store).ok


# --- parameters that cannot work: ConfigError naming the field ------------------------


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"extension_px": 0}, "extension_px"),
        ({"extension_px": -1}, "extension_px"),
        ({"overlap_px": W}, "overlap_px"),
        ({"overlap_px": H, "direction": "up"}, "overlap_px"),
        ({"overlap_px": 8, "extension_px": 4, "immutable_policy": "all-old"}, "overlap_px"),
        ({"overlap_px": 8, "context_px": 4}, "overlap_px"),
        ({"direction": "sideways"}, "direction"),
        ({"seam": "smudge"}, "seam"),
        ({"backend": "dall-e"}, "backend"),
        ({"immutable_policy": "none"}, "immutable_policy"),
        ({"n": 0}, "n"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_config_errors_name_the_field(mem, overrides, field) -> None:
    before = heads(mem)
    backend = PatternBackend()
    with pytest.raises(ConfigError) as info:
        step(mem, backend, **overrides)
    assert info.value.field == field
    assert field in info.value.message
    assert backend.calls == 0 and heads(mem) == before and not mem.attempts("s")
    assert not [e for e in mem.events("s") if e.type == "succeeded"]


# --- reproduce ------------------------------------------------------------------------


class ShiftedPattern(PatternBackend):
    @staticmethod
    def salt(seed: int, candidate: int) -> int:
        return PatternBackend.salt(seed + 1, candidate)


def test_reproduce_with_the_backend_and_by_replay(mem) -> None:
    sid = step(mem, PatternBackend(), seam="match").step_ids[0]
    before, events = heads(mem), len(mem.events("s"))
    rerun = reproduce(mem, sid, backend=PatternBackend())
    assert rerun.matches and rerun.got == mem.step(sid).result.canvas_id
    replayed = reproduce(mem, sid, replay=True)
    assert replayed.matches
    assert not reproduce(mem, sid, backend=ShiftedPattern()).matches
    assert heads(mem) == before and len(mem.events("s")) == events and not mem.attempts("s")


def test_a_patchmatch_fill_can_be_cancelled() -> None:
    import threading
    import time

    from exquisite_store.backends.base import BackendRequest
    from exquisite_store.backends.patchmatch import PatchMatchBackend

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (768, 768, 3), dtype=np.uint8)  # a fill of many seconds
    mask = np.full((768, 768, 4), 255, np.uint8)
    mask[:, 256:, 3] = 0
    cancel = threading.Event()
    req = BackendRequest(image=image, mask=mask, prompt="", n=1, seed=1, model="", request_id="r")
    threading.Timer(0.5, cancel.set).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled, match="cancelled"):
        PatchMatchBackend().generate(req, cancel)
    assert time.monotonic() - t0 < 3.0
