"""``exq config``: the store's settings (user.name, the author of what you do, like git)."""

from __future__ import annotations

import click

from exquisite_store.authorship import check_author
from exquisite_store.cli.helpers import open_store
from exquisite_store.store.config import CONFIG_KEYS, read_config, set_config


@click.command()
@click.argument("key", required=False)
@click.argument("value", required=False)
@click.option("--unset", is_flag=True, help="Remove the setting.")
@click.pass_context
def config(ctx: click.Context, key: str | None, value: str | None, unset: bool) -> None:
    """Show the store's settings, show one (KEY), or set it (KEY VALUE)."""
    store = open_store(ctx)
    if key is None:
        for k, v in sorted(read_config(store.root).items()):
            click.echo(f"{k}={v}")
        return
    if key not in CONFIG_KEYS:
        raise click.UsageError(
            f"unknown setting {key!r}; the settings are {', '.join(CONFIG_KEYS)}"
        )
    if unset:
        set_config(store, key, None)
    elif value is None:
        current = read_config(store.root).get(key)
        if current is None:
            ctx.exit(1)
        click.echo(current)
    else:
        set_config(store, key, check_author(value) if key == "user.name" else value)


COMMANDS = (config,)
