"""Commands on a session: new, log, branches, branch, head, defaults, budget, cost, drift, ..."""

from __future__ import annotations

import click
import msgspec

from exquisite_store import core
from exquisite_store.authorship import shown
from exquisite_store.cli.helpers import branch_labels, describe_step, open_store, when
from exquisite_store.errors import UserError
from exquisite_store.ids import short
from exquisite_store.money import format_usd
from exquisite_store.pipeline.params import parse_settings


@click.command()
@click.argument("session")
@click.argument("image", type=click.Path(dir_okay=False))
@click.option("--title", default="", help="A title shown in the viewer.")
@click.option("--budget", "budget_usd", default=None, help="Spending limit in dollars.")
@click.option(
    "--frame", default=None, metavar="N", help="Of an animated image, start from frame N (0-based)."
)
@click.pass_context
def new(
    ctx: click.Context,
    session: str,
    image: str,
    title: str,
    budget_usd: str | None,
    frame: str | None,
) -> None:
    """Start SESSION from IMAGE (the root step on branch main)."""
    # everything is checked before the store is created: a refusal writes nothing
    picture = core.image_from_file(image, frame=core.parse_frame(frame))
    start = core.new_session(session, picture, title=title, budget=budget_usd)
    store = open_store(ctx, create=True)
    _, root = core.create_session(store, start)
    h, w = start.image.pixels.shape[:2]
    click.echo(f"session {session}: root step {root} ({w}x{h}) on main")
    for note in start.image.notes:
        click.echo(f"  on import: {note}")


@click.command()
@click.argument("session")
@click.option("--branch", "-b", default=None, help="Branch to show (default: HEAD's).")
@click.option("--limit", "-n", type=int, default=0, help="Show at most this many steps.")
@click.pass_context
def log(ctx: click.Context, session: str, branch: str | None, limit: int) -> None:
    """Steps of a branch, newest first (like git log)."""
    store = open_store(ctx)
    branch = branch or store.refs.current_branch(session)
    labels = branch_labels(store, session)
    for i, (sid, step) in enumerate(store.history(store.refs.head(session, branch))):
        if limit and i >= limit:
            break
        deco = f"  ({', '.join(labels[sid])})" if sid in labels else ""
        click.echo(f"step {sid}{deco}")
        click.echo(f"    {when(step.created_ms)}")
        click.echo(describe_step(store, step))
        click.echo("")


@click.command()
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


@click.command()
@click.argument("session")
@click.argument("name")
@click.option("--from", "from_", default=None, help="Step id (prefix) or branch to start at.")
@click.option("--delete", "-d", is_flag=True, help="Remove the branch (its steps stay kept).")
@click.option("--rename", "rename_to", default=None, help="Give the branch this new name.")
@click.pass_context
def branch(
    ctx: click.Context,
    session: str,
    name: str,
    from_: str | None,
    delete: bool,
    rename_to: str | None,
) -> None:
    """Create branch NAME in SESSION at a step, remove it, or rename it."""
    store = open_store(ctx)
    if (delete or rename_to is not None) and from_ is not None:
        raise UserError(f"--{'delete' if delete else 'rename'} takes no --from")
    if delete and rename_to is not None:
        raise UserError("--delete and --rename exclude each other")
    if not delete and rename_to is None and from_ is None:
        raise UserError("say where the branch starts: --from STEP")
    if delete:
        move = core.drop_branch(store, session, name)
        click.echo(
            f"deleted branch {name} (was {short(move.old or '')}; its steps stay in the reflog)"
        )
    elif rename_to is not None:
        move = core.rename_branch(store, session, name, rename_to)
        click.echo(f"renamed branch {name} to {rename_to} ({short(move.new)})")
    else:
        move = core.create_branch(store, session, name, str(from_))
        click.echo(f"branch {name} -> {move.new}")


@click.command()
@click.argument("session")
@click.argument("step")
@click.option("--branch", "-b", default=None, help="The branch to move (default: HEAD's).")
@click.pass_context
def head(ctx: click.Context, session: str, step: str, branch: str | None) -> None:
    """Move a branch of SESSION to STEP and make it HEAD's (the old value stays in the reflog)."""
    move = core.set_head(open_store(ctx), session, step, branch)
    was = f"was {short(move.old)}" if move.old else "new branch"
    click.echo(f"{move.branch} -> {short(move.new)} ({was}); HEAD is {move.branch}")


@click.command()
@click.argument("session")
@click.argument("settings", nargs=-1)
@click.pass_context
def defaults(ctx: click.Context, session: str, settings: tuple[str, ...]) -> None:
    """Show SESSION's step defaults, or change them: `exq defaults S px=512 seam=feather`."""
    sess = core.set_defaults(open_store(ctx), session, parse_settings(settings))
    for key, value in msgspec.structs.asdict(sess.defaults).items():
        click.echo(f"{key:<18} {'' if value is msgspec.UNSET else value}")


@click.command()
@click.argument("session")
@click.argument("usd")
@click.pass_context
def budget(ctx: click.Context, session: str, usd: str) -> None:
    """Set SESSION's budget in dollars (`none` removes it)."""
    store = open_store(ctx)
    sess = core.set_budget(store, session, usd)
    spent = core.spending(store, session).spent_micro_usd
    click.echo(
        f"budget of {session}: {format_usd(sess.budget_micro_usd)} (spent {format_usd(spent)})"
    )


