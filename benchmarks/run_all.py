"""`make bench`: run every benchmark in this folder and print one summary table.

Each benchmark prints its own tables and one or more ``SUMMARY`` lines; this runs
them one after another (each in its own process, so none warms another's caches),
shows their output, and collects the SUMMARY lines at the end.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
#: (script, arguments): the order is cheapest first
BENCHMARKS = [
    ("seam_table.py", []),
    ("bench_repair.py", []),
    ("bench_viewer.py", []),
    ("bench_export.py", []),
    ("bench_organise.py", []),
    ("bench_store.py", ["--tile-sizes", "128,256,512", "--steps", "100"]),
    ("bench_s3.py", []),
    ("bench_remotes.py", []),
    ("bench_live.py", []),
    ("bench_workspace.py", []),
    ("bench_film.py", []),
    ("bench_step.py", []),
    ("bench_scale.py", ["--quick"]),
    ("bench_fsck.py", ["--reps", "2"]),
]


def main() -> int:
    summary: list[tuple[str, str, float]] = []
    failed = []
    for script, args in BENCHMARKS:
        print(f"\n=== {script} {' '.join(args)}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(HERE / script), *args], capture_output=True, text=True, check=False
        )
        secs = time.perf_counter() - t0
        sys.stdout.write(proc.stdout)
        if proc.returncode != 0:
            sys.stdout.write(proc.stderr)
            failed.append(script)
        for line in proc.stdout.splitlines():
            if line.startswith("SUMMARY"):
                summary.append((script, line.removeprefix("SUMMARY").strip(), secs))
    print("\n=== summary\n")
    print("| benchmark | result |\n|---|---|")
    for script, line, _secs in summary:
        print(f"| {script} | {line} |")
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
