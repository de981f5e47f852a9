"""``exq step``, ``attempts``, ``reproduce`` and ``demo``: the commands that grow canvases."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import msgspec

from exquisite_store import imageio
from exquisite_store.errors import StepFailure
from exquisite_store.ids import short
from exquisite_store.manifests import StepParams
from exquisite_store.pipeline import config
from exquisite_store.pipeline.reproduce import reproduce as run_reproduce
from exquisite_store.pipeline.step import StepOutcome, run_step
from exquisite_store.store import Store

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


class PhaseLine:
    """Prints each phase as it starts, with the time the previous one took."""

    def __init__(self) -> None:
        self.t0 = self.last = time.monotonic()
        self.open = False

    def __call__(self, type_: str, data: dict[str, Any]) -> None:
        """Handle one pipeline event."""
        now = time.monotonic()
        if type_ == "progress":
            sep = f" ({(now - self.last) * 1000:.0f} ms) · " if self.open else "  "
            click.echo(f"{sep}{data['phase']}", nl=False)
            self.open = True
            self.last = now
        elif type_ in ("succeeded", "failed") and self.open:
            click.echo(f" ({(now - self.last) * 1000:.0f} ms), {now - self.t0:.1f} s in all")
            self.open = False


def report_outcome(store: Store, out: StepOutcome) -> None:
    """One line a committed candidate, one a failed one."""
    for name, sid in out.branches.items():
        step = store.step(sid)
        sc = step.result.scores
        click.echo(
            f"committed {short(sid)} on {name}: canvas {step.result.width}x{step.result.height}, "
            f"seam {sc.seam_permille / 1000:.2f} (texture {sc.parent_seam_permille / 1000:.2f})"
        )
    for aid, exc in zip(out.attempt_ids, out.failures, strict=False):
        click.echo(f"attempt {short(aid)} failed: {exc.kind}: {exc.message}")


def print_preview(p: dict[str, Any]) -> None:
    """What ``--dry-run`` shows: the request that would be sent, and what it would cost."""
    from exquisite_store.cli_cost import fmt

    model = f" model {p['model']}" if p["model"] else ""
    click.echo(
        f"dry run: nothing called, nothing written\nbackend {p['backend']}{model}, "
        f"frame {p['frame']} (scale {p['scale']}), context {p['context_px']}px, "
        f"mask paints {p['mask_paint_permille'] / 10:.1f}% of the frame, "
        f"n={p['n']}, seed {p['seed']}"
    )
    budget = p["budget_micro_usd"]
    after = (
        ""
        if budget is None
        else (
            f"; budget {fmt(budget)}, spent {fmt(p['spent_micro_usd'])}"
            + (
                " -> WOULD BE REFUSED"
                if p["spent_micro_usd"] + p["estimate_micro_usd"] > budget
                and p["estimate_micro_usd"]
                else ""
            )
        )
    )
    click.echo(f"estimate {fmt(p['estimate_micro_usd'])}{after}")
    if p["ignores_prompt"]:
        click.echo("(this backend ignores the prompt text)")
    click.echo("prompt:\n" + "\n".join("  " + line for line in p["prompt"].splitlines()))


def step_options(f):
    """The step parameters as click options (defaults come from the session)."""
    opts = [
        click.option("--from", "from_", default=None, help="Grow from this step (id prefix)."),
        click.option("--branch", "-b", default=None, help="Branch to grow (or to create)."),
        click.option("--direction", "-d", type=click.Choice(config.DIRECTIONS), default=None),
        click.option("--px", "extension_px", type=int, default=None, help="New pixels, L."),
        click.option("--overlap", "overlap_px", type=int, default=None, help="Seam zone width."),
        click.option("--context", "context_px", type=int, default=None, help="Context band width."),
        click.option("--seam", type=click.Choice(config.SEAMS), default=None),
        click.option(
            "--immutable",
            "immutable_policy",
            type=click.Choice(config.IMMUTABLE_POLICIES),
            default=None,
        ),
        click.option("--prompt", "-p", default="", help="What should appear."),
        click.option("--backend", type=click.Choice(config.BACKENDS), default=None),
        click.option("--model", default=None),
        click.option("--quality", type=click.Choice(config.QUALITIES), default=None),
        click.option("--seed", type=int, default=None),
        click.option("-n", "n", type=int, default=None, help="Candidates from one call."),
        click.option("--dry-run", is_flag=True, help="Print the request; call and write nothing."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.command()
@click.argument("session")
@step_options
@click.pass_context
def step(
    ctx: click.Context,
    session: str,
    from_: str | None,
    branch: str | None,
    prompt: str,
    dry_run: bool,
    **params: Any,
) -> None:
    """Grow SESSION by one step (one transaction; n candidates)."""
    from exquisite_store.cli import open_store

    config.check_prompt(prompt)  # not UTF-8 in argv arrives as lone surrogates: refused too
    store = open_store(ctx)
    sess = store.session(session)
    merged = config.merge(sess.defaults, params)
    if dry_run:
        out = run_step(
            store, session, parent=from_, branch=branch, prompt=prompt, dry_run=True, **params
        )
        print_preview(out.preview)
        return
    click.echo(
        f"step {session}: {merged.direction} +{merged.extension_px}px with {merged.backend}"
        + (" (it ignores the prompt text)" if merged.backend == "patchmatch" and prompt else "")
    )
    try:
        out = run_step(
            store,
            session,
            parent=from_,
            branch=branch,
            prompt=prompt,
            observer=PhaseLine(),
            **params,
        )
    except StepFailure as exc:
        aid = exc.details.get("attempt_id", "")
        click.echo(f"failed: {exc.kind}: {exc.message}")
        click.echo(f"attempt {aid} recorded; no branch moved")
        ctx.exit(1)
    report_outcome(store, out)


@click.command()
@click.argument("session")
@click.pass_context
def attempts(ctx: click.Context, session: str) -> None:
    """Failed steps of SESSION: id, kind and reason (newest last)."""
    from exquisite_store.cli import _when, open_store

    store = open_store(ctx)
    store.session(session)
    lines = store.attempts(session)
    for line in lines:
        click.echo(f"{short(line.id)}  {_when(line.time_ms)}  {line.kind}: {line.message}")
    click.echo(f"{len(lines)} attempts")


@click.command()
@click.argument("step_ref")
@click.option("--replay", is_flag=True, help="Answer from the recorded response (no model call).")
@click.pass_context
def reproduce(ctx: click.Context, step_ref: str, replay: bool) -> None:
    """Re-run a step's recipe and report whether the canvas id matches."""
    from exquisite_store.cli import open_store

    store = open_store(ctx)
    sid = store.resolve_step(step_ref)
    rep = run_reproduce(store, sid, replay=replay)
    if rep.matches:
        click.echo(f"match: {short(sid)} reproduces canvas {short(rep.expected)}")
    else:
        click.echo(
            f"MISMATCH: {short(sid)} made {short(rep.expected)}, re-run made {short(rep.got)}"
        )
        ctx.exit(1)


