"""exq step / attempts / reproduce through the CLI, failures included."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from exquisite_store.cli import cli
from exquisite_store.store import Store

from .helpers import FIXTURES


@pytest.fixture
def st(tmp_path: Path) -> Path:
    st = tmp_path / "st"
    res = CliRunner().invoke(cli, ["--store", str(st), "new", "s", str(FIXTURES / "odd.png")])
    assert res.exit_code == 0, res.output
    return st


def run(st: Path, *args: str, code: int = 0):
    res = CliRunner().invoke(cli, ["--store", str(st), *args])
    assert res.exit_code == code, (res.output, res.exception)
    assert "Traceback" not in res.output
    return res.output


def test_step_shows_phases_and_commits(st) -> None:
    out = run(
        st,
        "step",
        "s",
        "--direction",
        "left",
        "--px",
        "40",
        "--overlap",
        "8",
        "--seed",
        "5",
        "--prompt",
        "more stripes",
    )
    for phase in ("plan", "prompt", "request", "generate", "decode", "validate", "commit"):
        assert phase in out
    assert "it ignores the prompt text" in out
    assert "committed" in out and "on main: canvas 373x211" in out
    store = Store.open(st)
    head = store.step(store.refs.head("s", "main"))
    assert head.recipe.direction == "left" and head.recipe.seed == 5
    assert store.objects.get_text(head.recipe.prompt_id) == "more stripes"
    assert "more stripes" in store.objects.get_text(head.request.final_prompt_id)


def test_candidates_and_branch_from_a_step(st) -> None:
    root = Store.open(st).refs.head("s", "main")
    out = run(
        st,
        "step",
        "s",
        "--from",
        root[:9],
        "--branch",
        "wide",
        "-n",
        "2",
        "--px",
        "24",
        "--overlap",
        "4",
        "--seed",
        "1",
    )
    # two candidates wait in the staging area; no branch moved
    assert out.count("staged candidate") == 2 and "wide" not in Store.open(st).refs.branches("s")
    staged = Store.open(st).refs.staged("s")
    first, second = (staged[k] for k in sorted(staged))
    listing = run(st, "staged", "s")
    assert "2 candidates for wide" in listing and first[:12] in listing
    assert "kept" in run(st, "keep", "s", second[:10])  # kept first: accept clears the rest
    assert f"wide -> {first[:12]}" in run(st, "accept", "s", first[:10])
    assert Store.open(st).refs.branches("s") == {
        "main": root,
        "wide": first,
        "wide~2": second,
    } | {k: v for k, v in Store.open(st).refs.branches("s").items() if k == "main"}
    assert not Store.open(st).refs.staged("s")
    # undo the accept: wide is removed again (it was made by the accept)
    assert f"heads/wide: {first[:12]} -> (none)" in run(st, "undo", "s", "wide")
    assert "accept candidate 1" in run(st, "history", "s", "wide")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--px", "0"], "extension_px"),
        (["--px", "-3"], "extension_px"),
        (["--overlap", "5000"], "overlap_px"),
        (["--overlap", "333"], "overlap_px"),
        (["-n", "0"], "n"),
        (["--seed", "-1"], "seed"),
    ],
)
def test_bad_parameters_name_the_field(st, args, field) -> None:
    before = Store.open(st).refs.branches("s")
    out = run(st, "step", "s", *args, code=1)
    last = out.strip().splitlines()[-1]
    assert last.startswith("error: ") and field in last
    assert Store.open(st).refs.branches("s") == before


def test_unknown_choice_names_the_field_and_its_choices(st) -> None:
    res = CliRunner().invoke(cli, ["--store", str(st), "step", "s", "--direction", "sideways"])
    assert res.exit_code == 1
    assert res.output == "error: direction must be one of right, left, up, down, not 'sideways'\n"


def test_failed_step_records_an_attempt_and_moves_nothing(st) -> None:
    before = Store.open(st).refs.branches("s")
    out = run(st, "step", "s", "--backend", "replay", "--px", "16", code=1)
    assert "failed: PermanentBackendError" in out and "no branch moved" in out
    assert Store.open(st).refs.branches("s") == before
    listed = run(st, "attempts", "s")
    assert "PermanentBackendError: replay has no recorded response" in listed
    assert "1 attempts" in listed


def test_unknown_branch_and_foreign_step(st, tmp_path) -> None:
    assert "no branch" in run(st, "step", "s", "--branch", "nope", code=1)
    run(st, "new", "t", str(FIXTURES / "flat.png"))
    other_root = Store.open(st).refs.head("t", "main")
    assert "another session" in run(st, "step", "s", "--from", other_root, code=1)


def test_reproduce_root_is_a_clear_error(st) -> None:
    root = Store.open(st).refs.head("s", "main")
    assert "nothing to re-run" in run(st, "reproduce", root, code=1)


def test_session_defaults_are_stored_and_used(st) -> None:
    out = run(st, "defaults", "s", "px=24", "overlap=4", "seam=feather", "seed=11")
    assert "extension_px       24" in out and "seam               feather" in out
    store = Store.open(st)
    assert store.session("s").defaults.extension_px == 24
    run(st, "step", "s")
    head = Store.open(st).step(Store.open(st).refs.head("s", "main"))
    assert (head.recipe.extension_px, head.recipe.seam, head.recipe.seed) == (24, "feather", 11)
    assert "seed               None" in run(st, "defaults", "s", "seed=none")
    for bad, field in (
        ("px=0", "extension_px"),
        ("seam=glue", "seam"),
        ("colour=red", "colour"),
        ("px", "KEY=VALUE"),
        ("n=two", "n"),
    ):
        assert field in run(st, "defaults", "s", bad, code=1)
    assert Store.open(st).session("s").defaults.extension_px == 24
