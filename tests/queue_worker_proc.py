"""An ``exq worker`` for the queue tests, run as its own process.

    python tests/queue_worker_proc.py REDIS_URL [--burst] [--slow-commit SECONDS]

``--slow-commit`` makes every candidate wait before it is built (after the backend's
answer is stored), so a test can SIGKILL the worker between a paid answer and its commit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exquisite_store.core import queue  # noqa: E402
from exquisite_store.pipeline import step as step_module  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("redis_url")
    ap.add_argument("--burst", action="store_true")
    ap.add_argument("--slow-commit", type=float, default=0.0)
    args = ap.parse_args()
    if args.slow_commit:
        build = step_module.build_candidate

        def slow(*a, **kw):
            print("building", flush=True)
            time.sleep(args.slow_commit)
            return build(*a, **kw)

        step_module.build_candidate = slow
    print("ready", flush=True)
    queue.worker(queue.connect(args.redis_url), list(queue.QUEUES), burst=args.burst)


if __name__ == "__main__":
    main()
