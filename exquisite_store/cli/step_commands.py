"""Commands that grow canvases: step, reproduce and demo."""

from __future__ import annotations

from typing import Any

import click

from exquisite_store import core
from exquisite_store.cli.helpers import (
    QUEUE_OPTION,
    PhaseLine,
    open_store,
    report_outcome,
    step_options,
    step_params,
    store_path,
    write_branch_canvases,
)
from exquisite_store.core import queue
from exquisite_store.errors import StepFailure
from exquisite_store.ids import short
from exquisite_store.pipeline.reproduce import reproduce as run_reproduce


def print_preview(p: dict[str, Any]) -> None:
    """What ``--dry-run`` shows: the request that would be sent, and what it would cost."""
    model = f" model {p['model']}" if p["model"] else ""
    click.echo(
        f"dry run: nothing called, nothing written\nbackend {p['backend']}{model}, "
        f"frame {p['frame']} (scale {p['scale']}), context {p['context_px']}px, "
        f"mask paints {p['mask_paint_permille'] / 10:.1f}% of the frame, "
        f"n={p['n']}, seed {p['seed']}"
    )
    after = ""
    if p["budget_micro_usd"] is not None:
        refused = " -> WOULD BE REFUSED" if p["over_budget"] else ""
        after = f"; budget {p['budget_usd']}, spent {p['spent_usd']}{refused}"
    click.echo(f"estimate {p['estimate_usd']}{after}")
    if p.get("cached_response"):
        click.echo(
            f"run cache: this store has answered this request before (response "
            f"{short(p['cached_response'])}): no call, no cost (--fresh calls anyway)"
        )
    if p["ignores_prompt"]:
        click.echo("(this backend ignores the prompt text)")
    click.echo("prompt:\n" + "\n".join("  " + line for line in p["prompt"].splitlines()))


@click.command()
@click.argument("session")
@step_options
@click.option("--dry-run", is_flag=True, help="Print the request; call and write nothing.")
@click.option("--fresh", is_flag=True, help="Call the backend even if the run cache has it.")
@QUEUE_OPTION
@click.pass_context
def step(
    ctx: click.Context,
    session: str,
    from_: str | None,
    branch: str | None,
    prompt: str,
    dry_run: bool,
    fresh: bool,
    queue_url: str | None,
    **options: Any,
) -> None:
    """Grow SESSION by one step (one transaction; n candidates), here or by a worker."""
    store = open_store(ctx)
    req = core.step_request(
        store,
        session,
        step_params(options),
        prompt=prompt,
        parent=from_,
        branch=branch,
        fresh=fresh,
    )
    if dry_run:
        print_preview(core.estimate(store, req))
        return
    if queue_url:
        queued = queue.enqueue(store, str(store_path(ctx)), req, queue.connect(queue_url))
        click.echo(
            f"queued job {queued.job} on {queued.queue}: an `exq worker` runs it; "
            f"its progress is in the session's event log (and the viewer)"
        )
        return
    p = req.params
    ignores = (
        " (it ignores the prompt text)" if p.backend.startswith("patchmatch") and prompt else ""
    )
    click.echo(f"step {session}: {p.direction} +{p.extension_px}px with {p.backend}{ignores}")
    try:
        out = core.grow(store, req, observer=PhaseLine())
    except StepFailure as exc:
        aid = exc.details.get("attempt_id") or ""
        click.echo(f"failed: {exc.kind}: {exc.message}")
        if aid:
            click.echo(f"attempt {aid} recorded; no branch moved")
        else:
            why = exc.details.get("attempt_not_recorded", "")
            click.echo(f"no attempt could be recorded{': ' + why if why else ''}; no branch moved")
        ctx.exit(1)
    cached = core.cached_response_of(store, out.step_ids[0]) if out.step_ids else None
    if cached:
        click.echo(f"answered from the run cache (response {short(cached)}): no call, no cost")
    report_outcome(store, out)


