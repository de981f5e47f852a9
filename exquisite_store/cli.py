"""The ``exq`` command line (click); the only module that exits the process."""

from __future__ import annotations

import json
import math
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from exquisite_store import imageio, manifests
from exquisite_store.errors import AlreadyExists, ExqError, StoreError, UserError
from exquisite_store.ids import short
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck as run_fsck
from exquisite_store.store.gc import gc as run_gc
from exquisite_store.store.refs import check_name

DEFAULT_STORE = "exquisite-store"


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


def _store_path(ctx: click.Context) -> Path:
    return Path(ctx.obj["store"]).absolute()


def open_store(ctx: click.Context, *, create: bool = False) -> Store:
    """Open the store named by ``--store``/``EXQ_STORE``; create it if asked (and say so)."""
    path = _store_path(ctx)
    if create and not (path / "store.toml").exists():
        store = Store.init(path)
        click.echo(f"created store at {path}")
        return store
    return Store.open(path)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _decorations(store: Store, session: str) -> dict[str, list[str]]:
    """Branch labels per step id, like git's ``(main, HEAD)``."""
    current = store.refs.current_branch(session)
    labels: dict[str, list[str]] = {}
    for branch, sid in sorted(store.refs.branches(session).items()):
        labels.setdefault(sid, []).append(f"{branch}, HEAD" if branch == current else branch)
    return labels


def describe_step(store: Store, sid: str, step: manifests.Step) -> str:
    """A few lines about a step, for ``exq log``."""
    r = step.result
    if step.recipe is None:
        what = f"root: imported {step.source_name or 'start image'}"
    else:
        rc = step.recipe
        what = (
            f"{rc.direction} +{rc.extension_px}px  overlap {rc.overlap_px}  seam {rc.seam}  "
            f"{rc.backend}{'/' + rc.model if rc.model else ''}  seed {rc.seed}"
        )
    lines = [f"    {what}", f"    canvas {r.width}x{r.height}  {short(r.canvas_id)}"]
    if step.recipe is not None:
        prompt = store.objects.get_text(step.recipe.prompt_id)
        if prompt:
            lines.append(f"    prompt {prompt[:100]!r}")
        if r.scores.seam_permille:
            lines.append(
                f"    seam score {r.scores.seam_permille / 1000:.2f} "
                f"(parent's own texture {r.scores.parent_seam_permille / 1000:.2f})"
            )
    if step.response is not None and step.response.cost_micro_usd:
        lines.append(f"    cost ${step.response.cost_micro_usd / 1e6:.4f}")
    return "\n".join(lines)


@click.group(cls=ExqGroup)
@click.option(
    "--store",
    envvar="EXQ_STORE",
    default=DEFAULT_STORE,
    show_default=True,
    help="Store directory (or set EXQ_STORE).",
)
@click.pass_context
def cli(ctx: click.Context, store: str) -> None:
    """exquisite-store: grow an image step by step and keep every step."""
    ctx.ensure_object(dict)
    ctx.obj["store"] = store


@cli.command()
@click.option("--tile-size", type=int, default=256, show_default=True, help="Tile edge in pixels.")
@click.pass_context
def init(ctx: click.Context, tile_size: int) -> None:
    """Create an empty store."""
    path = _store_path(ctx)
    try:
        Store.init(path, tile_size=tile_size)
    except AlreadyExists:
        click.echo(f"store already exists at {path}")
        return
    click.echo(f"created store at {path} (tile size {tile_size})")


@cli.command()
@click.argument("session")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--title", default="", help="A title shown in the viewer.")
@click.option("--budget", "budget_usd", default=None, help="Spending limit in dollars.")
@click.pass_context
def new(ctx: click.Context, session: str, image: str, title: str, budget_usd: str | None) -> None:
    """Start SESSION from IMAGE (the root step on branch main)."""
    from exquisite_store.cli_cost import usd_to_micro

    budget = usd_to_micro(budget_usd) if budget_usd is not None else None
    check_name(session, "session")  # before the store is created: a refusal writes nothing
    arr = imageio.read_image_file(image)
    store = open_store(ctx, create=True)
    _, root = store.create_session(
        session, arr, title=title, source_name=Path(image).name, budget_micro_usd=budget
    )
    click.echo(f"session {session}: root step {root} ({arr.shape[1]}x{arr.shape[0]}) on main")


