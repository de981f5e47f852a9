"""SIGKILL a writer at random moments: the store stays whole and nothing committed is lost."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from exquisite_store.errors import LockHeld
from exquisite_store.manifests import Step
from exquisite_store.store import Store, compose_full
from exquisite_store.store.files import read_lock_holder
from exquisite_store.store.fsck import fsck
from exquisite_store.store.locks import unlock

from . import writer_proc as wp
from .helpers import rng_image

# the fault, load and crash suites run in `make test-all` (CI), not in the fast loop
pytestmark = pytest.mark.slow
WRITER = Path(wp.__file__)

SESSION, BRANCH = "crash", "main"
REF = f"{SESSION}/heads/{BRANCH}"
MIN_KILLS = 40
MIN_ATTEMPTS = 50
MAX_SLEEP_S = 0.150
# on a slow machine settle for fewer kills after this long, but never for fewer attempts
TIME_BUDGET_S = 30.0
FEWEST_KILLS = 10


@pytest.fixture
def store(tmp_path: Path) -> Store:
    """A store with one session; tiles of 64 so a canvas soon spans many tiles."""
    st = Store.init(tmp_path / "store", tile_size=64)
    st.create_session(SESSION, rng_image(48, 64), title="crash test")
    return st


def spawn(store: Store, report: Path, *extra: str, count: int = 100_000) -> subprocess.Popen:
    cmd = [sys.executable, str(WRITER), str(store.root), SESSION, BRANCH, str(count)]
    return subprocess.Popen(
        [*cmd, "--report", str(report), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(proc: subprocess.Popen, word: str) -> None:
    """Read the writer's stdout until it says ``word``."""
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"writer exited ({proc.returncode}) before {word!r}: {err}")
        if line.strip() == word:
            return


def kill(proc: subprocess.Popen) -> list[str]:
    """SIGKILL the writer, reap it and return the stdout lines it left."""
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, f"writer ended on its own ({proc.returncode})"
    return out.splitlines()


def reported(report: Path) -> list[str]:
    """Step ids the writers reported committed (a torn last line is not a report)."""
    if not report.exists():
        return []
    text = report.read_text()
    lines = text.split("\n")
    return [ln for ln in (lines if text.endswith("\n") else lines[:-1]) if ln]


def history_ids(store: Store) -> list[str]:
    return [sid for sid, _ in store.history(store.refs.head(SESSION, BRANCH))]


def check_refs(store: Store) -> None:
    """Every branch head is a whole step manifest whose canvas composes at its size."""
    for name in store.storage.list_refs(f"{SESSION}/heads/"):
        sid = store.storage.read_ref(name)
        assert sid is not None, name
        step = store.objects.get_manifest(sid, Step, verify=True)
        pixels = compose_full(store.objects, store.canvas(step))
        assert pixels.shape == (step.result.height, step.result.width, 3)


def fsck_ok(store: Store) -> list[str]:
    """Assert fsck finds no damage; return the lock lines it reported."""
    rep = fsck(store)
    assert rep.ok, f"damaged={rep.damaged} missing={rep.missing} bad_refs={rep.bad_refs}"
    return rep.locks


def unlock_dead(store: Store, lock_pid: int | None) -> None:
    """`exq unlock`: remove the dead writer's ref lock (and recover its reflog line)."""
    reports = unlock(store)
    assert [r.ref for r in reports] == [REF]
    assert reports[0].pid == lock_pid and reports[0].action.startswith("removed"), reports
    assert not list((store.root / "refs").rglob("*.lock"))