@click.command()
@click.argument("step_ref")
@click.option("--width", type=int, default=None, help="Band width in px (default 64).")
@step_options
@click.option("--dry-run", is_flag=True, help="Print the request; call and write nothing.")
@click.option("--fresh", is_flag=True, help="Call the backend even if the run cache has it.")
@click.pass_context
def repair(
    ctx: click.Context,
    step_ref: str,
    width: int | None,
    from_: str | None,
    branch: str | None,
    prompt: str,
    dry_run: bool,
    fresh: bool,
    **options: Any,
) -> None:
    """Repaint a band centred on STEP's seam, committed as a child step of STEP."""
    if from_:
        raise click.UsageError("a repair grows from STEP itself: --from does not apply")
    store = open_store(ctx)
    sid = store.resolve_step(step_ref)
    session = store.step(sid).session
    req = core.repair_request(
        store,
        session,
        sid,
        step_params(options),
        width_px=width,
        prompt=prompt,
        branch=branch,
        fresh=fresh,
    )
    if dry_run:
        print_preview(core.estimate(store, req))
        return
    click.echo(
        f"repair {short(sid)}: a {req.repair_px}px band around its seam with {req.params.backend}"
    )
    try:
        out = core.grow(store, req, observer=PhaseLine())
    except StepFailure as exc:
        click.echo(f"failed: {exc.kind}: {exc.message}")
        ctx.exit(1)
    for sid_new in out.step_ids:
        sc = store.step(sid_new).result.scores
        before = sc.seam_before_permille if isinstance(sc.seam_before_permille, int) else 0
        click.echo(f"  seam {before / 1000:.2f} before, {sc.seam_permille / 1000:.2f} after")
    report_outcome(store, out)


@click.command()
@click.argument("step_ref")
@click.option("--replay", is_flag=True, help="Answer from the recorded response (no model call).")
@click.pass_context
def reproduce(ctx: click.Context, step_ref: str, replay: bool) -> None:
    """Re-run a step's recipe and report whether the canvas id matches."""
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


#: (direction, L, seed) of the demo's main branch, one step to each side
DEMO_PLAN = (("right", 192, 1), ("down", 128, 2), ("left", 128, 3), ("up", 96, 4))


@click.command()
@click.option("--fixture", default="photo.png", show_default=True, help="A packaged start image.")
@click.pass_context
def demo(ctx: click.Context, fixture: str) -> None:
    """Grow a demo session offline (patchmatch) in several directions and branch once."""
    start = core.image_from_fixture(fixture)  # before the store is created
    store = open_store(ctx, create=True)
    name = f"demo-{len(store.refs.sessions()) + 1}"
    _, root = core.create_session(
        store, core.new_session(name, start, title=f"demo from {fixture}")
    )
    click.echo(f"session {name}: imported the packaged {fixture}")
    first = None
    for direction, px, seed in DEMO_PLAN:
        click.echo(f"{direction} +{px}px")
        params = {"direction": direction, "extension_px": px, "overlap_px": 16, "seed": seed}
        req = core.step_request(store, name, {**params, "backend": "patchmatch"})
        out = core.grow(store, req, observer=PhaseLine())
        report_outcome(store, out)
        first = first or out.step_ids[0]
    click.echo("branch 'alt' from the first step with 3 candidates (staged)")
    params = {"direction": "right", "extension_px": 128, "overlap_px": 16, "seed": 10, "n": 3}
    req = core.step_request(
        store, name, {**params, "backend": "patchmatch"}, parent=first, branch="alt"
    )
    out = core.grow(store, req, observer=PhaseLine())
    report_outcome(store, out)
    # decide as a user would: keep two candidates as branches, then accept the first
    # (accepting clears what is left of the job's candidates from the staging area)
    first_candidate, *others = sorted(out.staged.items(), key=lambda kv: kv[0])
    for _place, sid in others:
        click.echo(f"kept {short(sid)} as {core.keep(store, name, sid).branch}")
    decision = core.accept(store, name, first_candidate[1])
    click.echo(f"accepted {short(decision.step)} on {decision.branch}")
    click.echo("")
    if store.root is not None:  # a store on S3 has no cache folder of its own
        write_branch_canvases(store, name, store.root / "cache" / name)
    where = store.location
    click.echo(
        f"\nstore: {where}   (the root step was {short(root)})\n"
        f"history:  exq --store {where} log {name}\n"
        f"browse:   exq --store {where} serve   (or: make serve), then open "
        f"http://127.0.0.1:5000/s/{name}\n"
        f"share:    exq --store {where} export {name} {name}-site"
    )


COMMANDS = (step, repair, reproduce, demo)
