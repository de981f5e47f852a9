"""The drift report: each branch's colour against the root, and its seam casts added up."""

from __future__ import annotations

import numpy as np
from click.testing import CliRunner

from exquisite_store import core
from exquisite_store.cli import cli
from exquisite_store.geometry.rect import Rect
from exquisite_store.pipeline.step import run_step
from exquisite_store.store import Store

from .fakes.backends import TruthBackend, cut
from .fakes.photos import photo


def _grow(store: Store, truth: np.ndarray, origin, seam: str, steps: int, branch=None) -> None:
    for _ in range(steps):
        head = store.step(store.refs.head("s", branch or "main"))
        c = store.canvas(head)
        backend = TruthBackend(
            truth, parent_rect=Rect(c.x, c.y, c.width, c.height), direction="right", origin=origin
        )
        run_step(
            store,
            "s",
            branch=branch,
            parent=None,
            backend_impl=backend,
            retry_delays=(0.0,),
            extension_px=40,
            seam=seam,
            seed=1,
        )


def test_feather_casts_stay_on_the_record_and_match_has_none(tmp_path) -> None:
    truth = photo("motorcycle", width=320)
    start, origin = cut(truth, "right", 120)
    store = Store.init(tmp_path / "st")
    store.create_session("s", start)
    root = store.refs.head("s", "main")
    core.create_branch(store, "s", "soft", root)
    _grow(store, truth, origin, "match", 3)
    _grow(store, truth, origin, "feather", 3, branch="soft")

    matched = core.branch_drift(store, "s", "main")
    feathered = core.branch_drift(store, "s", "soft")
    assert len(matched.steps) == len(feathered.steps) == 3 and matched.unmeasured == 0
    want = tuple(start.reshape(-1, 3).mean(axis=0))
    assert np.allclose(matched.root_mean, want)
    # feather keeps the model's cast at its first seam and every band after continues
    # it: the casts added up keep it on the record; match takes it off at every seam
    assert feathered.steps[0].cast > 10
    assert feathered.accumulated_cast > 10
    assert matched.accumulated_cast < 3
    casts = [s.cast for s in feathered.steps]
    assert feathered.steps[-1].accumulated_cast == sum(casts)
    # each band against the root: its recorded mean colour minus the root's
    band = store.canvas_pixels(store.step(matched.head))[:, -40:, :3].reshape(-1, 3).mean(axis=0)
    assert np.allclose(matched.steps[-1].band_vs_root, band - want, atol=0.01)

    out = CliRunner().invoke(cli, ["--store", str(tmp_path / "st"), "drift", "s"])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert [line.split()[0] for line in lines] == ["main", "soft"]
    assert "seam casts added up" in lines[0]
    out = CliRunner().invoke(cli, ["--store", str(tmp_path / "st"), "drift", "s", "-b", "soft"])
    assert out.exit_code == 0 and len(out.output.splitlines()) == 4
    assert "shift (+0.00, +0.00) px" in out.output
    bad = CliRunner().invoke(cli, ["--store", str(tmp_path / "st"), "drift", "s", "-b", "nope"])
    assert bad.exit_code == 1 and bad.output.startswith("error:")
