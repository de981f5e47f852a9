"""Four processes race compare-and-swap updates on one branch: none is lost or misordered."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck

from . import writer_proc as wp
from .helpers import rng_image

SESSION, BRANCH = "race", "main"
REF = f"{SESSION}/heads/{BRANCH}"
PROCS = 4
UPDATES = 25


def start_together(procs: list[subprocess.Popen], barrier: Path) -> None:
    """Open the barrier once every writer has imported, opened the store and is waiting."""
    deadline = time.monotonic() + 30
    while len(list(barrier.parent.glob(f"{barrier.name}.ready.*"))) < len(procs):
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"writer {p.pid} exited early: {p.communicate()[1]}")
        assert time.monotonic() < deadline, "writers never got ready"
        time.sleep(0.005)
    barrier.touch()


def test_racing_cas_updates_lose_nothing(tmp_path: Path) -> None:
    store = Store.init(tmp_path / "store", tile_size=64)
    _, root = store.create_session(SESSION, rng_image(48, 64))
    barrier = tmp_path / "go"
    reports = [tmp_path / f"report-{i}.txt" for i in range(PROCS)]
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(wp.__file__)), str(store.root), SESSION, BRANCH]
            + [str(UPDATES), "--mode", "cas", "--report", str(rep), "--barrier", str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rep in reports
    ]
    try:
        start_together(procs, barrier)
        results = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
    summaries = [json.loads(out.splitlines()[-1]) for out, _ in results]
    assert [s["commits"] for s in summaries] == [UPDATES] * PROCS
    moved = sum(s["moved"] for s in summaries)

    successes = [[tuple(line.split()) for line in rep.read_text().splitlines()] for rep in reports]
    assert all(len(s) == UPDATES for s in successes)

    log = store.refs.reflog(REF)
    head = store.refs.head(SESSION, BRANCH)
    assert len(log) == PROCS * UPDATES + 1
    assert (log[0].old, log[0].new) == (None, root)
    broken = [i for i in range(1, len(log)) if log[i].old != log[i - 1].new]
    assert not broken, f"reflog is not a chain at entries {broken}"
    assert log[-1].new == head

    # every success is in the reflog, and each writer's successes in its own order
    position = {(e.old, e.new): i for i, e in enumerate(log)}
    for mine in successes:
        assert all(pair in position for pair in mine)
        assert [position[pair] for pair in mine] == sorted(position[pair] for pair in mine)

    history = [sid for sid, _ in store.history(head)]
    assert len(history) == PROCS * UPDATES + 1
    assert history[-1] == root
    assert set(history) == {root} | {new for mine in successes for _, new in mine}
    assert fsck(store).ok

    print(f"concurrency: {PROCS} writers x {UPDATES} updates, {moved} BranchMoved retries")
    assert moved >= 1, "no writer ever lost a race: the test did not test contention"


def test_reflog_keeps_order_when_the_next_cas_lands_before_the_log_line(
    tmp_path: Path,
) -> None:
    store = Store.init(tmp_path / "store", tile_size=64)
    _, root = store.create_session(SESSION, rng_image(48, 64))
    slow = subprocess.Popen(
        [sys.executable, str(Path(wp.__file__)), str(store.root), SESSION, BRANCH, "1"]
        + ["--mode", "cas", "--stall", "reflog", "--pause-s", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert slow.stdout is not None
    assert slow.stdout.readline().strip() == "ready"
    assert slow.stdout.readline().strip() == "begin"
    assert slow.stdout.readline().strip() == "stalled"  # its ref moved, its log line not yet
    _, mine, _ = wp.commit(store, SESSION, BRANCH, np.random.default_rng(0), extend_px=0)
    _, err = slow.communicate(timeout=30)
    assert slow.returncode == 0, err

    log = store.refs.reflog(REF)
    assert log[0].new == root and len(log) == 3
    assert [e.old for e in log[1:]] == [e.new for e in log[:-1]]
    assert log[-1].new == mine == store.refs.head(SESSION, BRANCH)
