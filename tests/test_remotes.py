"""Remotes: push, pull and clone between stores, fast-forward only, nothing copied twice."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from exquisite_store import core
from exquisite_store.cli import cli
from exquisite_store.core import remotes as rem
from exquisite_store.errors import AlreadyExists, IntegrityError, NotFound, UserError
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck
from exquisite_store.store.storage import BaseStorage

from .fakes.backends import PatternBackend
from .helpers import TickClock, rng_image


def make_store(path: Path, session: str | None = "s") -> Store:
    store = Store.init(path, clock=TickClock())
    if session:
        start = core.StartImage(rng_image(40, 64, seed=1), "start.png")
        core.create_session(store, core.new_session(session, start, title="S"))
    return store


def grow(store: Store, session: str = "s", branch: str | None = None, seed: int = 1) -> str:
    req = core.step_request(
        store,
        session,
        {"extension_px": 16, "overlap_px": 4, "seed": seed},
        branch=branch,
    )
    return core.grow(store, req, backend=PatternBackend()).step_ids[0]


def all_objects(store: Store) -> set[str]:
    return {oid for oid, _ext in store.storage.list_objects()}


class Counting(BaseStorage):
    """A storage that counts every call made to it (a remote's requests)."""

    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def __getattribute__(self, name: str):
        if name in ("inner", "calls", "__class__", "__dict__"):
            return object.__getattribute__(self, name)
        attr = getattr(object.__getattribute__(self, "inner"), name)
        if callable(attr) and not name.startswith("_"):
            object.__getattribute__(self, "calls").append(name)
        return attr


@pytest.fixture
def pair(tmp_path):
    local = make_store(tmp_path / "local")
    remote = make_store(tmp_path / "remote", session=None)
    rem.add_remote(local, "origin", str(tmp_path / "remote"))
    return local, remote


def test_push_then_clone_gives_the_same_ids_and_clean_stores(pair, tmp_path) -> None:
    local, remote = pair
    for i in range(3):
        grow(local, seed=i)
    core.create_branch(local, "s", "alt", local.refs.head("s", "main"))
    grow(local, branch="alt", seed=9)
    report = rem.push(local, "origin")
    assert not report.refused
    remote = Store.open(remote.root)
    assert remote.refs.branches("s") == local.refs.branches("s")
    assert remote.refs.session_pointer("s") == local.refs.session_pointer("s")
    assert remote.refs.current_branch("s") == "main"
    reachable_local = {oid for oid in all_objects(local)}
    assert all_objects(remote) <= reachable_local
    assert report.transfer.copied == len(all_objects(remote))
    assert fsck(remote).ok and fsck(local).ok
    assert local.refs.tracking("s", "origin") == local.refs.branches("s")

    clone, rep = rem.clone(str(remote.root), tmp_path / "clone")
    assert not rep.refused
    assert clone.refs.branches("s") == local.refs.branches("s")
    assert all_objects(clone) == all_objects(remote)
    assert fsck(clone).ok
    assert rem.remotes(clone) == {"origin": str(remote.root)}


def test_a_push_of_one_new_step_copies_only_that_step_and_asks_little(pair) -> None:
    local, remote = pair
    for i in range(5):
        grow(local, seed=i)
    rem.push(local, "origin")
    before = all_objects(Store.open(remote.root))
    grow(local, seed=77)
    new_objects = all_objects(local) - before
    report = rem.push(local, "origin")
    assert report.transfer.copied == len(new_objects)
    # the walk stops at what the remote has: the parent step and the shared tiles
    assert 1 <= report.transfer.present <= 8
    assert [m.status for m in report.moves if m.branch == "main"] == ["fast-forward"]

    # a push with nothing new: a handful of calls on the remote, no object read or written
    counting = Counting(Store.open(remote.root).storage)
    dst = Store(counting)
    report = rem.SyncReport()
    rem._send(local, dst, "s", None, report, None)
    assert {m.status for m in report.moves} == {"up to date"}
    assert report.transfer.copied == 0
    assert len(counting.calls) <= 6, counting.calls
    assert not {"put_object", "get_object", "cas_ref"} & set(counting.calls)


def test_a_diverged_push_is_refused_with_both_ids_and_moves_nothing(pair, tmp_path) -> None:
    local, remote = pair
    grow(local, seed=1)
    rem.push(local, "origin")
    other, _ = rem.clone(str(remote.root), tmp_path / "other")
    theirs = grow(other, seed=2)
    rem.push(other, "origin")
    ours = grow(local, seed=3)
    report = rem.push(local, "origin")
    [refused] = report.refused
    assert refused.branch == "main"
    assert ours[:12] in refused.reason and theirs[:12] in refused.reason
    assert Store.open(remote.root).refs.head("s", "main") == theirs
    # the CLI says so in one line per ref and exits 1
    res = CliRunner().invoke(cli, ["--store", str(local.root), "push"])
    assert res.exit_code == 1
    assert "error: refused: s:main has diverged" in res.output


def test_pull_fast_forwards_and_refuses_a_diverged_branch(pair, tmp_path) -> None:
    local, remote = pair
    grow(local, seed=1)
    rem.push(local, "origin")
    other, _ = rem.clone(str(remote.root), tmp_path / "other")
    theirs = grow(other, seed=2)
    rem.push(other, "origin")
    report = rem.pull(local, "origin")
    assert [m.status for m in report.moves if m.branch == "main"] == ["fast-forward"]
    assert local.refs.head("s", "main") == theirs
    # both grow: the pull fetches (tracking ref moves) but refuses to move main
    mine = grow(local, seed=3)
    theirs2 = grow(other, seed=4)
    rem.push(other, "origin")
    report = rem.pull(local, "origin")
    assert [m.branch for m in report.refused] == ["main"]
    assert local.refs.head("s", "main") == mine
    assert local.refs.tracking("s", "origin")["main"] == theirs2
    assert local.objects.has(theirs2)
    assert fsck(local).ok


def test_a_session_new_on_the_remote_is_whole_or_absent(pair) -> None:
    local, remote = pair
    grow(local, seed=1)
    report = rem.push(local, "origin", "s:main")
    remote = Store.open(remote.root)
    assert remote.refs.sessions() == ["s"]
    assert remote.session("s").title == "S"
    assert report.moves[-1].branch == "(session)"  # the pointer moved last


def test_session_settings_move_forward_and_a_conflict_is_refused(pair, tmp_path) -> None:
    local, remote = pair
    rem.push(local, "origin")
    core.set_budget(local, "s", "2.00")
    rem.push(local, "origin")
    assert Store.open(remote.root).session("s").budget_micro_usd == 2_000_000
    other, _ = rem.clone(str(remote.root), tmp_path / "other")
    core.set_budget(other, "s", "3.00")
    core.set_budget(local, "s", "4.00")
    rem.push(other, "origin")
    [refused] = rem.push(local, "origin").refused
    assert refused.branch == "(session)"
    assert Store.open(remote.root).session("s").budget_micro_usd == 3_000_000


def test_a_damaged_object_is_not_copied(pair) -> None:
    local, remote = pair
    sid = grow(local, seed=1)
    step = local.step(sid)
    damaged = step.result.validation_id
    path = local.storage.object_path(damaged)
    path.chmod(0o644)
    path.write_bytes(b'{"tampered": true}')
    with pytest.raises(IntegrityError, match="refusing to copy"):
        rem.push(local, "origin")
    remote = Store.open(remote.root)
    assert not remote.objects.has(damaged)
    assert remote.refs.sessions() == []
    assert fsck(remote).ok


def test_bad_remotes_are_clear_errors(pair, tmp_path) -> None:
    local, _remote = pair
    with pytest.raises(AlreadyExists):
        rem.add_remote(local, "origin", str(tmp_path / "remote"))
    with pytest.raises(UserError, match="is this store"):
        rem.add_remote(local, "self", str(local.root))
    with pytest.raises(NotFound, match="no remote 'nope'"):
        rem.push(local, "nope")
    runner = CliRunner()
    res = runner.invoke(cli, ["--store", str(local.root), "remote", "add", "x", str(tmp_path)])
    assert res.exit_code == 1 and res.output.startswith("error: no store at")
    res = runner.invoke(cli, ["--store", str(local.root), "push", "origin", "ghost"])
    assert res.exit_code == 1 and "no session 'ghost'" in res.output
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("keep me")
    res = runner.invoke(cli, ["clone", str(tmp_path / "remote"), str(tmp_path / "full")])
    assert res.exit_code == 1 and "not empty" in res.output
    assert (tmp_path / "full" / "mine.txt").read_text() == "keep me"


def test_the_cli_round_trip(tmp_path) -> None:
    local = make_store(tmp_path / "a")
    grow(local, seed=5)
    make_store(tmp_path / "b", session=None)
    runner = CliRunner()
    a = ["--store", str(tmp_path / "a")]
    assert runner.invoke(cli, [*a, "remote", "add", "origin", str(tmp_path / "b")]).exit_code == 0
    res = runner.invoke(cli, [*a, "remote", "list"])
    assert str(tmp_path / "b") in res.output
    res = runner.invoke(cli, [*a, "push", "s:main"])
    assert res.exit_code == 0, res.output
    assert "s:main  (none) -> " in res.output and "created" in res.output
    res = runner.invoke(cli, ["clone", str(tmp_path / "b"), str(tmp_path / "c")])
    assert res.exit_code == 0, res.output
    res = runner.invoke(cli, ["--store", str(tmp_path / "c"), "pull"])
    assert res.exit_code == 0 and "up to date" in res.output
    assert Store.open(tmp_path / "c").refs.head("s", "main") == local.refs.head("s", "main")
