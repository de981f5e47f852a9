"""One definition of what a step accepts: the same bad value gets the same message from
the CLI, the JSON API, the viewer's form and ``exq defaults``, naming the field."""

from __future__ import annotations

import msgspec
import pytest
from click.testing import CliRunner

from exquisite_store.cli import cli
from exquisite_store.cli.helpers import STEP_OPTIONS
from exquisite_store.errors import ConfigError
from exquisite_store.manifests import StepParams
from exquisite_store.pipeline.params import SPECS, change_defaults, merge, recipe_params
from viewer import create_app

from .viewer_helpers import BufferedClient, csrf_of, make_session

OPTION = {field: opt for opt, _short, field in STEP_OPTIONS}

CASES = [
    ("extension_px", "0", "extension_px must be between 1 and 4096, not '0'"),
    ("extension_px", "5000", "extension_px must be between 1 and 4096, not '5000'"),
    ("extension_px", "ten", "extension_px must be a whole number, not 'ten'"),
    ("overlap_px", "-1", "overlap_px must be between 0 and 4096, not '-1'"),
    ("context_px", "0", "context_px must be between 1 and 16384, not '0'"),
    ("direction", "sideways", "direction must be one of right, left, up, down, not 'sideways'"),
    ("seam", "glue", "seam must be one of hard, feather, match, not 'glue'"),
    (
        "immutable_policy",
        "nothing",
        "immutable_policy must be one of outside-seam, all-old, not 'nothing'",
    ),
    (
        "backend",
        "magic",
        "backend must be one of patchmatch, patchmatch-fast, replay, openai, not 'magic'",
    ),
    (
        "quality",
        "ultra",
        "quality must be one of auto, low, medium, high, xhigh, max, not 'ultra'",
    ),
    ("n", "99", "n must be between 1 and 10, not '99'"),
    ("n", "1.5", "n must be a whole number, not '1.5'"),
    ("seed", "-3", "seed must be between 0 and 9223372036854775807, not '-3'"),
    ("model", "m" * 65, "model must be at most 64 characters, not '" + "m" * 39),
    ("input_fidelity", "medium", "input_fidelity must be one of low, high, not 'medium'"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return make_session(tmp_path_factory.mktemp("params") / "store")


@pytest.fixture(scope="module")
def client(world):
    app = create_app({"EXQ_STORE": str(world["store"].root), "TESTING": True})
    app.test_client_class = BufferedClient
    return app.test_client()


def state(store) -> tuple:
    """What a refused request must leave alone: branches, the session, the event log."""
    return store.refs.branches("garden"), store.session("garden"), store.last_event_seq("garden")


def _json_value(value: str):
    """What a JSON client would send: numbers as numbers."""
    try:
        return int(value)
    except ValueError:
        return value


@pytest.mark.parametrize(
    ("field", "value", "message"), CASES, ids=[f"{c[0]}={c[1][:8]}" for c in CASES]
)
def test_every_front_end_gives_the_same_message(world, client, field, value, message) -> None:
    store = world["store"]
    before = (
        store.refs.branches("garden"),
        store.session("garden"),
        store.last_event_seq("garden"),
    )

    res = CliRunner().invoke(
        cli, ["--store", str(store.root), "step", "garden", OPTION[field], value]
    )
    assert res.exit_code == 1
    assert res.output.startswith(f"error: {message}"), res.output

    res = CliRunner().invoke(
        cli, ["--store", str(store.root), "defaults", "garden", f"{field}={value}"]
    )
    assert res.exit_code == 1 and res.output.startswith(f"error: {message}"), res.output

    token = csrf_of(client)
    headers = {"X-CSRF-Token": token, "X-Requested-With": "fetch"}
    as_json = client.post("/s/garden/extend", json={field: _json_value(value)}, headers=headers)
    as_form = client.post("/s/garden/extend", data={field: value}, headers=headers)
    estimate = client.get("/s/garden/estimate.json", query_string={field: value})
    for resp in (as_json, as_form, estimate):
        assert resp.status_code == 400
        assert resp.get_json()["error"].startswith(message), resp.get_json()
        assert resp.get_json()["kind"] == "config_error"

    # nothing moved, nothing written
    assert state(store) == before


def test_unknown_parameters_are_named(world) -> None:
    with pytest.raises(ConfigError, match="unknown step parameter 'colour'") as info:
        merge(StepParams(), {"colour": "red"})
    assert info.value.field == "colour"
    store = str(world["store"].root)
    res = CliRunner().invoke(cli, ["--store", store, "defaults", "garden", "colour=red"])
    assert res.exit_code == 1 and "unknown step parameter 'colour'" in res.output


def test_strings_become_values_and_aliases_are_fields() -> None:
    p = merge(StepParams(), {"px": "512", "overlap": "16", "seed": "7", "n": 3, "seam": "hard"})
    assert (p.extension_px, p.overlap_px, p.seed, p.n, p.seam) == (512, 16, 7, 3, "hard")
    assert merge(p, {"px": None, "seed": ""}) == p  # not given: keep


def test_defaults_clear_only_optional_fields() -> None:
    p = change_defaults(StepParams(), {"seed": "4", "input_fidelity": "high"})
    assert (p.seed, p.input_fidelity) == (4, "high")
    cleared = change_defaults(p, {"seed": "none", "input_fidelity": ""})
    assert cleared.seed is None and cleared.input_fidelity is msgspec.UNSET
    # an UNSET field is not encoded: a session that never set it keeps its id
    assert b"input_fidelity" not in msgspec.json.encode(cleared)
    with pytest.raises(ConfigError, match="extension_px must be between 1 and 4096, not empty"):
        change_defaults(p, {"extension_px": "none"})


def test_specs_come_from_the_struct() -> None:
    assert set(SPECS) == set(StepParams.__struct_fields__)
    assert SPECS["direction"].choices == ("right", "left", "up", "down")
    assert (SPECS["n"].minimum, SPECS["n"].maximum) == (1, 10)


def test_the_form_offers_exactly_what_the_struct_accepts(client) -> None:
    html = client.get("/s/garden").get_data(as_text=True)
    for spec in SPECS.values():
        if spec.kind == "choice":
            for choice in spec.choices:
                assert f"<option>{choice}</option>" in html or f"<option selected>{choice}" in html
        elif spec.kind == "int":
            assert (
                f'name="{spec.name}" type="number" min="{spec.minimum}" max="{spec.maximum}"'
                in html
            )


def test_recipe_params_round_trip(world) -> None:
    store = world["store"]
    step = store.step(world["steps"][0])
    params = merge(StepParams(), {**recipe_params(step.recipe), "backend": "patchmatch"})
    assert (params.direction, params.extension_px, params.seed) == (
        step.recipe.direction,
        step.recipe.extension_px,
        step.recipe.seed,
    )
