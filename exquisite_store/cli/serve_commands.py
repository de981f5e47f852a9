"""Commands that show a store to others: serve (the viewer) and export (a static site)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from exquisite_store.cli.helpers import QUEUE_OPTION, open_store
from exquisite_store.core import queue
from exquisite_store.errors import UserError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_WORKERS = 32


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(1, MAX_WORKERS),
    help="Steps run at once (in this process; with --queue the workers run them).",
)
@QUEUE_OPTION
@click.option(
    "--auth",
    "auth_mode",
    type=click.Choice(["tokens", "proxy"]),
    default=None,
    help="Who may use the viewer: users' API tokens, or a sign-on proxy's X-Forwarded-User.",
)
@click.option(
    "--trusted-proxy",
    "trusted",
    multiple=True,
    help="With --auth proxy: an address whose X-Forwarded-User is believed (repeat).",
)
@click.option("--secure-cookies", is_flag=True, help="Behind TLS: cookies only over HTTPS.")
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    workers: int,
    queue_url: str | None,
    auth_mode: str | None,
    trusted: tuple[str, ...],
    secure_cookies: bool,
) -> None:
    """Serve the viewer for the store (loopback only unless signing in is required)."""
    from viewer import create_app
    from viewer.server import listen, make_server, url_of

    if host not in LOOPBACK and auth_mode is None:
        raise UserError(
            f"refusing to serve on {host} without sign-in: anyone who can reach it could "
            "read every image and start paid steps; add --auth tokens (users: exq user add) "
            "or --auth proxy --trusted-proxy ADDRESS"
        )
    if auth_mode == "proxy" and not trusted:
        raise UserError("--auth proxy needs --trusted-proxy ADDRESS (the proxy's address)")
    store = open_store(ctx, create=True)
    socks = listen(host, port)  # a taken port is one line, before anything starts
    config = {
        "EXQ_STORE": store.location,
        "S3_ENDPOINT": ctx.obj.get("s3_endpoint"),
        "JOB_WORKERS": workers,
        "SERVE_HOST": host,
        "AUTH_MODE": auth_mode,
        "TRUSTED_PROXIES": tuple(trusted),
        "SESSION_COOKIE_SECURE": secure_cookies,
    }
    if queue_url:
        queue.connect(queue_url)  # an unreachable queue is one line, before anything starts
        config["QUEUE_URL"] = queue_url
    app = create_app(config)
    server = make_server(app, socks)
    click.echo(f"serving {store.location} at {url_of(host, port)}")
    server.run()


@click.command()
@click.argument("session")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--branch", "-b", "branches", multiple=True, help="Export only this branch (repeat).")
@click.option(
    "--layout",
    type=click.Choice(["site", "steps"]),
    default="site",
    show_default=True,
    help="steps: also write the per-step folder layout of each branch.",
)
@click.option(
    "--prune",
    is_flag=True,
    help="Remove files an earlier export of DIRECTORY wrote that this one no longer links.",
)
@click.option(
    "--force",
    is_flag=True,
    help="Write into a non-empty directory that holds no export (or another session's).",
)
@click.option(
    "--full-canvases",
    is_flag=True,
    help="Write a full-canvas PNG of every step (by default only of branch heads).",
)
@click.pass_context
def export(
    ctx: click.Context,
    session: str,
    directory: str,
    branches: tuple[str, ...],
    layout: str,
    prune: bool,
    force: bool,
    full_canvases: bool,
) -> None:
    """Write SESSION as a static site into DIRECTORY (works from file://).

    DIRECTORY must be new, empty or an earlier export (it holds .exquisite-export.json,
    the list of files the export wrote); never the store. --prune removes only files
    that list names.
    """
    from viewer.export import count_pages, export_session

    store = open_store(ctx)
    if store.root is None:
        raise UserError("exq export reads a store on disk, not yet one on object storage")
    total = count_pages(store, session)
    with click.progressbar(
        length=total, label="rendering pages", file=sys.stderr, show_pos=True
    ) as bar:
        rep = export_session(
            store.root,
            session,
            Path(directory),
            branches=list(branches) or None,
            layout_steps=layout == "steps",
            prune=prune,
            force=force,
            full_canvases=full_canvases,
            progress=lambda _path: bar.update(1),
        )
    click.echo(
        f"exported {session} to {Path(directory).absolute()}: {rep.pages} pages rendered, "
        f"{rep.skipped} unchanged pages skipped, {rep.files} files; {rep.written} written, "
        f"{rep.unchanged} unchanged" + (f", {rep.removed} removed" if prune else "")
    )
    click.echo(f"open file://{(Path(directory).absolute() / 'index.html')}")


COMMANDS = (serve, export)