@click.command()
@click.option("--fixture", default="photo.png", show_default=True, help="Start image in fixtures/.")
@click.pass_context
def demo(ctx: click.Context, fixture: str) -> None:
    """Grow a demo session offline (patchmatch) in several directions and branch once."""
    from exquisite_store.cli import describe_branches, open_store

    start = imageio.read_image_file(str(FIXTURES / fixture))  # before the store is created
    store = open_store(ctx, create=True)
    name = f"demo-{len(store.refs.sessions()) + 1}"
    _, root = store.create_session(
        name,
        start,
        title=f"demo from {fixture}",
        source_name=fixture,
    )
    click.echo(f"session {name}: imported fixtures/{fixture}")
    plan = [("right", 192, 1), ("down", 128, 2), ("left", 128, 3), ("up", 96, 4)]
    first = None
    for direction, px, seed in plan:
        click.echo(f"{direction} +{px}px")
        out = run_step(
            store,
            name,
            direction=direction,
            extension_px=px,
            overlap_px=16,
            seed=seed,
            backend="patchmatch",
            observer=PhaseLine(),
        )
        report_outcome(store, out)
        first = first or out.step_ids[0]
    click.echo("branch 'alt' from the first step with 3 candidates")
    out = run_step(
        store,
        name,
        parent=first,
        branch="alt",
        direction="right",
        extension_px=128,
        overlap_px=16,
        seed=10,
        n=3,
        backend="patchmatch",
        observer=PhaseLine(),
    )
    report_outcome(store, out)
    click.echo("")
    describe_branches(store, name, store.root / "cache" / name)
    click.echo(
        f"\nstore: {store.root}   (the root step was {short(root)})\n"
        f"history:  exq --store {store.root} log {name}\n"
        f"browse:   exq --store {store.root} serve   (or: make serve), then open "
        f"http://127.0.0.1:5000/s/{name}\n"
        f"share:    exq --store {store.root} export {name} {name}-site"
    )


@click.command()
@click.argument("session")
@click.argument("settings", nargs=-1)
@click.pass_context
def defaults(ctx: click.Context, session: str, settings: tuple[str, ...]) -> None:
    """Show SESSION's step defaults, or change them: `exq defaults S px=512 seam=feather`."""
    from exquisite_store.cli import open_store
    from exquisite_store.errors import ConfigError

    store = open_store(ctx)
    sess = store.session(session)
    aliases = {
        "px": "extension_px",
        "overlap": "overlap_px",
        "context": "context_px",
        "immutable": "immutable_policy",
    }
    changes: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"expected KEY=VALUE, not {item!r}", field=item)
        key = aliases.get(key, key)
        field_type = StepParams.__annotations__.get(key, "")
        if value in ("", "none") and "None" in str(field_type):
            changes[key] = None
            continue
        if "int" in str(field_type):
            try:
                changes[key] = int(value)
            except ValueError:
                raise ConfigError(
                    f"{key} must be a whole number, not {value!r}", field=key
                ) from None
        else:
            changes[key] = value
    if changes:
        merged = config.merge(sess.defaults, {k: v for k, v in changes.items() if v is not None})
        for k, v in changes.items():
            if v is None:
                merged = msgspec.structs.replace(merged, **{k: None})
        sess = store.update_session(session, "defaults: " + " ".join(settings), defaults=merged)
    for key, value in msgspec.structs.asdict(sess.defaults).items():
        click.echo(f"{key:<18} {value}")
