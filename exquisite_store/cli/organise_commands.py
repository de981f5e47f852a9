"""Commands that organise work: star, tag, note, find, du, keep-starred, bundle, graft."""

from __future__ import annotations

from pathlib import Path

import click

from exquisite_store.cli.helpers import open_store, when
from exquisite_store.core import annotations as notes
from exquisite_store.core import bundles, cleanup, search, usage
from exquisite_store.ids import short
from exquisite_store.money import format_usd
from exquisite_store.store import Store

SESSION_OPTION = click.option(
    "--session",
    "-s",
    default=None,
    help="The session (default: the one the step was made in, or SESSION of SESSION:BRANCH).",
)


def _target(store: Store, step: str, session: str | None) -> tuple[str, str]:
    """``(session, step id)`` of a step named by id prefix or SESSION:BRANCH."""
    if session is None and ":" in step:
        session = step.split(":", 1)[0]
    sid = store.resolve_step(step, session)
    return session or store.step(sid).session, sid


def _show(session: str, sid: str, n: notes.StepNote) -> None:
    star = "*" if n.starred else " "
    tags = " ".join(f"#{t}" for t in n.tags)
    note = f"  {n.note[:80]!r}" if n.note else ""
    click.echo(f"{star} {short(sid)}  {session}  {tags}{note}".rstrip())


@click.command()
@click.argument("step")
@click.option("--unstar", is_flag=True, help="Remove the star.")
@SESSION_OPTION
@click.pass_context
def star(ctx: click.Context, step: str, unstar: bool, session: str | None) -> None:
    """Star STEP (or --unstar it)."""
    store = open_store(ctx)
    session, sid = _target(store, step, session)
    done = notes.annotate(store, session, sid, star=not unstar)
    _show(session, done.step, done.note)


@click.command()
@click.argument("step")
@click.argument("tags", nargs=-1, required=True)
@click.option("--remove", is_flag=True, help="Remove these tags instead of adding them.")
@SESSION_OPTION
@click.pass_context
def tag(
    ctx: click.Context, step: str, tags: tuple[str, ...], remove: bool, session: str | None
) -> None:
    """Add TAGS to STEP (or --remove them)."""
    store = open_store(ctx)
    session, sid = _target(store, step, session)
    kw = {"remove_tags": tags} if remove else {"add_tags": tags}
    done = notes.annotate(store, session, sid, **kw)
    _show(session, done.step, done.note)


@click.command()
@click.argument("step")
@click.argument("text", required=False)
@click.option("--clear", is_flag=True, help="Remove the note.")
@SESSION_OPTION
@click.pass_context
def note(ctx: click.Context, step: str, text: str | None, clear: bool, session: str | None) -> None:
    """Set STEP's note to TEXT (no TEXT: print it; --clear: remove it)."""
    store = open_store(ctx)
    session, sid = _target(store, step, session)
    if text is None and not clear:
        click.echo(notes.note_of(store, session, sid).note)
        return
    done = notes.annotate(store, session, sid, note="" if clear else text)
    _show(session, done.step, done.note)


@click.command("notes")
@click.argument("session")
@click.option("--log", "show_log", is_flag=True, help="Every change, newest first.")
@click.pass_context
def notes_command(ctx: click.Context, session: str, show_log: bool) -> None:
    """The annotated steps of SESSION (or --log: every change of its annotations)."""
    store = open_store(ctx)
    if show_log:
        for c in notes.annotation_log(store, session):
            click.echo(f"{when(c.time_ms)}  {c.message}")
        return
    for sid, n in sorted(notes.session_notes(store, session).items()):
        _show(session, sid, n)