@click.command()
@click.argument("session")
@click.pass_context
def cost(ctx: click.Context, session: str) -> None:
    """Spending of SESSION: per branch, cost to reach each leaf, billed attempts."""
    s = core.spending(open_store(ctx), session)
    for b in s.branches:
        click.echo(
            f"{b.branch:<16} {short(b.head)}  {b.steps:>3} steps  "
            f"cost to reach {format_usd(b.to_reach_micro_usd):>10}  "
            f"of it only on this branch {format_usd(b.only_here_micro_usd):>10}"
        )
    for a in s.attempts:
        click.echo(f"attempt {short(a.id)}  {a.kind:<22} billed {format_usd(a.cost_micro_usd)}")
    click.echo(
        f"spent {format_usd(s.spent_micro_usd)} in all ({len(s.attempts)} billed attempts); "
        f"budget {format_usd(s.budget_micro_usd)}"
    )


@click.command()
@click.argument("session")
@click.option("--branch", "-b", default=None, help="Show this branch step by step.")
@click.pass_context
def drift(ctx: click.Context, session: str, branch: str | None) -> None:
    """Colour drift of SESSION's branches against the root, and the seam casts added up."""
    store = open_store(ctx)
    reports = (
        [core.branch_drift(store, session, branch)]
        if branch
        else core.session_drift(store, session)
    )
    for r in reports:
        root = ", ".join(f"{v:.1f}" for v in r.root_mean)
        click.echo(
            f"{r.branch:<16} {short(r.head)}  {len(r.steps):>3} steps measured  "
            f"last band vs root {r.last_vs_root:5.1f} levels  "
            f"seam casts added up {r.accumulated_cast:5.1f} levels  (root mean {root})"
            + (f"  {r.unmeasured} steps before seam checks" if r.unmeasured else "")
        )
        if not branch:
            continue
        for s in r.steps:
            vs = ", ".join(f"{v:+.1f}" for v in s.band_vs_root)
            click.echo(
                f"  {short(s.step)}  {s.direction:<5}  band vs root ({vs})  cast {s.cast:.1f}  "
                f"added up {s.accumulated_cast:.1f}  "
                f"shift ({s.shift[0]:+.2f}, {s.shift[1]:+.2f}) px  detail kept {s.detail:.0%}"
            )


@click.command()
@click.argument("session")
@click.pass_context
def attempts(ctx: click.Context, session: str) -> None:
    """Failed steps of SESSION: id, kind and reason (newest last)."""
    store = open_store(ctx)
    store.session(session)
    lines = store.attempts(session)
    for line in lines:
        click.echo(f"{short(line.id)}  {when(line.time_ms)}  {line.kind}: {line.message}")
    click.echo(f"{len(lines)} attempts")


@click.command()
@click.argument("session")
@click.pass_context
def staged(ctx: click.Context, session: str) -> None:
    """Candidates of SESSION waiting in the staging area, by job."""
    groups = core.staged(open_store(ctx), session)
    for g in groups:
        click.echo(
            f"job {g.job}: {len(g.candidates)} candidates for {g.branch} (from {short(g.parent)})"
        )
        for c in g.candidates:
            click.echo(f"  {c.candidate}  {short(c.step)}")
    click.echo(f"{sum(len(g.candidates) for g in groups)} staged")


@click.command()
@click.argument("session")
@click.argument("step")
@click.pass_context
def accept(ctx: click.Context, session: str, step: str) -> None:
    """Move a staged candidate's branch to STEP and clear the others of its job."""
    d = core.accept(open_store(ctx), session, step)
    click.echo(f"{d.branch} -> {short(d.step)}; cleared {len(d.cleared)} from the staging area")


@click.command()
@click.argument("session")
@click.argument("step")
@click.pass_context
def discard(ctx: click.Context, session: str, step: str) -> None:
    """Drop a staged candidate (its step stays in the reflog: `exq undo` brings it back)."""
    d = core.discard(open_store(ctx), session, step)
    click.echo(f"discarded {short(d.step)} ({d.cleared[0]})")


@click.command()
@click.argument("session")
@click.argument("step")
@click.option("--as", "name", default=None, help="The new branch's name (default B~k).")
@click.pass_context
def keep(ctx: click.Context, session: str, step: str, name: str | None) -> None:
    """Make a staged candidate a branch of its own."""
    d = core.keep(open_store(ctx), session, step, name)
    click.echo(f"kept {short(d.step)} as branch {d.branch}")


def _ref(store, session: str, branch: str | None, ref: str | None) -> str:
    if ref:
        return ref
    return f"heads/{branch or store.refs.current_branch(session)}"


@click.command()
@click.argument("session")
@click.argument("branch", required=False)
@click.option("--ref", default=None, help="Another ref of the session: staging/BRANCH/JOB/K.")
@click.pass_context
def history(ctx: click.Context, session: str, branch: str | None, ref: str | None) -> None:
    """Every move of a branch (HEAD's by default), newest first."""
    store = open_store(ctx)
    for m in core.history(store, session, _ref(store, session, branch, ref)):
        old, new = short(m.old) if m.old else "(none)", short(m.new) if m.new else "(none)"
        click.echo(f"{when(m.time_ms)}  {old} -> {new}  {m.message}  (by {shown(m.author)})")


@click.command()
@click.argument("session")
@click.argument("branch", required=False)
@click.option("--ref", default=None, help="Another ref of the session: staging/BRANCH/JOB/K.")
@click.pass_context
def undo(ctx: click.Context, session: str, branch: str | None, ref: str | None) -> None:
    """Move a branch (HEAD's by default) back to where its last move took it from."""
    store = open_store(ctx)
    u = core.undo(store, session, _ref(store, session, branch, ref))
    was, now = short(u.was) if u.was else "(none)", short(u.now) if u.now else "(none)"
    click.echo(f"{u.ref}: {was} -> {now}")


COMMANDS = (
    new,
    log,
    branches,
    branch,
    head,
    defaults,
    budget,
    cost,
    drift,
    attempts,
    staged,
    accept,
    discard,
    keep,
    history,
    undo,
)
