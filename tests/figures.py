"""Figures the long suites measure, printed once at the end of the run.

A suite calls ``record(suite, figures)``; the ``pytest_terminal_summary`` hook in
conftest prints one ``FIGURES:`` line per suite and appends each as a JSON line to
``tests/artifacts/figures.jsonl`` (docs/RELIABILITY.md quotes them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
FIGURES_FILE = ARTIFACTS / "figures.jsonl"
RECORDED: dict[str, dict[str, Any]] = {}


def record(suite: str, figures: dict[str, Any]) -> None:
    """Keep a suite's figures for the end of the run (a later call adds to them)."""
    RECORDED.setdefault(suite, {}).update(figures)


def line(suite: str, figures: dict[str, Any]) -> str:
    """The ``FIGURES:`` line of a suite."""

    def show(v: Any) -> str:
        return json.dumps(v, separators=(",", ":")) if isinstance(v, dict | list) else str(v)

    return f"FIGURES: {suite} " + " ".join(f"{k}={show(v)}" for k, v in figures.items())


def flush(write_line) -> None:
    """Print every recorded suite's line and append it to the figures file."""
    if not RECORDED:
        return
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with open(FIGURES_FILE, "a", encoding="utf-8") as f:
        for suite, figures in RECORDED.items():
            write_line(line(suite, figures))
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            f.write(json.dumps({"suite": suite, "time": stamp, **figures}, sort_keys=True) + "\n")
    RECORDED.clear()
