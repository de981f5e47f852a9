"""The ``exq`` command line (click); the only package that exits the process.

This module builds the group and adds the commands; each command module imports
only ``cli.helpers`` (and the core), never another command module.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from exquisite_store.authorship import as_author
from exquisite_store.cli import (
    cluster_commands,
    config_commands,
    film_commands,
    grow_commands,
    organise_commands,
    queue_commands,
    remote_commands,
    serve_commands,
    session_commands,
    step_commands,
    store_commands,
    team_commands,
)
from exquisite_store.cli.helpers import DEFAULT_STORE, cli_author
from exquisite_store.errors import ExqError, StoreError, UserError


class ExqGroup(click.Group):
    """A group that turns the project's errors into one line and a non-zero exit."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; ExqError -> ``error: message`` on stderr, exit 1."""
        try:
            return super().invoke(ctx)
        except ExqError as exc:
            # one line, always "error: ...": a step failure also names its kind
            kind = "" if isinstance(exc, UserError | StoreError) else f"{exc.kind}: "
            click.echo(f"error: {kind}{exc.message}", err=True)
            ctx.exit(1)


@click.group(cls=ExqGroup)
@click.option(
    "--store",
    envvar="EXQ_STORE",
    default=DEFAULT_STORE,
    show_default=True,
    help="Store directory or s3://bucket/prefix (or set EXQ_STORE).",
)
@click.option(
    "--s3-endpoint",
    envvar="AWS_ENDPOINT_URL",
    default=None,
    help="S3 server of an s3:// store (or set AWS_ENDPOINT_URL); AWS's by default.",
)
@click.pass_context
def cli(ctx: click.Context, store: str, s3_endpoint: str | None) -> None:
    """exquisite-store: grow an image step by step and keep every step."""
    ctx.ensure_object(dict)
    ctx.obj["store"] = store
    ctx.obj["s3_endpoint"] = s3_endpoint
    ctx.with_resource(as_author(cli_author(ctx)))  # every record this command makes says who


for _module in (
    store_commands,
    session_commands,
    step_commands,
    serve_commands,
    remote_commands,
    queue_commands,
    grow_commands,
    cluster_commands,
    config_commands,
    team_commands,
    organise_commands,
    film_commands,
):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(cli.main(prog_name="exq", standalone_mode=True))
