"""Commands between stores: remote, push, pull, clone (fast-forward only, like git)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import click

from exquisite_store.cli.helpers import open_store
from exquisite_store.core import remotes as rem
from exquisite_store.ids import short
from exquisite_store.store import Store
from exquisite_store.store.transfer import Transfer


@click.group()
def remote() -> None:
    """The other stores this one pushes to and pulls from."""


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.pass_context
def remote_add(ctx: click.Context, name: str, url: str) -> None:
    """Add remote NAME: another store's folder (or s3:// URL)."""
    where = rem.add_remote(open_store(ctx), name, url)
    click.echo(f"remote {name} -> {where}")


@remote.command("list")
@click.pass_context
def remote_list(ctx: click.Context) -> None:
    """List the remotes."""
    table = rem.remotes(open_store(ctx))
    for name, url in sorted(table.items()):
        click.echo(f"{name}\t{url}")
    if not table:
        click.echo("no remotes (add one with `exq remote add NAME URL`)")


@remote.command("remove")
@click.argument("name")
@click.pass_context
def remote_remove(ctx: click.Context, name: str) -> None:
    """Forget remote NAME (nothing is deleted from either store)."""
    rem.remove_remote(open_store(ctx), name)
    click.echo(f"removed remote {name}")


@contextlib.contextmanager
def _bar(label: str) -> Iterator[rem.Progress]:
    """A live count of the objects and bytes copied, on stderr (at most 10 times a second)."""
    shown = {"at": 0.0, "any": False}

    def update(t: Transfer) -> None:
        now = time.monotonic()
        if now - shown["at"] >= 0.1:
            shown["at"], shown["any"] = now, True
            click.echo(f"\r{label}: {t.copied} objects, {t.bytes / 1e6:.1f} MB", err=True, nl=False)

    try:
        yield update
    finally:
        if shown["any"]:
            click.echo("", err=True)


def _print(report: rem.SyncReport, verb: str) -> None:
    for m in report.moves:
        if m.status == "refused":
            continue
        was = short(m.old) if m.old else "(none)"
        click.echo(f"{m.session}:{m.branch}  {was} -> {short(m.new)}  {m.status}")
    t = report.transfer
    click.echo(f"{verb}: {t.copied} objects ({t.bytes:,} bytes) copied, {t.present} already there")
    for m in report.refused:
        click.echo(f"error: refused: {m.reason}", err=True)
    if report.refused:
        raise click.exceptions.Exit(1)


@click.command()
@click.argument("name", required=False)
@click.argument("target", required=False, metavar="[SESSION[:BRANCH]]")
@click.pass_context
def push(ctx: click.Context, name: str | None, target: str | None) -> None:
    """Send sessions to remote NAME (default origin), fast-forward only."""
    store = open_store(ctx)
    name, target = _resolve(store, name, target)
    with _bar("copying") as bar:
        report = rem.push(store, name, target, bar)
    _print(report, "pushed")


@click.command()
@click.argument("name", required=False)
@click.argument("target", required=False, metavar="[SESSION[:BRANCH]]")
@click.pass_context
def pull(ctx: click.Context, name: str | None, target: str | None) -> None:
    """Fetch sessions from remote NAME (default origin) and fast-forward branches."""
    store = open_store(ctx)
    name, target = _resolve(store, name, target)
    with _bar("copying") as bar:
        report = rem.pull(store, name, target, bar)
    _print(report, "pulled")


@click.command()
@click.argument("url")
@click.argument("folder", type=click.Path(path_type=Path))
def clone(url: str, folder: Path) -> None:
    """Make a new store in FOLDER with every session of the store at URL."""
    with _bar("copying") as bar:
        store, report = rem.clone(url, folder.absolute(), bar)
    click.echo(f"cloned {url} into {store.root} (remote origin)")
    _print(report, "cloned")


def _resolve(store: Store, name: str | None, target: str | None) -> tuple[str, str | None]:
    """``[NAME] [SESSION[:BRANCH]]``: a lone argument naming a session is a target.

    ``push garden:main`` means origin; ``push backup`` means remote backup.
    """
    lone = name is not None and target is None and name not in rem.remotes(store)
    if lone and (":" in name or name in store.refs.sessions()):
        return "origin", name
    return name or "origin", target


COMMANDS = (remote, push, pull, clone)
