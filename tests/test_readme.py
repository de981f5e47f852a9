"""The README documents every exq command and every step option."""

from __future__ import annotations

from pathlib import Path

from exquisite_store.cli import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_quickstart_is_two_commands() -> None:
    assert "make demo" in README and "make test" in README


def test_every_command_is_documented() -> None:
    for name in cli.commands:
        assert f"`exq {name}" in README, f"exq {name} is not in the README"


def test_every_step_option_is_documented() -> None:
    step = cli.commands["step"]
    for param in step.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--"):
                assert opt in README, f"exq step {opt} is not in the README"
