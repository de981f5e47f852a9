"""Listing refs by prefix without walking the store, and reading a log from a cursor.

The viewer lists sessions and branches on every page and follows event logs live:
both must cost what they return, not the size of the whole store or log.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from exquisite_store.store import Store
from exquisite_store.store import storage as storage_module
from exquisite_store.store.storage import BaseStorage, DiskStorage, MemoryStorage

from .helpers import rng_image

OID = "ab" + "0" * 62
REFS = ["a/HEAD", "a/heads/main", "a/heads/side", "a/session", "ab/heads/main", "b/session"]


@pytest.fixture(params=["memory", "disk"])
def storage(request, tmp_path: Path) -> BaseStorage:
    if request.param == "memory":
        st: BaseStorage = MemoryStorage()
    else:
        (tmp_path / "tmp").mkdir()
        st = DiskStorage(tmp_path)
    for name in REFS:
        st.cas_ref(name, None, OID)
    return st


class TestListRefs:
    def test_by_prefix(self, storage: BaseStorage) -> None:
        assert storage.list_refs() == REFS
        assert storage.list_refs("a/heads/") == ["a/heads/main", "a/heads/side"]
        assert storage.list_refs("a/") == ["a/HEAD", "a/heads/main", "a/heads/side", "a/session"]
        assert storage.list_refs("a") == REFS[:5]  # a prefix, not a folder: "ab" too
        assert storage.list_refs("a/heads/s") == ["a/heads/side"]
        assert storage.list_refs("c/") == [] and storage.list_refs("c/heads/") == []

    def test_by_depth(self, storage: BaseStorage) -> None:
        assert storage.list_refs(depth=2) == ["a/HEAD", "a/session", "b/session"]
        assert storage.list_refs("a/", depth=2) == ["a/HEAD", "a/session"]
        assert storage.list_refs(depth=1) == []
        assert storage.list_refs(depth=3) == REFS


def scanned(monkeypatch) -> list[str]:
    """Every folder DiskStorage lists from now on."""
    seen: list[str] = []
    real = os.scandir

    def spy(path):
        seen.append(str(path))
        return real(path)

    monkeypatch.setattr(storage_module.os, "scandir", spy)
    return seen


def test_disk_lists_only_the_prefix_folder(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "tmp").mkdir()
    st = DiskStorage(tmp_path)
    for name in REFS:
        st.cas_ref(name, None, OID)
    (tmp_path / "refs/a/heads/main.lock").write_text("pid 1\n")  # a writer's lock: no ref
    seen = scanned(monkeypatch)
    assert st.list_refs("a/heads/") == ["a/heads/main", "a/heads/side"]
    assert seen == [str(tmp_path / "refs/a/heads")]
    seen.clear()
    assert st.list_refs(depth=2) == ["a/HEAD", "a/session", "b/session"]
    # the top folder and each session's folder, never a heads/ folder
    assert sorted(seen) == sorted(str(tmp_path / "refs" / d) for d in ("", "a", "ab", "b"))


def test_sessions_and_branches_read_what_they_list(tmp_path: Path, monkeypatch) -> None:
    """50 sessions x 20 branches: sessions() reads 51 folders, branches() one."""
    st = Store.init(tmp_path / "store", tile_size=64)
    image = rng_image(16, 16, seed=1)
    for i in range(50):
        _, root = st.create_session(f"s{i:02d}", image)
        for b in range(19):
            st.refs.update(f"s{i:02d}", f"b{b:02d}", None, root, "test")
    seen = scanned(monkeypatch)
    assert st.refs.sessions() == [f"s{i:02d}" for i in range(50)]
    assert len(seen) == 51 and not [p for p in seen if p.endswith("heads")]
    seen.clear()
    assert len(st.refs.branches("s07")) == 20
    assert seen == [str(st.root / "refs/s07/heads")]


def test_symlinks_under_refs_are_not_listed(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    st = DiskStorage(tmp_path)
    st.cas_ref("a/heads/main", None, OID)
    outside = tmp_path / "outside"
    (outside / "heads").mkdir(parents=True)
    (outside / "heads/evil").write_text(OID)
    (tmp_path / "refs/evil").symlink_to(outside, target_is_directory=True)
    (tmp_path / "refs/a/heads/alias").symlink_to(tmp_path / "refs/a/heads/main")
    assert st.list_refs() == ["a/heads/main"]


class TestReadLogFrom:
    def test_reads_each_line_once(self, storage: BaseStorage) -> None:
        assert storage.read_log_from("sessions/a/events") == ([], 0)
        storage.append_log("sessions/a/events", b"1")
        storage.append_log("sessions/a/events", b"2")
        lines, cursor = storage.read_log_from("sessions/a/events")
        assert lines == [b"1", b"2"]
        assert storage.read_log_from("sessions/a/events", cursor) == ([], cursor)
        storage.append_log("sessions/a/events", b"3")
        lines, later = storage.read_log_from("sessions/a/events", cursor)
        assert lines == [b"3"] and later != cursor
        assert storage.read_log_from("sessions/a/events", later) == ([], later)


def test_a_line_being_written_waits_for_its_end(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    st = DiskStorage(tmp_path)
    st.append_log("sessions/a/events", b"1")
    lines, cursor = st.read_log_from("sessions/a/events")
    with open(tmp_path / "logs/sessions/a/events", "ab") as f:
        f.write(b'{"half')  # a writer mid-append (or killed there)
    assert st.read_log_from("sessions/a/events", cursor) == ([], cursor)
    st.append_log("sessions/a/events", b"2")  # starts on a new line: the torn one stays alone
    lines, _ = st.read_log_from("sessions/a/events", cursor)
    assert lines == [b'{"half', b"2"]
    assert st.read_log("sessions/a/events") == [b"1", b'{"half', b"2"]


@pytest.mark.parametrize("kind", ["memory", "disk"])
def test_store_tail_events_follows_the_log(kind: str, tmp_path: Path) -> None:
    st = Store.memory() if kind == "memory" else Store.init(tmp_path / "store")
    st.create_session("g", rng_image(16, 16, seed=2))
    for i in range(5):
        st.append_event("g", "progress", job="j", phase=f"p{i}")
    new, cursor = st.tail_events("g", 0, after=3)
    assert [e.seq for e in new] == [4, 5]
    assert st.tail_events("g", cursor, after=5) == ([], cursor)
    st.append_event("g", "succeeded", job="j")
    new, _ = st.tail_events("g", cursor, after=5)
    assert [(e.seq, e.type) for e in new] == [(6, "succeeded")]
    assert [e.seq for e in st.events("g")] == [1, 2, 3, 4, 5, 6]
