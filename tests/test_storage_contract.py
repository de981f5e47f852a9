"""One contract suite run against every storage backend: memory, disk, moto, SeaweedFS."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from exquisite_store.errors import BranchMoved, NotFound
from exquisite_store.store.storage import BaseStorage, DiskStorage, MemoryStorage

OID = "ab" + "0" * 62
OID2 = "cd" + "1" * 62


@pytest.fixture(params=["memory", "disk", "moto", "seaweedfs"])
def storage(request, tmp_path: Path) -> BaseStorage:
    if request.param == "memory":
        return MemoryStorage()
    if request.param == "disk":
        (tmp_path / "tmp").mkdir()
        return DiskStorage(tmp_path)
    server = request.getfixturevalue("moto_s3" if request.param == "moto" else "seaweedfs")
    return server.storage()  # a fresh prefix; the probe has its own tests


class TestStorageContract:
    def test_put_if_absent(self, storage: BaseStorage) -> None:
        assert storage.put_object(OID, "txt", b"one") is True
        assert storage.put_object(OID, "txt", b"two") is False
        assert storage.get_object(OID) == ("txt", b"one")
        assert storage.has_object(OID) and not storage.has_object(OID2)

    def test_missing_object(self, storage: BaseStorage) -> None:
        with pytest.raises(NotFound):
            storage.get_object(OID2)

    def test_list_and_delete(self, storage: BaseStorage) -> None:
        storage.put_object(OID, "txt", b"a")
        storage.put_object(OID2, "json", b"{}")
        assert sorted(storage.list_objects()) == [(OID, "txt"), (OID2, "json")]
        assert list(storage.list_objects("cd")) == [(OID2, "json")]
        storage.delete_object(OID)
        assert list(storage.list_objects()) == [(OID2, "json")]

    def test_cas(self, storage: BaseStorage) -> None:
        assert storage.read_ref("s/heads/main") is None
        storage.cas_ref("s/heads/main", None, OID, b'{"m":1}')
        with pytest.raises(BranchMoved):
            storage.cas_ref("s/heads/main", None, OID2)
        with pytest.raises(BranchMoved):
            storage.cas_ref("s/heads/main", OID2, OID)
        storage.cas_ref("s/heads/main", OID, OID2, b'{"m":2}')
        assert storage.read_ref("s/heads/main") == OID2
        assert storage.list_refs("s/") == ["s/heads/main"]
        assert storage.read_log("refs/s/heads/main") == [b'{"m":1}', b'{"m":2}']

    def test_logs(self, storage: BaseStorage) -> None:
        storage.append_log("sessions/a/events", b"1")
        storage.append_log("sessions/a/events", b"2\n")
        assert storage.read_log("sessions/a/events") == [b"1", b"2"]
        assert storage.read_log("sessions/none") == []
        assert storage.list_logs("sessions/") == ["sessions/a/events"]

    def test_threads_racing_one_ref_exactly_one_wins(self, storage: BaseStorage) -> None:
        storage.cas_ref("s/heads/main", None, OID)
        wins, losses = [], []
        barrier = threading.Barrier(8)

        def racer(i: int) -> None:
            barrier.wait()
            try:
                storage.cas_ref("s/heads/main", OID, f"{i:02d}" + "e" * 62)
                wins.append(i)
            except BranchMoved:
                losses.append(i)

        threads = [threading.Thread(target=racer, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(wins) == 1 and len(losses) == 7
        assert storage.read_ref("s/heads/main") == f"{wins[0]:02d}" + "e" * 62


class TestLogsContract:
    def test_positions_and_read_after(self, storage: BaseStorage) -> None:
        p1 = storage.append_log("sessions/a/attempts", b"one")
        p2 = storage.append_log("sessions/a/attempts", b"two")
        assert 0 < p1 < p2
        assert storage.read_log("sessions/a/attempts", after=p1) == [b"two"]
        assert storage.read_log("sessions/a/attempts", after=p2) == []
        lines, cursor = storage.read_log_from("sessions/a/attempts", 0)
        assert lines == [b"one", b"two"] and cursor == p2
        storage.append_log("sessions/a/attempts", b"three")
        assert storage.read_log_from("sessions/a/attempts", cursor)[0] == [b"three"]
        assert storage.last_log_line("sessions/a/attempts") == b"three"

    def test_a_long_log_reads_whole_and_from_any_place(self, storage: BaseStorage) -> None:
        # past two segments' worth on object storage (64 entries each)
        pos = [storage.append_log("sessions/b/events", b"%d" % i) for i in range(150)]
        assert storage.read_log("sessions/b/events") == [b"%d" % i for i in range(150)]
        for k in (0, 63, 64, 100, 128, 149):
            assert storage.read_log("sessions/b/events", after=pos[k]) == [
                b"%d" % i for i in range(k + 1, 150)
            ]
        assert storage.last_log_line("sessions/b/events") == b"149"

    def test_numbered_appends_from_threads_get_distinct_numbers(self, storage: BaseStorage) -> None:
        name = "sessions/c/events"
        got: list[int] = []
        lock = threading.Lock()

        def last() -> int:
            line = storage.last_log_line(name)
            return int(line.split(b":")[0]) if line else 0

        def writer(i: int) -> None:
            for _ in range(5):
                n = storage.append_numbered(name, lambda n: b"%d:%d" % (n, i), last)
                with lock:
                    got.append(n)

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(got) == list(range(1, 21))
        numbers = [int(ln.split(b":")[0]) for ln in storage.read_log(name)]
        assert sorted(numbers) == list(range(1, 21))

    def test_list_logs_names_each_log_once(self, storage: BaseStorage) -> None:
        storage.append_log("sessions/e/events", b"1")
        storage.append_log("sessions/e/attempts", b"1")
        storage.cas_ref("e/heads/main", None, OID, b'{"m":1}')
        assert storage.list_logs("sessions/") == ["sessions/e/attempts", "sessions/e/events"]
        assert "refs/e/heads/main" in storage.list_logs()


class TestObjectsContract:
    def test_touch_and_age(self, storage: BaseStorage) -> None:
        assert storage.touch_object(OID) is False
        storage.put_object(OID, "png", b"x")
        assert storage.touch_object(OID) is True
        assert 0 <= storage.object_age_s(OID) < 60
        assert storage.get_object(OID) == ("png", b"x")

    def test_delete_then_put_again(self, storage: BaseStorage) -> None:
        storage.put_object(OID, "json", b"{}")
        storage.delete_object(OID)
        assert not storage.has_object(OID)
        with pytest.raises(NotFound):
            storage.get_object(OID)
        assert storage.put_object(OID, "json", b"{}") is True
        assert storage.get_object(OID) == ("json", b"{}")


class TestLocksContract:
    def test_branch_lock_excludes_a_second_holder(self, storage: BaseStorage) -> None:
        result = []
        with storage.branch_lock("s/heads/main") as held:
            assert held

            def other() -> None:
                with storage.branch_lock("s/heads/main", wait=False) as got:
                    result.append(got)

            t = threading.Thread(target=other)
            t.start()
            t.join()
        assert result == [False]
        with storage.branch_lock("s/heads/main", wait=False) as again:
            assert again

    def test_writer_lock_is_shared_and_reentrant(self, storage: BaseStorage) -> None:
        with storage.writer_lock(), storage.writer_lock():
            storage.put_object(OID, "txt", b"a")
        with storage.writer_lock(exclusive=True):
            storage.delete_object(OID)
        assert not storage.has_object(OID)


def test_torn_log_line_is_ignored(tmp_path: Path) -> None:
    s = DiskStorage(tmp_path)
    s.append_log("x", b"whole")
    with open(tmp_path / "logs" / "x", "ab") as f:
        f.write(b'{"half')
    assert s.read_log("x") == [b"whole"]


def test_an_append_after_a_torn_line_starts_a_new_line(tmp_path: Path) -> None:
    s = DiskStorage(tmp_path)
    s.append_log("x", b"one")
    with open(tmp_path / "logs" / "x", "ab") as f:
        f.write(b'{"torn')  # a crash in the middle of an append
    s.append_log("x", b"two")
    assert s.read_log("x") == [b"one", b'{"torn', b"two"]
    assert s.last_log_line("x") == b"two"


def test_event_numbers_survive_a_torn_line(tmp_path: Path) -> None:
    from exquisite_store.store import Store

    from .helpers import rng_image

    store = Store.init(tmp_path / "s")
    store.create_session("x", rng_image(8, 8))
    for _ in range(3):
        store.append_event("x", "progress")
    with open(tmp_path / "s" / "logs" / "sessions" / "x" / "events", "ab") as f:
        f.write(b'{"seq": 4, "ty')
    assert store.append_event("x", "after") == 4
    assert [e.seq for e in store.events("x")] == [1, 2, 3, 4]


class TestDeleteRef:
    def test_delete_is_compare_and_swap_and_logged(self, storage: BaseStorage) -> None:
        storage.cas_ref("s/heads/b", None, OID, b'{"m":1}')
        with pytest.raises(BranchMoved):
            storage.delete_ref("s/heads/b", OID2)
        assert storage.read_ref("s/heads/b") == OID
        storage.delete_ref("s/heads/b", OID, b'{"m":"gone"}')
        assert storage.read_ref("s/heads/b") is None
        assert storage.list_refs("s/") == []
        assert storage.read_log("refs/s/heads/b") == [b'{"m":1}', b'{"m":"gone"}']
        with pytest.raises(BranchMoved):
            storage.delete_ref("s/heads/b", OID)

    def test_a_removed_ref_made_again_keeps_its_whole_reflog(self, storage: BaseStorage) -> None:
        storage.cas_ref("s/heads/b", None, OID, b'{"m":1}')
        storage.delete_ref("s/heads/b", OID, b'{"m":2}')
        storage.cas_ref("s/heads/b", None, OID2, b'{"m":3}')
        storage.cas_ref("s/heads/b", OID2, OID, b'{"m":4}')
        storage.cas_ref("s/heads/b", OID, OID2, b'{"m":5}')  # A -> B -> A -> B: no ABA
        assert storage.read_ref("s/heads/b") == OID2
        assert storage.read_log("refs/s/heads/b") == [b'{"m":%d}' % i for i in range(1, 6)]
