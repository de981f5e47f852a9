"""Who holds a lock, and what the store records about this machine.

A lock (and a queued job) names its owner by host, boot, pid and start time: a lock
whose pid was reused by another process is stale at once, and one of another host is
never removed here. fsck holds the writer lock shared, so it cannot see gc half done.
Attempt records (and so exports) name paths relative to the store, never this
machine's.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import threading
import types
from pathlib import Path

import pytest
from click.testing import CliRunner

from exquisite_store import core
from exquisite_store.cli import cli
from exquisite_store.errors import LockHeld, StepFailure, StoreError
from exquisite_store.manifests import Attempt
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store
from exquisite_store.store.files import LockFile, read_lock_holder
from exquisite_store.store.fsck import fsck
from exquisite_store.store.gc import gc
from exquisite_store.store.locks import unlock
from exquisite_store.store.process import ProcessStamp, host_name, this_process

from .fakes.backends import PatternBackend
from .helpers import rng_image

S = "s"


@pytest.fixture
def st(tmp_path: Path) -> Store:
    st = Store.init(tmp_path / "store", tile_size=64)
    st.create_session(S, rng_image(48, 64))
    return st


def main_lock(st: Store) -> Path:
    assert st.root is not None
    return st.root / "refs" / S / "heads" / "main.lock"


def take_main(st: Store, wait_s: float) -> None:
    with LockFile(st.root / "refs" / S / "heads" / "main", tmp_dir=st.root / "tmp", wait_s=wait_s):
        pass


def exq(st: Store, *args: str):
    return CliRunner().invoke(cli, ["--store", str(st.root), *args])


def test_a_lock_names_host_boot_pid_and_start_time(st: Store) -> None:
    ref = st.root / "refs" / S / "heads" / "main"
    with LockFile(ref, tmp_dir=st.root / "tmp"):
        holder, _age = read_lock_holder(main_lock(st))
        text = main_lock(st).read_text()
    assert holder == this_process() and holder.started is not None
    assert f"host {host_name()}\n" in text and f"started {holder.started}\n" in text


def test_a_lock_whose_pid_was_reused_is_stale_at_once(st: Store) -> None:
    """The pid runs (it is ours), but it is another process than the one that locked."""
    me = this_process()
    main_lock(st).write_text(dataclasses.replace(me, started=me.started - 1).text())
    head = st.refs.head(S, "main")
    with pytest.raises(LockHeld) as held:  # at once: not taken for a live writer
        take_main(st, wait_s=5)
    assert f"pid {me.pid} (not running: a stale lock)" in held.value.message
    assert held.value.path == f"refs/{S}/heads/main.lock" and held.value.host == host_name()
    (line,) = fsck(st).locks
    assert line.startswith(f"refs/{S}/heads/main.lock: pid {me.pid}, age ")
    assert f"host {host_name()} (not running: a stale lock)" in line
    res = exq(st, "unlock")
    assert res.exit_code == 0 and f"main.lock  pid {me.pid}" in res.output, res.output
    assert "removed" in res.output and not main_lock(st).exists()
    assert st.refs.head(S, "main") == head


def test_a_lock_of_another_host_is_never_removed_here(st: Store) -> None:
    other = ProcessStamp("another-machine", 1, "some-boot", 12345)
    main_lock(st).write_text(other.text())
    with pytest.raises(LockHeld) as held:
        take_main(st, wait_s=0.1)
    assert "on host another-machine, which this machine cannot check" in held.value.message
    [report] = unlock(st)
    assert report.host == "another-machine" and report.action.startswith("kept: on host")
    res = exq(st, "unlock")
    assert "host another-machine: kept" in res.output and main_lock(st).exists()
    assert "host another-machine (on host another-machine" in fsck(st).locks[0]


def test_an_older_lock_naming_only_a_pid_is_still_understood(st: Store) -> None:
    main_lock(st).write_text(f"pid {os.getpid()}\n")  # ours, alive: kept
    assert unlock(st)[0].action == "kept: its process is alive"


def test_jobs_queued_by_a_reused_pid_are_abandoned_another_hosts_are_not(st: Store) -> None:
    me = this_process()
    reused = dataclasses.replace(me, started=me.started - 1).to_dict()
    elsewhere = ProcessStamp("another-machine", 1, "", None).to_dict()
    st.append_event(S, "queued", job="reused", process=reused, parent=None, branch="main")
    st.append_event(S, "queued", job="remote", process=elsewhere, parent=None, branch="main")
    st.append_event(S, "queued", job="mine", process=me.to_dict(), parent=None, branch="main")
    st.append_event(S, "queued", job="old", pid=os.getpid(), parent=None, branch="main")
    assert core.mark_abandoned(st) == 1
    states = core.job_states(st, S)
    assert states["reused"]["state"] == "failed"
    assert {states[j]["state"] for j in ("remote", "mine", "old")} == {"queued"}


def test_a_queued_job_names_its_process(st: Store) -> None:
    jobs = core.Jobs(st, workers=1)
    req = core.step_request(st, S, {"extension_px": 16, "overlap_px": 4, "backend": "replay"})
    job = jobs.submit(req)
    jobs.pool.shutdown(wait=True)
    queued = next(e for e in st.events(S) if e.type == "queued" and e.data["job"] == job)
    assert ProcessStamp.from_dict(queued.data["process"]) == this_process()


# --- fsck and gc ------------------------------------------------------------------------------


def test_fsck_waits_for_a_running_gc_and_reports_no_damage(st: Store, monkeypatch) -> None:
    """gc holds the lock exclusively while it deletes; fsck (shared) runs before or after."""
    junk = [st.objects.put_text(f"unreachable {i}") for i in range(20)]
    deleting, go_on = threading.Event(), threading.Event()
    real = type(st.storage).delete_object

    def slow_delete(self, oid: str) -> None:
        deleting.set()
        go_on.wait(30)
        real(self, oid)

    monkeypatch.setattr(type(st.storage), "delete_object", slow_delete)
    sweeper = threading.Thread(target=gc, args=(st,), kwargs={"grace_s": 0})
    sweeper.start()
    assert deleting.wait(30)
    reports = []
    checker = threading.Thread(target=lambda: reports.append(fsck(Store.open(st.root))))
    checker.start()
    checker.join(0.5)
    assert checker.is_alive() and not reports, "fsck ran while gc was deleting"
    go_on.set()
    sweeper.join(30)
    checker.join(30)
    assert reports[0].ok, reports[0]
    assert not any(st.objects.has(j) for j in junk)


def test_fsck_inside_a_held_lock_does_not_wait_for_itself(st: Store) -> None:
    """A check in a quiet moment (the writer lock held exclusively) runs fsck in it."""
    outcome: list[object] = []

    def quiet_check() -> None:
        with st.storage.writer_lock(exclusive=True):
            outcome.append(fsck(Store.open(st.root)).ok)
        with st.writing():
            try:
                gc(st)
            except StoreError as exc:
                outcome.append(exc.message)

    checker = threading.Thread(target=quiet_check, daemon=True)
    checker.start()
    checker.join(30)
    assert not checker.is_alive(), "fsck waited for the lock its own thread holds"
    assert outcome == [True, "store.lock is held shared here: it cannot be taken exclusively"]


def test_fsck_rechecks_an_object_gone_since_its_listing(st: Store, monkeypatch) -> None:
    oid = st.objects.put_text("listed, then removed by someone else")
    real = type(st.storage).list_objects

    def listing_then_removed(self, fan: str = ""):
        items = list(real(self, fan))
        self.delete_object(oid)
        yield from items

    monkeypatch.setattr(type(st.storage), "list_objects", listing_then_removed)
    assert fsck(st).ok


# --- this machine's paths ---------------------------------------------------------------------


def full_disk_at_first_object(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first link of a new object into objects/ fails with ENOSPC (OSError names it)."""
    from exquisite_store.store import files

    failed: list[str] = []

    def link(src, dst, *args, **kw):
        if "/objects/" in str(dst) and not failed:
            failed.append(str(dst))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return os.link(src, dst, *args, **kw)

    proxy = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if k[:2] != "__"})
    proxy.link = link
    monkeypatch.setattr(files, "os", proxy)
    return failed


