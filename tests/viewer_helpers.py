"""Shared set-up for viewer tests: a store with a small session, steps and an attempt."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import numpy as np
from flask.testing import FlaskClient
from PIL import Image

from exquisite_store.errors import StepFailure
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store

from .fakes.backends import PatternBackend, WrongSizeBackend
from .helpers import rng_image


def make_session(root: Path | Store, name: str = "garden", steps: int = 2) -> dict:
    """A session with ``steps`` steps on main, a 2-candidate branch and one failed attempt.

    In the store at ``root`` (made if there is none), or in the store given.
    """
    if isinstance(root, Store):
        store = root
    else:
        store = Store.init(root) if not (root / "store.toml").exists() else Store.open(root)
    store.create_session(name, rng_image(48, 64, seed=3), title="A <b>garden</b>")
    ids = []
    for i in range(steps):
        out = run_step(
            store,
            name,
            backend_impl=PatternBackend(),
            direction="right",
            extension_px=16,
            overlap_px=4,
            seed=i,
            prompt=f"step {i} <script>x</script>",
        )
        ids.append(out.step_ids[0])
    side = run_step(
        store,
        name,
        parent=ids[0],
        branch="side",
        backend_impl=PatternBackend(),
        direction="down",
        extension_px=8,
        overlap_px=2,
        seed=7,
        n=2,
    )
    try:
        run_step(store, name, backend_impl=WrongSizeBackend(), extension_px=8, overlap_px=2, seed=9)
    except StepFailure as exc:
        attempt = exc.details["attempt_id"]
    return {"store": store, "steps": ids, "side": side.step_ids, "attempt": attempt}


def csrf_of(client) -> str:
    html = client.get("/").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def png_bytes(w: int, h: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)).save(
        buf, format="PNG"
    )
    return buf.getvalue()


def wait_job(client, session: str, job: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/-/jobs/{session}.json").get_json()[job]
        if state["state"] in ("succeeded", "failed"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"job {job} did not finish")


class BufferedClient(FlaskClient):
    """A test client that reads every response whole (so served files are closed)."""

    def open(self, *args, **kwargs):
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)