def test_sigkill_at_random_moments(store: Store, tmp_path: Path) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    report = tmp_path / "committed.txt"
    kills = attempts = stale_locks = pidless_locks = reflog_gaps = own_commits = unreported = 0
    started = time.monotonic()
    while kills < MIN_KILLS or attempts < MIN_ATTEMPTS:
        over_budget = time.monotonic() - started > TIME_BUDGET_S
        if over_budget and kills >= FEWEST_KILLS and attempts >= MIN_ATTEMPTS:
            break
        assert time.monotonic() - started < 3 * TIME_BUDGET_S, f"too slow (seed {seed})"
        proc = spawn(store, report, "--seed", str(rnd.randrange(2**31)))
        wait_for(proc, "ready")
        time.sleep(rnd.uniform(0, MAX_SLEEP_S))
        out = kill(proc)
        kills += 1
        attempts += out.count("begin")

        locks = fsck_ok(store)
        if locks:
            stale_locks += 1
            assert len(locks) == 1 and locks[0].startswith(f"refs/{REF}.lock"), locks
            stamp, _age = read_lock_holder(store.root / "refs" / f"{REF}.lock")
            lock_pid = stamp.pid if stamp else None
            assert f"pid {lock_pid}," in locks[0]
            with pytest.raises(LockHeld) as held:
                wp.commit(store, SESSION, BRANCH, rng)
            assert held.value.pid == lock_pid
            # the lock always names the dead writer
            if lock_pid is None:
                pidless_locks += 1
            assert lock_pid == proc.pid
            assert "not running" in held.value.message
            log = store.refs.reflog(REF)
            if not log or log[-1].new != store.refs.head(SESSION, BRANCH):
                reflog_gaps += 1  # died between moving the ref and logging it
            unlock_dead(store, lock_pid)

        check_refs(store)
        history = history_ids(store)
        committed = reported(report)
        lost = set(committed) - set(history)
        assert not lost, f"committed steps lost after kill {kills} (seed {seed}): {lost}"
        # a writer can die between its CAS and its report: at most one unreported commit each
        unreported = len(history) - 1 - own_commits - len(committed)
        assert 0 <= unreported <= kills, (unreported, kills)
        log = store.refs.reflog(REF)
        assert log and log[-1].new == history[0], "every ref move is in the reflog"
        assert all(a.new == b.old for a, b in zip(log, log[1:], strict=False)), "reflog chain"

        _, new, _ = wp.commit(store, SESSION, BRANCH, rng, tag="after-kill")
        own_commits += 1
        assert store.refs.head(SESSION, BRANCH) == new
        assert history_ids(store)[1] == history[0]

    assert fsck(store).ok
    leftover_tmp = len(list((store.root / "tmp").iterdir())) if store.root else 0
    summary = (
        f"crash: seed {seed}, {kills} kills, {attempts} commits attempted, "
        f"{len(reported(report))} reported + {unreported} unreported + {own_commits} "
        f"post-kill commits, {stale_locks} stale locks ({pidless_locks} without a pid), "
        f"{reflog_gaps} reflog lines recovered by unlock, {leftover_tmp} leftover tmp files, "
        f"{time.monotonic() - started:.1f}s"
    )
    print(summary)
    assert kills >= FEWEST_KILLS and attempts >= MIN_ATTEMPTS
    assert pidless_locks == 0
    assert len(history_ids(store)) == 1 + len(reported(report)) + unreported + own_commits


def stall_and_kill(store: Store, tmp_path: Path, point: str) -> int:
    """Run a writer to ``point`` of its first ref update, SIGKILL it there; its pid."""
    proc = spawn(store, tmp_path / "report.txt", "--stall", point, count=1)
    wait_for(proc, "stalled")
    kill(proc)
    return proc.pid


def test_kill_holding_the_ref_lock_leaves_a_reported_lock(store: Store, tmp_path: Path) -> None:
    head = store.refs.head(SESSION, BRANCH)
    pid = stall_and_kill(store, tmp_path, "lock")
    locks = fsck_ok(store)
    assert len(locks) == 1 and f"pid {pid}," in locks[0]
    assert store.refs.head(SESSION, BRANCH) == head

    blocked = spawn(store, tmp_path / "report.txt", count=1)
    _, err = blocked.communicate(timeout=30)
    assert blocked.returncode == wp.LOCK_HELD_EXIT, err
    assert f"pid {pid} (not running: a stale lock)" in err

    unlock_dead(store, pid)
    _, new, _ = wp.commit(store, SESSION, BRANCH, np.random.default_rng(1))
    assert store.step(new).parent == head
    assert fsck_ok(store) == []


def test_kill_just_before_the_ref_rename_leaves_a_lock_naming_the_writer(
    store: Store, tmp_path: Path
) -> None:
    head = store.refs.head(SESSION, BRANCH)
    pid = stall_and_kill(store, tmp_path, "rename")
    assert store.refs.head(SESSION, BRANCH) == head
    with pytest.raises(LockHeld) as held:
        wp.commit(store, SESSION, BRANCH, np.random.default_rng(1))
    assert held.value.pid == pid
    assert f"pid {pid}," in fsck_ok(store)[0]


def test_kill_after_ref_moved_leaves_a_reflog_line_or_a_lock(store: Store, tmp_path: Path) -> None:
    head = store.refs.head(SESSION, BRANCH)
    pid = stall_and_kill(store, tmp_path, "reflog")
    locks = fsck_ok(store)
    new = store.refs.head(SESSION, BRANCH)
    assert new != head and store.step(new).parent == head
    # a ref move is never silent: it is in the reflog, or a stale lock names its writer
    logged = store.refs.reflog(REF)[-1].new == new
    assert logged or (len(locks) == 1 and f"pid {pid}," in locks[0])