@cli.command()
@click.argument("session")
@click.option("--branch", "-b", default=None, help="Branch to show (default: HEAD's).")
@click.option("--limit", "-n", type=int, default=0, help="Show at most this many steps.")
@click.pass_context
def log(ctx: click.Context, session: str, branch: str | None, limit: int) -> None:
    """Steps of a branch, newest first (like git log)."""
    store = open_store(ctx)
    branch = branch or store.refs.current_branch(session)
    labels = _decorations(store, session)
    for i, (sid, step) in enumerate(store.history(store.refs.head(session, branch))):
        if limit and i >= limit:
            break
        deco = f"  ({', '.join(labels[sid])})" if sid in labels else ""
        click.echo(f"step {sid}{deco}")
        click.echo(f"    {_when(step.created_ms)}")
        click.echo(describe_step(store, sid, step))
        click.echo("")


@cli.command()
@click.argument("session")
@click.pass_context
def branches(ctx: click.Context, session: str) -> None:
    """Branches of a session and the step each points at."""
    store = open_store(ctx)
    current = store.refs.current_branch(session)
    for name, sid in sorted(store.refs.branches(session).items()):
        step = store.step(sid)
        mark = "*" if name == current else " "
        click.echo(f"{mark} {name:<24} {short(sid)}  {step.result.width}x{step.result.height}")


@cli.command()
@click.argument("session")
@click.argument("name")
@click.option("--from", "from_", default=None, help="Step id (prefix) or branch to start at.")
@click.option("--delete", "-d", is_flag=True, help="Remove the branch (its steps stay kept).")
@click.pass_context
def branch(ctx: click.Context, session: str, name: str, from_: str | None, delete: bool) -> None:
    """Create branch NAME in SESSION at a step, or remove it with --delete."""
    store = open_store(ctx)
    store.session(session)
    if delete:
        if from_ is not None:
            raise UserError("--delete takes no --from")
        sid = store.refs.head(session, name)
        store.refs.delete(session, name, sid, f"branch: deleted at {short(sid)}")
        click.echo(f"deleted branch {name} (was {short(sid)}; its steps stay in the reflog)")
        return
    if from_ is None:
        raise UserError("say where the branch starts: --from STEP")
    sid = store.resolve_step(from_, session)
    if store.step(sid).session != session:
        raise UserError(f"step {short(sid)} belongs to another session")
    with store.writing():
        try:
            store.refs.update(session, name, None, sid, f"branch: created from {short(sid)}")
        except ExqError as exc:
            if exc.kind == "BranchMoved":
                raise AlreadyExists(f"branch {name!r} already exists in {session}") from None
            raise
    click.echo(f"branch {name} -> {sid}")


@cli.command()
@click.argument("object_id")
@click.pass_context
def show(ctx: click.Context, object_id: str) -> None:
    """Pretty-print any object: a manifest, a text, or an image's size."""
    store = open_store(ctx)
    oid = store.objects.resolve(object_id)
    kind, data = store.objects.get_bytes(oid)
    if kind == "json":
        obj = store.objects.get_manifest(oid)
        click.echo(json.dumps(manifests.to_builtins(obj), indent=2, sort_keys=True))
    elif kind == "text":
        click.echo(data.decode("utf-8"))
    else:
        arr = store.objects.get_image(oid)
        click.echo(f"image {oid}: {arr.shape[1]}x{arr.shape[0]} {imageio.mode_of(arr)}")


@cli.command()
@click.argument("step")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.pass_context
def canvas(ctx: click.Context, step: str, output: str) -> None:
    """Write the full canvas of STEP (id prefix or SESSION:BRANCH) as a PNG."""
    store = open_store(ctx)
    sid = store.resolve_step(step)
    arr = store.canvas_pixels(store.step(sid))
    try:
        imageio.write_png(output, arr)
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output} ({arr.shape[1]}x{arr.shape[0]})")


@cli.command()
@click.pass_context
def fsck(ctx: click.Context) -> None:
    """Rehash every object, check references and refs; exit 1 on damage."""
    store = open_store(ctx)
    rep = run_fsck(store)
    for line in rep.damaged:
        click.echo(f"damaged object {line}")
    for parent, oid in rep.missing:
        click.echo(f"missing object {oid} (referenced by {parent})")
    for line in rep.bad_refs:
        click.echo(f"bad ref {line}")
    for line in rep.locks:
        click.echo(f"lock held {line}")
    click.echo(
        f"{rep.objects} objects checked, {len(rep.dangling)} dangling, "
        f"{len(rep.damaged)} damaged, {len(rep.missing)} missing, {len(rep.bad_refs)} bad refs"
    )
    if not rep.ok:
        ctx.exit(1)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be done.")
