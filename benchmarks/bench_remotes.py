"""Push and pull between stores: what one new step costs on a 1,000-step session.

A 1,000-step session is built through the store (as bench_viewer.py does), cloned into
a second store (the baseline: every object copied), then one step is added and pushed.
Each figure counts the calls made to the remote's storage (each one request on an
object store), the bytes copied and the time; the push with nothing new comes last.

Run: ``.venv/bin/python benchmarks/bench_remotes.py [--steps 1000]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_viewer import Builder, build_session  # noqa: E402

from exquisite_store.core import remotes as rem  # noqa: E402
from exquisite_store.store import Store  # noqa: E402
from exquisite_store.store.storage import BaseStorage  # noqa: E402


class Counting(BaseStorage):
    """Counts every public call made to the storage it wraps."""

    def __init__(self, inner: BaseStorage) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattribute__(self, name: str):
        if name in ("inner", "calls", "__class__", "__dict__"):
            return object.__getattribute__(self, name)
        attr = getattr(object.__getattribute__(self, "inner"), name)
        if callable(attr) and not name.startswith("_"):
            object.__getattribute__(self, "calls")[name] += 1
        return attr


def push_counted(local: Store, remote_root: Path, session: str) -> tuple[dict, float, Counter]:
    dst = Store(Counting(Store.open(remote_root).storage))
    report = rem.SyncReport()
    t0 = time.perf_counter()
    rem._send(local, dst, session, None, report, None)
    seconds = time.perf_counter() - t0
    calls = dst.storage.calls
    return {"copied": report.transfer.copied, "bytes": report.transfer.bytes}, seconds, calls


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        local = Store.init(base / "local")
        built = build_session(local, "s", args.steps, 50, 10, 100)
        Store.init(base / "remote")
        print(f"built {built.steps} steps, {built.branches} branches in {built.seconds:.1f} s")

        full, full_s, full_calls = push_counted(local, base / "remote", "s")
        b = Builder(local, "s", seed=7)
        head = local.refs.head("s", "main")
        with local.writing():
            b.grow("main", head, head)
        one, one_s, one_calls = push_counted(local, base / "remote", "s")
        _none, none_s, none_calls = push_counted(local, base / "remote", "s")

        rows = [
            ("first push (every object)", full, full_s, full_calls),
            ("push of 1 new step", one, one_s, one_calls),
        ]
        print("| push | objects | bytes | remote calls | seconds |")
        print("| --- | --- | --- | --- | --- |")
        for label, t, s, c in rows:
            print(f"| {label} | {t['copied']:,} | {t['bytes']:,} | {sum(c.values()):,} | {s:.3f} |")
        print(f"| nothing new | 0 | 0 | {sum(none_calls.values())} | {none_s:.3f} |")
        print("calls of the 1-step push:", dict(one_calls))
        print("calls of the push with nothing new:", dict(none_calls))
        ratio = full_s / one_s if one_s else float("inf")
        print(
            f"SUMMARY: push 1 new step on {built.steps} steps: {sum(one_calls.values())} remote "
            f"calls, {one['bytes']:,} bytes, {one_s * 1000:.0f} ms ({ratio:.0f}x faster than the "
            f"first push of {full['copied']:,} objects); nothing new: "
            f"{sum(none_calls.values())} calls"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
