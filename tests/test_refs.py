"""Refs: compare-and-swap, reflogs, name validation, stale locks."""

from __future__ import annotations

import os

import pytest

from exquisite_store.errors import BranchMoved, InvalidName, LockHeld, NotFound
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck
from exquisite_store.store.refs import check_name

from .helpers import rng_image


@pytest.fixture
def session(store: Store) -> str:
    store.create_session("s1", rng_image(32, 48))
    return "s1"


def _another_step(store: Store) -> str:
    return store.objects.put_text("not really a step")  # any id works for ref mechanics


def test_cas_moves_and_logs(store: Store, session: str) -> None:
    root = store.refs.head(session, "main")
    new = _another_step(store)
    store.refs.update(session, "main", root, new, "test move")
    assert store.refs.head(session, "main") == new
    log = store.refs.reflog(f"{session}/heads/main")
    assert [(e.old, e.new, e.message) for e in log] == [
        (None, root, "root: import start image"),
        (root, new, "test move"),
    ]


def test_cas_with_stale_expectation_raises_branch_moved(store: Store, session: str) -> None:
    root = store.refs.head(session, "main")
    a, b = _another_step(store), store.objects.put_text("b")
    store.refs.update(session, "main", root, a, "first")
    with pytest.raises(BranchMoved) as err:
        store.refs.update(session, "main", root, b, "second")
    assert err.value.expected == root and err.value.actual == a
    assert store.refs.head(session, "main") == a
    assert len(store.refs.reflog(f"{session}/heads/main")) == 2


def test_creating_an_existing_branch_is_branch_moved(store: Store, session: str) -> None:
    with pytest.raises(BranchMoved):
        store.refs.update(session, "main", None, _another_step(store), "again")


def test_unknown_branch_is_not_found(store: Store, session: str) -> None:
    with pytest.raises(NotFound):
        store.refs.head(session, "nope")


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a/b",
        "..",
        "a..b",
        "../x",
        "/abs",
        "a\0b",
        "x" * 65,
        ".hidden",
        "-flag",
        "main.lock",
        "sp ace",
        "tab\t",
        "ünï",
        "a\\b",
        "end.",
    ],
)
def test_bad_names(bad: str) -> None:
    with pytest.raises(InvalidName):
        check_name(bad)


@pytest.mark.parametrize("good", ["main", "main~2", "v1.2", "my_branch-3", "A", "x" * 64])
def test_good_names(good: str) -> None:
    assert check_name(good) == good


def test_stale_lock_is_reported_with_pid_and_age_never_broken(store: Store, session: str) -> None:
    lock = store.root / "refs" / session / "heads" / "main.lock"
    lock.write_text("pid 999999\n")
    old = os.stat(lock).st_mtime - 120
    os.utime(lock, (old, old))
    root = store.refs.head(session, "main")
    with pytest.raises(LockHeld) as err:
        store.refs.update(session, "main", root, _another_step(store), "blocked")
    assert err.value.pid == 999999
    assert err.value.age_s >= 119
    assert "not running" in err.value.message
    assert lock.exists(), "a lock is never broken automatically"
    assert store.refs.head(session, "main") == root
    rep = fsck(store)
    assert any("main.lock" in line and "999999" in line for line in rep.locks)


def test_head_branch(store: Store, session: str) -> None:
    assert store.refs.current_branch(session) == "main"
    store.refs.update(session, "other", None, store.refs.head(session, "main"), "branch")
    store.refs.set_current_branch(session, "other")
    assert store.refs.current_branch(session) == "other"


def test_unlock_keeps_live_locks_and_removes_dead_ones(store: Store, session: str) -> None:
    from click.testing import CliRunner

    from exquisite_store.cli import cli

    heads = store.root / "refs" / session / "heads"
    live = heads / "live.lock"
    live.write_text(f"pid {os.getpid()}\n")
    dead = heads / "main.lock"
    dead.write_text("pid 999999\n")
    res = CliRunner().invoke(cli, ["--store", str(store.root), "unlock"])
    assert res.exit_code == 0, res.output
    assert "live.lock" in res.output and "kept: its process is alive" in res.output
    assert "main.lock" in res.output and "removed" in res.output
    assert live.exists() and not dead.exists()
    root = store.refs.head(session, "main")
    store.refs.update(session, "main", root, _another_step(store), "works again")


def test_unlock_recovers_a_reflog_line_the_dead_writer_did_not_write(
    store: Store, session: str
) -> None:
    from exquisite_store.store.locks import unlock

    root = store.refs.head(session, "main")
    moved = _another_step(store)
    ref = store.root / "refs" / session / "heads" / "main"
    ref.write_text(moved + "\n")  # the ref moved ...
    (ref.parent / "main.lock").write_text("pid 999999\n")  # ... and its writer died
    [report] = unlock(store)
    assert report.action == "removed; reflog line recovered"
    last = store.refs.reflog(f"{session}/heads/main")[-1]
    assert (last.old, last.new) == (root, moved)
