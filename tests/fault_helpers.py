"""Helpers of the fault and load suites, and the step driver they run as a subprocess.

    python tests/fault_helpers.py STORE SESSION BRANCH COUNT [--backend patchmatch|pattern]
        [--report FILE] [--seed N] [--barrier FILE] [--px 16] [--overlap 4]
        [--fail-every K] [--max-tries N]
    python tests/fault_helpers.py --gc-loop STORE SECONDS STOPFILE

STORE is a folder or ``s3://bucket/prefix`` (its endpoint from ``AWS_ENDPOINT_URL``).

The driver makes COUNT committed steps with the real ``run_step`` on BRANCH (the
branch's head each time): ``patchmatch`` is the real PatchMatchBackend run in process,
``pattern`` the fast fake of tests/fakes. A step that loses the race gets BranchMoved
and is tried again from the new head; with ``--fail-every K`` every K-th try uses a
backend that fails permanently (an attempt recorded outside any candidate).

stdout, unbuffered: ``ready`` once the store is open (and the barrier passed), ``begin``
before each ``run_step``, and a last JSON line of totals. Each outcome is appended to the
report (flushed and fsynced) only after ``run_step`` returned or raised:
``commit STEP``, ``moved STEP ATTEMPT`` or ``failed KIND ATTEMPT``.

``--gc-loop`` runs ``gc(store, grace_s=0)`` in a loop until SECONDS pass or STOPFILE
exists, says ``ready`` first and prints ``{"runs": n, "removed": m}`` last.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
HERE = Path(__file__).resolve()


# --- figures ------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


# --- store checks -------------------------------------------------------------------------


def check_heads_whole(store: Any, session: str) -> dict[str, str]:
    """Every branch head is a whole step whose canvas composes at its size; the heads."""
    from exquisite_store.manifests import Step
    from exquisite_store.store import compose_full

    heads = store.refs.branches(session)
    for name, sid in heads.items():
        step = store.objects.get_manifest(sid, Step, verify=True)
        pixels = compose_full(store.objects, store.canvas(step))
        assert pixels.shape[:2] == (step.result.height, step.result.width), name
    return heads


def history(store: Any, head: str) -> list[str]:
    """Step ids from ``head`` back to the root."""
    return [sid for sid, _ in store.history(head)]


def reachable_steps(store: Any, session: str) -> set[str]:
    """Every step in the history of any branch of ``session``."""
    out: set[str] = set()
    for head in store.refs.branches(session).values():
        for sid, _ in store.history(head):
            if sid in out:
                break
            out.add(sid)
    return out


def reflog_chain_problems(store: Any, ref: str) -> list[str]:
    """Breaks of a reflog's chain (old == previous new, last new == the ref's value)."""
    log = store.refs.reflog(ref)
    value = store.storage.read_ref(ref)
    out = []
    if not log:
        return [f"{ref}: no reflog"]
    if log[0].old is not None:
        out.append(f"{ref}: first entry has old={log[0].old[:12]}")
    for i in range(1, len(log)):
        if log[i].old != log[i - 1].new:
            out.append(f"{ref}: entry {i} old={str(log[i].old)[:12]} != {log[i - 1].new[:12]}")
    if log[-1].new != value:
        out.append(f"{ref}: last entry new={log[-1].new[:12]} but the ref is {str(value)[:12]}")
    return out


def stray_object_files(root: Path) -> list[str]:
    """Files under objects/ that are not whole objects by name (``<64 hex>.<ext>``)."""
    pattern = re.compile(r"^([0-9a-f]{2})[0-9a-f]{62}\.(png|json|txt)$")
    out = []
    for p in (root / "objects").rglob("*"):
        if p.is_file():
            m = pattern.match(p.name)
            if not m or m.group(1) != p.parent.name:
                out.append(p.relative_to(root).as_posix())
    return out


def leftover_tmp(root: Path) -> list[str]:
    """Files left in tmp/ (a live writer's temp files are gone once its call returns)."""
    return sorted(p.name for p in (root / "tmp").iterdir()) if (root / "tmp").is_dir() else []


def ref_locks(root: Path) -> list[str]:
    """``*.lock`` files under refs/."""
    return sorted(p.relative_to(root).as_posix() for p in (root / "refs").rglob("*.lock"))


# --- I/O fault injection --------------------------------------------------------------------

OPS = ("write", "fsync", "link", "replace")


def _fd_path(fd: int) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return f"fd {fd}"


class FaultyOs:
    """Counts the write-path calls of the store's file modules and fails the k-th.

    ``install`` swaps the ``os`` name of ``exquisite_store.store.files`` and
    ``.storage`` for a copy of the module whose ``write``, ``fsync``, ``link`` and
    ``replace`` count every call (and name the file). Armed with ``fail_at=k``, the k-th
    call raises ``OSError(err)``; ``sticky`` makes every later call fail too (a full
    disk stays full; ``sticky_ops`` limits that to some calls), and a sticky ``write``
    first writes half its bytes and returns the short count, as a filling disk does.
    """

    def __init__(self) -> None:
        self.n = 0
        self.log: list[tuple[str, str]] = []
        self.fail_at: int | None = None
        self.err = errno.ENOSPC
        self.sticky = False
        self.sticky_ops: tuple[str, ...] = OPS
        self.injected = 0
        self.short_writes = 0

    def arm(
        self,
        k: int | None,
        err: int = errno.ENOSPC,
        sticky: bool = False,
        sticky_ops: tuple[str, ...] = OPS,
    ) -> None:
        """Count from zero again and fail the ``k``-th call (None: never)."""
        self.n, self.log, self.fail_at, self.err, self.sticky = 0, [], k, err, sticky
        self.sticky_ops = sticky_ops
        self.injected = self.short_writes = 0

    def _wrap(self, name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kw: Any) -> Any:
            self.n += 1
            what = _fd_path(args[0]) if name in ("write", "fsync") else str(args[1])
            self.log.append((name, what))
            k = self.fail_at
            later = self.sticky and name in self.sticky_ops
            if k is not None and (self.n == k or (later and self.n > k)):
                self.injected += 1
                if name == "write" and self.sticky and self.n == k and len(args[1]) > 1:
                    self.short_writes += 1
                    return real(args[0], args[1][: len(args[1]) // 2])
                raise OSError(self.err, os.strerror(self.err), what)
            return real(*args, **kw)

        return call

    def install(self, monkeypatch: Any, *more: types.ModuleType) -> FaultyOs:
        """Put the counting ``os`` into the store's file modules and ``more`` (undone by
        monkeypatch): e.g. ``viewer.export_files``, whose writes then count too."""
        from exquisite_store.store import files, storage

        proxy = types.SimpleNamespace(**{k: getattr(os, k) for k in dir(os) if k[:2] != "__"})
        for name in OPS:
            setattr(proxy, name, self._wrap(name, getattr(os, name)))
        for module in (files, storage, *more):
            monkeypatch.setattr(module, "os", proxy)
        return self


# --- processes ------------------------------------------------------------------------------


def python_cmd(*args: str) -> list[str]:
    """A command running this venv's Python."""
    return [sys.executable, *args]


def exq_cmd(*args: str) -> list[str]:
    """The ``exq`` command line, run by this venv's Python (what the console script runs)."""
    return python_cmd("-c", "from exquisite_store.cli import main; main()", *args)


def driver_cmd(store: Path | str, session: str, branch: str, count: int, *extra: str) -> list[str]:
    """The command line of the step driver (this file run as a script); ``store`` is a
    folder or ``s3://bucket/prefix`` (the driver takes its endpoint from AWS_ENDPOINT_URL)."""
    return python_cmd(str(HERE), str(store), session, branch, str(count), *extra)


def read_until(proc: subprocess.Popen, word: str, timeout: float = 30.0) -> None:
    """Read a child's stdout lines until one is ``word`` (fail if it exits first)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            _, err = proc.communicate(timeout=10)
            raise AssertionError(f"process exited ({proc.returncode}) before {word!r}: {err}")
        if line.strip() == word:
            return
    raise AssertionError(f"no {word!r} within {timeout}s")


def kill9(proc: subprocess.Popen, group: bool = False) -> tuple[str, str]:
    """SIGKILL a child we started (or its whole process group), reap it, return its output."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=20)
    return out or "", err or ""


def report_lines(path: Path) -> list[list[str]]:
    """The whole lines of a driver's report, split (a torn last line is no report)."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    return [ln.split() for ln in (lines if text.endswith("\n") else lines[:-1]) if ln]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``exq serve`` in its own process group on 127.0.0.1, with a browser-like client."""

    def __init__(self, store: Path, workers: int = 2, log: Path | None = None) -> None:
        self.store = store
        self.workers = workers
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.cookie = ""
        self.csrf = ""
        self.log = log

    def start(self, timeout: float = 30.0) -> Server:
        """Start the server and wait until it answers; take a CSRF token and a cookie."""
        for _ in range(3):  # a free port can be taken between the look and the bind
            self.port = free_port()
            out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
            self.proc = subprocess.Popen(
                exq_cmd("--store", str(self.store), "serve")
                + ["--port", str(self.port), "--workers", str(self.workers)],
                stdout=out,
                stderr=out,
                start_new_session=True,
                cwd=ROOT,
            )
            if self.log:
                out.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    status, headers, body = self.request("GET", "/", timeout=2)
                except OSError:
                    time.sleep(0.05)
                    continue
                assert status == 200, (status, body[:300])
                self.cookie = headers.get("set-cookie", "").split(";", 1)[0]
                m = re.search(rb'name="csrf-token" content="([^"]+)"', body)
                assert m and self.cookie, "no CSRF token or session cookie"
                self.csrf = m.group(1).decode()
                return self
            self.kill()
        raise AssertionError("exq serve did not start")

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout: float = 30.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """One request on a fresh connection: status, lower-cased headers, body."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            headers = {"Accept": "application/json"} if path.endswith(".json") else {}
            data = None
            if self.cookie:
                headers["Cookie"] = self.cookie
            if body is not None:
                data = json.dumps(body).encode()
                headers.update(
                    {
                        "Content-Type": "application/json",
                        "Accept": "application/json",
                        "X-CSRF-Token": self.csrf,
                    }
                )
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def get_json(self, path: str) -> Any:
        """GET a JSON document (asserting 200)."""
        status, _, body = self.request("GET", path)
        assert status == 200, (path, status, body[:300])
        return json.loads(body)

    def extend(self, session: str, **params: Any) -> str:
        """POST an extend as the page does; the job id."""
        status, _, body = self.request("POST", f"/s/{session}/extend", params)
        assert status == 202, (status, body[:300])
        return json.loads(body)["job"]

    def jobs(self, session: str) -> dict[str, dict[str, Any]]:
        """The session's job states."""
        return self.get_json(f"/-/jobs/{session}.json")

    def wait_jobs(self, session: str, jobs: list[str], timeout: float = 60.0) -> dict[str, Any]:
        """Wait until every job in ``jobs`` is succeeded or failed; their states."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = self.jobs(session)
            if all(states.get(j, {}).get("state") in ("succeeded", "failed") for j in jobs):
                return {j: states[j] for j in jobs}
            time.sleep(0.05)
        raise AssertionError(f"jobs {jobs} did not finish in {timeout}s")

    def kill(self) -> None:
        """SIGKILL the server and every process it started (its group)."""
        if self.proc is not None:
            kill9(self.proc, group=True)

    def stop(self) -> None:
        """SIGTERM the group, then SIGKILL if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of the group


@contextlib.contextmanager
def serving(store: Path, workers: int = 2, log: Path | None = None) -> Iterator[Server]:
    """A started server, killed (with its group) on the way out."""
    srv = Server(store, workers, log).start()
    try:
        yield srv
    finally:
        srv.stop()


def start_together(ready_dir: Path, barrier: Path, procs: list[subprocess.Popen]) -> None:
    """Open the barrier once every driver is waiting at it."""
    deadline = time.monotonic() + 60
    while len(list(ready_dir.glob(f"{barrier.name}.ready.*"))) < len(procs):
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(f"driver {p.pid} exited early: {p.communicate()[1]}")
        assert time.monotonic() < deadline, "drivers never got ready"
        time.sleep(0.005)
    barrier.touch()


# --- the driver -------------------------------------------------------------------------------


def _say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def _append(path: Path | None, line: str) -> None:
    if path is None:
        return
    with open(path, "a", encoding="ascii") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def open_store(location: str) -> Any:
    """The store at a folder or an ``s3://`` address (endpoint: ``AWS_ENDPOINT_URL``)."""
    from exquisite_store.store import Store

    return Store.open(location if location.startswith("s3://") else Path(location))


def gc_loop(argv: list[str]) -> int:
    """``--gc-loop STORE SECONDS STOPFILE``: ``gc(grace_s=0)`` again and again; totals."""
    from exquisite_store.store.gc import gc

    store = open_store(argv[0])
    deadline = time.monotonic() + float(argv[1])
    stop = Path(argv[2])
    runs = removed = 0
    _say("ready")
    while time.monotonic() < deadline and not stop.exists():
        rep = gc(store, grace_s=0)
        runs += 1
        removed += len(rep.removed)
        time.sleep(0.002)
    _say(json.dumps({"runs": runs, "removed": removed}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the step driver (see the module docstring)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--gc-loop"]:
        return gc_loop(argv[1:])
    sys.path.insert(0, str(ROOT))
    from exquisite_store.backends.patchmatch import PatchMatchBackend
    from exquisite_store.errors import BranchMoved, StepFailure
    from exquisite_store.pipeline.step import run_step
    from tests.fakes.backends import PatternBackend, PermanentErrorBackend

    ap = argparse.ArgumentParser(description="step driver for the fault and load suites")
    ap.add_argument("store")  # a folder or s3://bucket/prefix
    ap.add_argument("session")
    ap.add_argument("branch")
    ap.add_argument("count", type=int)
    ap.add_argument("--backend", choices=("patchmatch", "pattern"), default="patchmatch")
    ap.add_argument("--report", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--barrier", type=Path)
    ap.add_argument("--px", type=int, default=16)
    ap.add_argument("--overlap", type=int, default=4)
    ap.add_argument("--fail-every", type=int, default=0)
    ap.add_argument("--max-tries", type=int, default=0)
    args = ap.parse_args(argv)

    store = open_store(args.store)
    good = PatchMatchBackend(in_process=True) if args.backend == "patchmatch" else PatternBackend()
    bad = PermanentErrorBackend()
    if args.barrier:
        args.barrier.with_name(f"{args.barrier.name}.ready.{os.getpid()}").touch()
        deadline = time.monotonic() + 120
        while not args.barrier.exists():
            if time.monotonic() > deadline:
                return 4
            time.sleep(0.001)
    _say("ready")
    commits = moved = failed = tries = waits = 0

    def observe(type_: str, data: dict) -> None:
        nonlocal waits
        if type_ == "progress" and data.get("phase") == "wait":
            waits += 1  # another writer was growing the branch: this one queued behind it

    max_tries = args.max_tries or 50 * args.count + 10
    while commits < args.count and tries < max_tries:
        tries += 1
        backend = bad if args.fail_every and tries % args.fail_every == 0 else good
        _say("begin")
        try:
            out = run_step(
                store,
                args.session,
                branch=args.branch,
                backend_impl=backend,
                extension_px=args.px,
                overlap_px=args.overlap,
                seed=args.seed + tries,
                retry_delays=(0.0, 0.0),
                prompt=f"driver {os.getpid()} try {tries}",
                observer=observe,
            )
        except BranchMoved as exc:
            moved += 1
            _append(args.report, f"moved {exc.details['step_id']} {exc.details['attempt_id']}")
            continue
        except StepFailure as exc:
            failed += 1
            _append(args.report, f"failed {exc.kind} {exc.details.get('attempt_id') or '-'}")
            continue
        commits += 1
        _append(args.report, f"commit {out.step_ids[0]}")
    _say(
        json.dumps(
            {"commits": commits, "moved": moved, "failed": failed, "tries": tries, "waits": waits}
        )
    )
    return 0 if commits == args.count else 5


if __name__ == "__main__":
    sys.exit(main())