@click.pass_context
def unlock(ctx: click.Context, dry_run: bool) -> None:
    """Remove ref locks left by dead writers (live ones are kept)."""
    from exquisite_store.store.locks import unlock as run_unlock

    reports = run_unlock(open_store(ctx), dry_run=dry_run)
    for r in reports:
        click.echo(f"{r.ref}.lock  pid {r.pid}  age {r.age_s}s: {r.action}")
    click.echo(f"{len(reports)} locks")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int, help="Steps run at once.")
@click.pass_context
def serve(ctx: click.Context, host: str, port: int, workers: int) -> None:
    """Serve the viewer for the store (loopback only unless told otherwise)."""
    from viewer import create_app

    store = open_store(ctx, create=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo(
            f"WARNING: binding to {host} exposes the store to the network: anyone who can "
            "reach this address can read every image and start paid steps.",
            err=True,
        )
    app = create_app({"EXQ_STORE": str(store.root), "JOB_WORKERS": workers})
    click.echo(f"serving {store.root} at http://{host}:{port}/")
    app.run(host=host, port=port, threaded=True, use_reloader=False)


@cli.command()
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
@click.option("--prune", is_flag=True, help="Remove files of earlier exports no longer linked.")
@click.pass_context
def export(
    ctx: click.Context,
    session: str,
    directory: str,
    branches: tuple[str, ...],
    layout: str,
    prune: bool,
) -> None:
    """Write SESSION as a static site into DIRECTORY (works from file://)."""
    from viewer.export import export_session
    from viewer.model import session_steps

    store = open_store(ctx)
    store.session(session)
    try:
        Path(directory).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot write the export to {directory}: {exc.strerror or exc}") from None
    total = len(session_steps(store, session)) + len(store.attempts(session)) + 2
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
            progress=lambda _path: bar.update(1),
        )
    click.echo(
        f"exported {session} to {Path(directory).absolute()}: {rep.pages} pages, "
        f"{rep.files} files; {rep.written} written, {rep.unchanged} unchanged"
        + (f", {rep.removed} removed" if prune else "")
    )
    click.echo(f"open file://{(Path(directory).absolute() / 'index.html')}")


@cli.command()
@click.argument("png", type=click.Path(dir_okay=False))
def inspect(png: str) -> None:
    """Read the recipe an exported canvas PNG carries (its iTXt chunk)."""
    text = imageio.read_png_text(png)
    raw = text.get(imageio.ITXT_KEY)
    if raw is None:
        raise UserError(f"{png} carries no {imageio.ITXT_KEY} record")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise UserError(f"{png} has a damaged {imageio.ITXT_KEY} record") from None
    click.echo(json.dumps(meta, indent=2, sort_keys=True))


def _parse_grace(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 86400)
    try:
        seconds = float(number) * unit
    except ValueError:
        seconds = math.nan
    if math.isnan(seconds) or seconds < 0:  # nan would make every object "old enough"
        raise click.BadParameter(f"{text!r}: a number of days, or a number with s/m/h/d")
    return seconds


@cli.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option(
    "--grace",
    default="14",
    show_default=True,
    help="Keep unreachable objects younger than this (days, or 30s/5m/2h/3d).",
)
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, grace: str) -> None:
    """Delete objects unreachable from refs, reflogs and attempt logs."""
    store = open_store(ctx)
    rep = run_gc(store, grace_s=_parse_grace(grace), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for oid in rep.removed:
        click.echo(f"{verb} {oid}")
    click.echo(
        f"{rep.reachable} reachable, {rep.young} unreachable but younger than the grace "
        f"period, {verb} {len(rep.removed)} objects ({rep.bytes_removed} bytes)"
    )


def describe_branches(store: Store, session: str, out_dir: Path) -> None:
    """Write each branch head's canvas as a PNG into ``out_dir`` and list them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, sid in sorted(store.refs.branches(session).items()):
        step = store.step(sid)
        dest = out_dir / f"{name}.png"
        imageio.write_png(str(dest), store.canvas_pixels(step))
        click.echo(f"{name:<10} {short(sid)}  {step.result.width}x{step.result.height}  {dest}")


def _register() -> None:
    from exquisite_store.cli_cost import budget, cost
    from exquisite_store.cli_steps import attempts, defaults, demo, reproduce, step

    for command in (step, attempts, reproduce, demo, cost, budget, defaults):
        cli.add_command(command)


_register()


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(cli.main(prog_name="exq", standalone_mode=True))


if __name__ == "__main__":
    main()
