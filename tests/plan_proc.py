"""A plan runner for the kill test, run as its own process.

    python tests/plan_proc.py STORE SESSION PLAN LOG

Runs (or resumes) plan PLAN with a slow fake backend that appends ``answered RID`` to
LOG for every answer it gives (flushed and fsynced before it returns the answer), and
``recorded RID`` once the store has the answer durably (after ``record_response``), so
the test can tell which requests were answered twice, and whether the first answer of
each had been recorded before the kill.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exquisite_store.core import plans  # noqa: E402
from exquisite_store.store import Store  # noqa: E402
from tests.fakes.backends import PatternBackend  # noqa: E402


class LoggingBackend(PatternBackend):
    def __init__(self, log: Path) -> None:
        super().__init__()
        self.log = log

    def generate(self, request, cancel=None):
        time.sleep(0.15)  # most of a step is the call, as with a real model
        result = super().generate(request, cancel)
        note(self.log, f"answered {request.request_id}")
        return result


def note(log: Path, line: str) -> None:
    with open(log, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def main() -> None:
    root, session, pid, log = sys.argv[1:5]
    store = Store.open(Path(root))
    record = Store.record_response

    def recorded(self, session, request_id, response_id):
        record(self, session, request_id, response_id)
        note(Path(log), f"recorded {request_id}")

    Store.record_response = recorded
    print("ready", flush=True)
    st = plans.run(store, session, pid, backend=LoggingBackend(Path(log)))
    print(f"done {st.state} {st.done}", flush=True)


if __name__ == "__main__":
    main()
