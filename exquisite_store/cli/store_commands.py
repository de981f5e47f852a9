"""Commands on the store as a whole: init, show, canvas, inspect, fsck, unlock, gc."""

from __future__ import annotations

import json

import click

from exquisite_store import imageio, manifests
from exquisite_store.cli.helpers import open_store, parse_duration, store_path
from exquisite_store.errors import AlreadyExists, UserError
from exquisite_store.store import Store
from exquisite_store.store.canvas import write_canvas_png
from exquisite_store.store.fsck import fsck as run_fsck
from exquisite_store.store.gc import gc as run_gc
from exquisite_store.store.locks import unlock as run_unlock


@click.command()
@click.option("--tile-size", type=int, default=256, show_default=True, help="Tile edge in pixels.")
@click.pass_context
def init(ctx: click.Context, tile_size: int) -> None:
    """Create an empty store."""
    path = store_path(ctx)
    try:
        Store.init(path, tile_size=tile_size, endpoint=ctx.obj.get("s3_endpoint"))
    except AlreadyExists:
        click.echo(f"store already exists at {path}")
        return
    click.echo(f"created store at {path} (tile size {tile_size})")


@click.command()
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


@click.command()
@click.argument("step")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option(
    "--level",
    type=click.IntRange(0, 9),
    default=6,
    show_default=True,
    help="zlib level: 1 is about 3x faster than 6 for a somewhat bigger file.",
)
@click.pass_context
def canvas(ctx: click.Context, step: str, output: str, level: int) -> None:
    """Write the full canvas of STEP (id prefix or SESSION:BRANCH) as a PNG."""
    store = open_store(ctx)
    canvas = store.canvas(store.step(store.resolve_step(step)))
    try:  # streamed band by band: a 20,000 x 20,000 canvas never sits in memory whole
        with open(output, "wb") as f:
            write_canvas_png(store.objects, canvas, f, compress_level=level)
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    click.echo(f"wrote {output} ({canvas.width}x{canvas.height})")


@click.command()
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


@click.command()
@click.pass_context
def fsck(ctx: click.Context) -> None:
    """Rehash every object, check references, refs and links; exit 1 on damage."""
    rep = run_fsck(open_store(ctx))
    for line in rep.damaged:
        click.echo(f"damaged object {line}")
    for parent, oid in rep.missing:
        click.echo(f"missing object {oid} (referenced by {parent})")
    for line in rep.bad_refs:
        click.echo(f"bad ref {line}")
    for line in rep.unsafe:
        click.echo(f"unsafe path {line}")
    for line in rep.locks:
        click.echo(f"lock held {line}")
    click.echo(
        f"{rep.objects} objects checked, {len(rep.dangling)} dangling, "
        f"{len(rep.damaged)} damaged, {len(rep.missing)} missing, {len(rep.bad_refs)} bad refs, "
        f"{len(rep.unsafe)} unsafe paths"
    )
    if not rep.ok:
        ctx.exit(1)


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be done.")
@click.pass_context
def unlock(ctx: click.Context, dry_run: bool) -> None:
    """Remove ref locks left by dead writers (live ones and other hosts' are kept)."""
    reports = run_unlock(open_store(ctx), dry_run=dry_run)
    for r in reports:
        host = f"  host {r.host}" if r.host else ""
        click.echo(f"{r.ref}.lock  pid {r.pid}  age {r.age_s}s{host}: {r.action}")
    click.echo(f"{len(reports)} locks")


@click.command()
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
    rep = run_gc(open_store(ctx), grace_s=parse_duration(grace), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for oid in rep.removed:
        click.echo(f"{verb} {oid}")
    click.echo(
        f"{rep.reachable} reachable, {rep.young} unreachable but younger than the grace "
        f"period, {verb} {len(rep.removed)} objects ({rep.bytes_removed} bytes)"
    )


COMMANDS = (init, show, canvas, inspect, fsck, unlock, gc)