def test_attempts_and_exports_name_no_path_of_this_machine(
    st: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stale lock at commit and a failed write become attempts naming store paths only."""
    main_lock(st).write_text("pid 999999\n")
    with pytest.raises(StepFailure):
        run_step(st, S, backend_impl=PatternBackend(), extension_px=16, overlap_px=4)
    main_lock(st).unlink()
    failed = full_disk_at_first_object(monkeypatch)
    with pytest.raises(StepFailure):
        run_step(st, S, backend_impl=PatternBackend(), extension_px=16, overlap_px=4, seed=3)
    monkeypatch.undo()
    assert failed and failed[0].startswith(str(st.root))
    locked, full = (st.objects.get_manifest(line.id, Attempt) for line in st.attempts(S))
    assert locked.details["lock"] == f"refs/{S}/heads/main.lock", locked.details
    assert full.details["path"].startswith("objects/") and full.details["errno"] == "ENOSPC"
    assert "No space left on device" in full.message, full.message
    site = tmp_path / "site"
    res = exq(st, "export", S, str(site))
    assert res.exit_code == 0, res.output
    here = str(tmp_path).encode()
    files = [p for root in (st.root, site) for p in root.rglob("*") if p.is_file()]
    assert len(files) > 20
    assert [p for p in files if here in p.read_bytes()] == []