@click.command()
@click.argument("session")
@click.option("--prompt", default=None, help="The user prompt contains this (any case).")
@click.option("--tag", default=None, help="Tagged with this.")
@click.option("--starred", is_flag=True, help="Starred only.")
@click.option("--backend", default=None, help="Made by this backend.")
@click.option("--seam-above", default=None, metavar="X", help="Seam score above X (1.0: unseen).")
@click.option("--cost-above", default=None, metavar="USD", help="Cost more than USD.")
@click.option("--author", default=None, help="Made by this user (unknown: before names).")
@click.pass_context
def find(ctx: click.Context, session: str, **query: str | bool | None) -> None:
    """The steps of SESSION that match every condition given, oldest first."""
    store = open_store(ctx)
    q = search.parse_query(**query)  # type: ignore[arg-type]
    found = search.find(store, session, q)
    for f in found:
        x = f.facts
        what = f"{x.backend}  seam {x.seam_permille / 1000:.2f}" if x.backend else "root"
        star_mark = "*" if f.note.starred else " "
        tags = " ".join(f"#{t}" for t in f.note.tags)
        prompt = f"  {x.prompt[:60]!r}" if x.prompt else ""
        line = f"{star_mark} {short(f.id)}  {what}  {format_usd(x.cost_micro_usd)}{prompt}  {tags}"
        click.echo(line.rstrip())
    click.echo(f"{len(found)} steps match")


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@click.command()
@click.argument("session", required=False)
@click.pass_context
def du(ctx: click.Context, session: str | None) -> None:
    """Bytes per session and branch: unique to it (what dropping it frees) and shared."""
    rows = usage.disk_usage(open_store(ctx), session)
    for row in rows:
        u = row.usage
        click.echo(
            f"{row.session}: {_size(u.bytes)} in {u.objects} objects, "
            f"{_size(u.unique_bytes)} unique, {_size(u.shared_bytes)} shared with other sessions"
        )
        for b, bu in sorted(row.branches.items()):
            click.echo(
                f"  {b:<20} {_size(bu.bytes):>9}  unique {_size(bu.unique_bytes):>9}  "
                f"shared {_size(bu.shared_bytes):>9}"
            )
    if not rows:
        click.echo("no sessions")


@click.command("keep-starred")
@click.argument("session")
@click.option("--dry-run", is_flag=True, help="Only say which branches would be dropped.")
@click.pass_context
def keep_starred(ctx: click.Context, session: str, dry_run: bool) -> None:
    """Drop every branch of SESSION with nothing of its own starred (reflogs keep the steps)."""
    store = open_store(ctx)
    for v in cleanup.starred_verdicts(store, session):
        verb = "keep" if v.keep else ("would drop" if dry_run else "drop")
        click.echo(f"{verb:<10} {v.branch:<20} {short(v.head)}  {v.why}")
    dropped = cleanup.keep_starred(store, session, dry_run=dry_run)
    if not dry_run and dropped:
        click.echo(f"dropped {len(dropped)} branches; `exq undo {session} BRANCH` brings one back")


@click.group()
def bundle() -> None:
    """Move a session between stores in one file (like git bundle)."""


@bundle.command("create")
@click.argument("session")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--branch", "-b", "branches", multiple=True, help="Only this branch (repeatable).")
@click.pass_context
def bundle_create(ctx: click.Context, session: str, file: Path, branches: tuple[str, ...]) -> None:
    """Write SESSION's branches, their reflogs and attempts into FILE."""
    made = bundles.create_bundle(open_store(ctx), session, file, branches)
    t = made.transfer
    click.echo(
        f"bundled {session} ({', '.join(sorted(made.branches))}): {t.copied} objects, "
        f"{t.bytes:,} bytes, {made.attempts} attempts -> {made.path}"
    )


@bundle.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--as", "as_name", default=None, help="Import as a session of this name.")
@click.pass_context
def bundle_import(ctx: click.Context, file: Path, as_name: str | None) -> None:
    """Store what FILE holds that this store lacks (each object checked) and add its refs."""
    report = bundles.import_bundle(open_store(ctx, create=True), file, as_name)
    _print_moves(report.moves)
    t = report.transfer
    click.echo(f"imported: {t.copied} objects ({t.bytes:,} bytes) new, {t.present} already here")
    if report.refused:
        raise click.exceptions.Exit(1)


@click.command()
@click.argument("session")
@click.option("--from", "source", required=True, metavar="OTHER:BRANCH", help="What to graft.")
@click.option("--as", "as_branch", default=None, help="The branch's name here (default: BRANCH).")
@click.pass_context
def graft(ctx: click.Context, session: str, source: str, as_branch: str | None) -> None:
    """Bring branch OTHER:BRANCH of another copy of SESSION into it (fast-forward only)."""
    move = bundles.graft(open_store(ctx), session, source, as_branch)
    _print_moves([move])
    if move.status == "refused":
        raise click.exceptions.Exit(1)


def _print_moves(moves: list) -> None:
    for m in moves:
        if m.status == "refused":
            click.echo(f"error: refused: {m.reason}", err=True)
            continue
        was = short(m.old) if m.old else "(none)"
        click.echo(f"{m.session}:{m.branch}  {was} -> {short(m.new)}  {m.status}")


COMMANDS = (star, tag, note, notes_command, find, du, keep_starred, bundle, graft)
