"""A store writer run as a subprocess by the crash and concurrency tests.

    python tests/writer_proc.py STORE SESSION BRANCH COUNT [--report FILE] [--mode MODE]
        [--seed N] [--barrier FILE] [--stall POINT [--pause-s S]]

``--mode commit`` (default) makes COUNT fake steps, each extending the head's canvas to
the right by 16 px of random pixels; ``--mode cas`` makes COUNT steps that reuse the
head's canvas, so a try is little more than the compare-and-swap. Both retry on
BranchMoved by re-reading the head. Each success is appended to the report (flushed and
fsynced) only after its CAS returned: ``NEW`` in commit mode, ``OLD NEW`` in cas mode.

stdout, unbuffered, one line each: ``ready`` once the store is open (and the barrier
passed), ``begin`` before each commit, ``stalled`` at a ``--stall`` point, and a last
JSON line ``{"commits": n, "moved": m}``. A held ref lock ends the run with exit code 3
and the LockHeld message on stderr.

``--stall`` blocks at one point of the first ref update, forever (for a test to SIGKILL
the process there) or for ``--pause-s`` seconds (for a test to race it): ``lock`` (ref
lock taken, nothing written to it yet), ``rename`` (the new value is written, not yet
renamed over the ref), ``reflog`` (the ref has moved, its reflog line is not yet
appended).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from exquisite_store.errors import BranchMoved, LockHeld
from exquisite_store.geometry.rect import Rect
from exquisite_store.ids import ObjectId
from exquisite_store.manifests import Result, Step
from exquisite_store.store import Store
from exquisite_store.store.canvas import CHANNELS, canvas_rect, edit_canvas

EXTEND_PX = 16
LOCK_HELD_EXIT = 3
STALL_POINTS = ("lock", "rename", "reflog")


def fake_step(
    store: Store,
    session: str,
    head: str,
    rng: np.random.Generator,
    *,
    extend_px: int = EXTEND_PX,
    tag: str = "",
) -> ObjectId:
    """Store a step on ``head``: its canvas grown right by ``extend_px`` random columns."""
    canvas = store.canvas(store.step(head))
    if extend_px:
        prect = canvas_rect(canvas)
        patch_rect = Rect(prect.right, prect.y, extend_px, prect.h)
        shape = (patch_rect.h, patch_rect.w, CHANNELS[canvas.mode])
        patch = rng.integers(0, 256, shape, dtype=np.uint8)
        canvas = edit_canvas(store.objects, canvas, prect.union(patch_rect), patch, patch_rect)
    step = Step(
        session=session,
        parent=head,
        created_ms=store.clock_ms(),
        source_name=tag,
        result=Result(
            canvas_id=store.objects.put_json(canvas), width=canvas.width, height=canvas.height
        ),
    )
    return store.objects.put_json(step)


def commit(
    store: Store,
    session: str,
    branch: str,
    rng: np.random.Generator,
    *,
    extend_px: int = EXTEND_PX,
    tag: str = "",
) -> tuple[str, ObjectId, int]:
    """Commit one fake step, retrying on BranchMoved; ``(old, new, times moved)``."""
    moved = 0
    while True:
        with store.writing():
            old = store.refs.head(session, branch)
            new = fake_step(store, session, old, rng, extend_px=extend_px, tag=f"{tag}.{moved}")
            try:
                store.refs.update(session, branch, old, new, f"fake step {tag}")
            except BranchMoved:
                moved += 1
                continue
            return old, new, moved


def say(line: str) -> None:
    """One unbuffered stdout line (a pipe read by the parent test, even after a kill)."""
    os.write(1, (line + "\n").encode())


def append_report(path: Path, line: str) -> None:
    """Append a line and make it durable before the writer goes on."""
    with open(path, "a", encoding="ascii") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def install_stall(point: str, pause_s: float | None = None) -> None:
    """Make the first ref update of this process block at ``point`` (forever if no pause)."""
    from exquisite_store.store import files, storage

    stalled = False

    def stall() -> None:
        nonlocal stalled
        if stalled:
            return
        stalled = True
        say("stalled")
        while pause_s is None:
            time.sleep(60)
        time.sleep(pause_s)

    if point == "lock":
        commit_ = files.LockFile.commit

        def commit_then_stall(self: files.LockFile, data: bytes) -> None:
            stall()
            commit_(self, data)

        files.LockFile.commit = commit_then_stall  # type: ignore[method-assign]
    elif point == "rename":
        replace = os.replace

        def replace_then_stall(src: object, dst: object, **kw: object) -> None:
            if Path(str(dst)).parent.name == "heads":  # the new value, onto a branch ref
                stall()
            replace(src, dst, **kw)  # type: ignore[arg-type]

        files.os.replace = replace_then_stall  # type: ignore[assignment]
    elif point == "reflog":
        append = storage.DiskStorage.append_log

        def append_then_stall(self: storage.DiskStorage, name: str, line: bytes) -> None:
            if name.startswith("refs/"):
                stall()
            append(self, name, line)

        storage.DiskStorage.append_log = append_then_stall  # type: ignore[method-assign]


def wait_barrier(barrier: Path) -> None:
    """Say we are ready (a ``.ready.PID`` file next to it) and wait for ``barrier``."""
    ready = barrier.with_name(f"{barrier.name}.ready.{os.getpid()}")
    ready.touch()
    while not barrier.exists():
        time.sleep(0.001)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")  # a folder or s3://bucket/prefix (endpoint: AWS_ENDPOINT_URL)
    ap.add_argument("session")
    ap.add_argument("branch")
    ap.add_argument("count", type=int)
    ap.add_argument("--report", type=Path)
    ap.add_argument("--mode", choices=("commit", "cas"), default="commit")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--barrier", type=Path)
    ap.add_argument("--stall", choices=STALL_POINTS)
    ap.add_argument("--pause-s", type=float, default=None)
    args = ap.parse_args(argv)

    store = Store.open(args.store)
    rng = np.random.default_rng(args.seed if args.seed is not None else os.getpid())
    if args.stall:
        install_stall(args.stall, args.pause_s)
    if args.barrier:
        wait_barrier(args.barrier)
    say("ready")
    extend = EXTEND_PX if args.mode == "commit" else 0
    commits = moved = 0
    for i in range(args.count):
        say("begin")
        try:
            old, new, m = commit(
                store, args.session, args.branch, rng, extend_px=extend, tag=f"{os.getpid()}.{i}"
            )
        except LockHeld as exc:
            print(exc.message, file=sys.stderr, flush=True)
            say(json.dumps({"commits": commits, "moved": moved, "lock_held_pid": exc.pid}))
            return LOCK_HELD_EXIT
        moved += m
        commits += 1
        if args.report:
            append_report(args.report, new if args.mode == "commit" else f"{old} {new}")
    say(json.dumps({"commits": commits, "moved": moved}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
