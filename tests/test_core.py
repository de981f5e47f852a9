"""The core API both front ends call: sessions, branches, steps, spending, jobs.

Also the fixes made when the core was drawn out of the CLI and the viewer: a store
error after a committed candidate, a dry run that waits for no lock, an abandoned
job that stays visible, an oversize image file, ``input_fidelity`` wired through.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from exquisite_store import core, imageio
from exquisite_store.cli import cli
from exquisite_store.errors import (
    AlreadyExists,
    ArtifactWriteError,
    ConfigError,
    ImageRejected,
    IntegrityError,
    InvalidName,
    UserError,
)
from exquisite_store.fixtures import fixture_names, read_fixture
from exquisite_store.manifests import Attempt
from exquisite_store.store import Store
from viewer import contexts

from .fakes.backends import PatternBackend
from .helpers import TickClock, rng_image


@pytest.fixture
def st(tmp_path) -> Store:
    store = Store.init(tmp_path / "store", clock=TickClock())
    start = core.StartImage(rng_image(40, 64, seed=1), "start.png")
    core.create_session(store, core.new_session("s", start, title="S", budget="1.50"))
    return store


def grow(store: Store, **params) -> list[str]:
    req = core.step_request(
        store,
        "s",
        {"extension_px": 16, "overlap_px": 4, "seed": 1, **params.pop("p", {})},
        **params,
    )
    return core.grow(store, req, backend=PatternBackend()).step_ids


# --- sessions ---------------------------------------------------------------------------


def test_a_session_from_bytes_a_file_and_a_fixture(st, tmp_path) -> None:
    png = imageio.encode_png(imageio.from_array(rng_image(30, 20, seed=2)))
    a = core.image_from_bytes(png, "upload.png")
    path = tmp_path / "f.png"
    path.write_bytes(png)
    b = core.image_from_file(str(path))
    c = core.image_from_fixture("odd.png")
    assert np.array_equal(a.pixels, b.pixels) and (a.source_name, b.source_name) == (
        "upload.png",
        "f.png",
    )
    assert c.pixels.shape == (211, 333, 3) and "odd.png" in fixture_names()
    for name, image in (("from-bytes", a), ("from-file", b), ("from-fixture", c)):
        _, root = core.create_session(st, core.new_session(name, image))
        assert st.step(root).source_name == image.source_name
    assert st.session("s").budget_micro_usd == 1_500_000


def test_a_refused_session_writes_nothing(tmp_path) -> None:
    start = core.image_from_fixture("flat.png")
    for bad in (
        lambda: core.new_session("../x", start),
        lambda: core.new_session("ok", start, title="t" * 201),
        lambda: core.new_session("ok", start, budget="lots"),
        lambda: core.image_from_fixture("../../etc/passwd"),
        lambda: read_fixture("nope.png"),
    ):
        with pytest.raises(UserError):
            bad()
    assert not (tmp_path / "store").exists()


def test_defaults_and_budget(st) -> None:
    sess = core.set_defaults(st, "s", {"px": "64", "seam": "feather", "seed": "5"})
    assert (sess.defaults.extension_px, sess.defaults.seam, sess.defaults.seed) == (
        64,
        "feather",
        5,
    )
    sess = core.set_defaults(st, "s", {"seed": "none"})
    assert sess.defaults.seed is None and sess.defaults.extension_px == 64
    with pytest.raises(ConfigError) as info:
        core.set_defaults(st, "s", {"n": "11"})
    assert info.value.field == "n" and st.session("s").defaults.n == 1
    assert core.set_budget(st, "s", "none").budget_micro_usd is None
    assert core.set_budget(st, "s", "$2.25").budget_micro_usd == 2_250_000


# --- branches ---------------------------------------------------------------------------


def test_branch_create_rename_drop_and_set_head(st) -> None:
    (a,) = grow(st)
    (b,) = grow(st)
    move = core.create_branch(st, "s", "side", a[:10])  # a unique prefix names the step
    assert move.new == a and st.refs.branches("s")["side"] == a
    with pytest.raises(AlreadyExists):
        core.create_branch(st, "s", "side", b)
    with pytest.raises(InvalidName):
        core.create_branch(st, "s", "../x", b)
    core.rename_branch(st, "s", "side", "left-alone")
    assert "side" not in st.refs.branches("s") and st.refs.branches("s")["left-alone"] == a
    # renaming HEAD's branch: HEAD follows
    core.rename_branch(st, "s", "main", "trunk")
    assert st.refs.current_branch("s") == "trunk"
    move = core.set_head(st, "s", a, "trunk")
    assert (move.old, move.new) == (b, a)
    assert st.refs.reflog("s/heads/trunk")[-1].message == f"set head to {a[:12]}"
    with pytest.raises(UserError, match="HEAD's branch"):
        core.drop_branch(st, "s", "trunk")
    move = core.drop_branch(st, "s", "left-alone")
    assert move.old == a and "left-alone" not in st.refs.branches("s")


def test_a_step_of_another_session_is_refused(st) -> None:
    core.create_session(st, core.new_session("t", core.image_from_fixture("flat.png")))
    other = st.refs.head("t", "main")
    with pytest.raises(UserError, match="belongs to another session"):
        core.create_branch(st, "s", "x", other)
    with pytest.raises(UserError, match="belongs to another session"):
        core.set_head(st, "s", other)


def test_branch_moves_take_the_writer_lock(st) -> None:
    """A branch is never created while gc holds the store exclusively."""
    (a,) = grow(st)
    started, done = threading.Event(), threading.Event()

    def gc_like() -> None:
        with st.storage.writer_lock(exclusive=True):
            started.set()
            time.sleep(0.4)
        done.set()

    t = threading.Thread(target=gc_like)
    t.start()
    started.wait(5)
    core.create_branch(st, "s", "late", a)
    assert done.is_set(), "the branch moved while gc held the store"
    t.join()


# --- steps -------------------------------------------------------------------------------


def test_a_dry_run_waits_for_no_lock(st) -> None:
    """An estimate reads only: gc holding the store does not block it."""
    req = core.step_request(st, "s", {"extension_px": 16, "overlap_px": 4, "backend": "patchmatch"})
    with st.storage.writer_lock(exclusive=True):
        box: dict = {}
        t = threading.Thread(target=lambda: box.update(p=core.estimate(st, req)))
        t.start()
        t.join(10)
        assert "p" in box, "the estimate waited for the exclusive lock"
    assert box["p"]["over_budget"] is False and box["p"]["estimate_usd"] == "$0.0000"


def test_a_store_error_after_a_committed_candidate_keeps_the_commit(st, monkeypatch) -> None:
    """Candidate 1 commits; candidate 2 meets a store error: the job succeeds with 1 step
    and records the other as an attempt (it used to report the whole job failed)."""
    from exquisite_store.pipeline import step as step_module

    real = step_module.build_candidate
    calls = {"n": 0}

    def flaky(objects, prepared, output, run):
        calls["n"] += 1
        if calls["n"] == 2:
            raise IntegrityError("object abc is damaged", expected="abc", got="def")
        return real(objects, prepared, output, run)

    monkeypatch.setattr(step_module, "build_candidate", flaky)
    req = core.step_request(
        st, "s", {"extension_px": 16, "overlap_px": 4, "seed": 3, "n": 2}, stage=False
    )
    out = core.grow(st, req, backend=PatternBackend())
    assert len(out.step_ids) == 1 and out.branches == {"main": out.step_ids[0]}
    (aid,) = out.attempt_ids
    att = st.objects.get_manifest(aid, Attempt)
    assert att.failure_kind == "ArtifactWriteError" and "object abc is damaged" in att.message
    (ev,) = [e for e in st.events("s") if e.type == "succeeded"]
    assert ev.data["step_ids"] == out.step_ids and ev.data["attempt_ids"] == [aid]


def test_a_store_error_before_any_commit_fails_the_job(st, monkeypatch) -> None:
    from exquisite_store.pipeline import step as step_module

    def broken(*_a, **_k):
        raise IntegrityError("object abc is damaged", expected="abc", got="def")

    monkeypatch.setattr(step_module, "build_candidate", broken)
    before = st.refs.branches("s")
    req = core.step_request(st, "s", {"extension_px": 16, "overlap_px": 4})
    with pytest.raises(IntegrityError):
        core.grow(st, req, backend=PatternBackend())
    assert st.refs.branches("s") == before
    assert st.events("s")[-1].type == "failed"


def test_a_branch_that_moved_since_the_request_grows_from_its_new_head(st) -> None:
    req = core.step_request(st, "s", {"extension_px": 16, "overlap_px": 4})
    (moved,) = grow(st)
    (sid,) = core.grow(st, req, backend=PatternBackend()).step_ids
    assert st.step(sid).parent == moved


def test_a_request_from_a_step_keeps_that_parent(st) -> None:
    root = st.refs.head("s", "main")
    grow(st)
    req = core.step_request(st, "s", {"extension_px": 16, "overlap_px": 4}, parent=root[:8])
    assert req.target.branch == "branch-1"
    (sid,) = core.grow(st, req, backend=PatternBackend()).step_ids
    assert st.step(sid).parent == root and st.refs.branches("s")["branch-1"] == sid


# --- spending -----------------------------------------------------------------------------


def test_spending_per_branch(st) -> None:
    (a,) = grow(st)
    grow(st)
    core.create_branch(st, "s", "side", a)
    s = core.spending(st, "s")
    assert [(b.branch, b.steps) for b in s.branches] == [("main", 2), ("side", 1)]
    assert s.budget_micro_usd == 1_500_000 and s.spent_micro_usd == 0


# --- jobs ---------------------------------------------------------------------------------


def test_an_abandoned_job_keeps_its_parent_and_stays_visible(st) -> None:
    """A job queued by a process that died is recorded on the step it grew from, so the
    session page shows it and the sessions index counts the same attempts."""
    head = st.refs.head("s", "main")
    req = core.step_request(st, "s", {"extension_px": 16, "overlap_px": 4})
    dead = _dead_pid()
    st.append_event("s", "queued", job="j1", pid=dead, parent=req.target.parent, branch="main")
    st.append_event("s", "queued", job="j0", pid=dead, parent=None, branch="main")  # older log
    assert core.mark_abandoned(st) == 2
    attempts = [st.objects.get_manifest(line.id, Attempt) for line in st.attempts("s")]
    assert [a.parent for a in attempts] == [head, st.session("s").root]
    page = contexts.session_context(st, "s")
    assert len(page["attempts"]) == 2
    (row,) = contexts.sessions_context(st)["sessions"]
    assert row["attempts"] == 2
    assert {s["state"] for s in core.job_states(st, "s").values()} == {"failed"}


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_contexts_need_no_app(st) -> None:
    grow(st)
    assert contexts.session_context(st, "s")["steps"] == 2
    assert contexts.step_context(st, st.refs.head("s", "main"))["session"] == "s"
    assert contexts.gallery_context(st, "s", contexts.PageOptions(branches=frozenset({"main"})))


# --- the CLI's edges ------------------------------------------------------------------------


def test_exq_step_says_when_no_attempt_could_be_recorded(st, monkeypatch) -> None:
    def full_disk(self, attempt):
        raise ArtifactWriteError("cannot write attempt: No space left on device")

    monkeypatch.setattr(Store, "record_attempt", full_disk)
    res = CliRunner().invoke(
        cli, ["--store", str(st.root), "step", "s", "--backend", "replay", "--px", "8"]
    )
    assert res.exit_code == 1
    assert "failed: PermanentBackendError" in res.output
    assert "no attempt could be recorded: cannot write attempt: No space left" in res.output
    assert "attempt  recorded" not in res.output


def test_an_oversize_image_file_is_too_large_not_undecodable(tmp_path) -> None:
    big = tmp_path / "big.png"
    with open(big, "wb") as f:  # sparse: costs no disk
        f.write(read_fixture("flat.png"))
        f.truncate(imageio.MAX_FILE_BYTES + 10)
    with pytest.raises(ImageRejected, match="is too large: over the limit of 256 MB"):
        imageio.read_image_file(str(big))
    res = CliRunner().invoke(cli, ["--store", str(tmp_path / "st"), "new", "s", str(big)])
    assert res.exit_code == 1 and "too large" in res.output
    assert not (tmp_path / "st").exists()
