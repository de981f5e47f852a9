"""Unattended growth: grow (a durable plan, run and resumed), plans (list, pause, stop)."""

from __future__ import annotations

import re
from typing import Any

import click

from exquisite_store.cli.helpers import PhaseLine, open_store, step_options, step_params
from exquisite_store.core import plans as pl
from exquisite_store.core.sessions import parse_budget
from exquisite_store.errors import ConfigError
from exquisite_store.ids import short
from exquisite_store.money import format_usd

_SIZE = re.compile(r"^(\d{1,6})x(\d{1,6})$")


def _until(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    m = _SIZE.match(text.strip().lower())
    if not m:
        raise ConfigError(f"--until takes WIDTHxHEIGHT, like 4096x1024, not {text!r:.40}")
    return int(m.group(1)), int(m.group(2))


def _print_event(e: dict[str, Any]) -> None:
    action = e.get("action")
    if action == "step":
        seams = ", ".join(f"{s / 1000:.2f}" for s in e.get("seams", []))
        click.echo(f"  step {e['k'] + 1}: {short(e['step'])}, {e['why']} (seams {seams})")
    elif action == "try-failed":
        click.echo(f"  step {e['k'] + 1} try {e['t'] + 1} failed: {e['kind']}: {e['reason']}")
    elif action == "repair":
        click.echo(f"  step {e['k'] + 1}: seam repair {e['result']}: {e['why']}")
    elif action == "failed":
        click.echo(f"  the plan failed: {e.get('reason', '')}")
    elif action == "finished":
        click.echo(f"  finished: {e.get('reason', '')}")


@click.command()
@click.argument("session")
@click.option("--steps", type=int, default=0, help="How many steps to grow.")
@click.option("--until", "until", default=None, metavar="WxH", help="Grow until this size.")
@click.option("--directions", default=None, help="Sides to grow in turn, e.g. right,down.")
@click.option("--spiral", is_flag=True, help="Grow right, down, left, up in turn.")
@click.option("--candidates", type=int, default=1, show_default=True, help="Per step.")
@click.option("--pick", type=click.Choice(["best", "first"]), default="best", show_default=True)
@click.option("--budget", "plan_budget", default=None, metavar="USD", help="The plan's own budget.")
@click.option("--max-seam", type=float, default=None, help="Refuse candidates whose seam is above.")
@click.option("--repair-above", type=float, default=None, help="Repair a step whose seam is above.")
@click.option("--resume", "resume", default=None, metavar="PLAN", help="Resume plan PLAN.")
@step_options
@click.pass_context
def grow(
    ctx: click.Context,
    session: str,
    steps: int,
    until: str | None,
    directions: str | None,
    spiral: bool,
    candidates: int,
    pick: str,
    plan_budget: str | None,
    max_seam: float | None,
    repair_above: float | None,
    resume: str | None,
    from_: str | None,
    branch: str | None,
    prompt: str,
    **options: Any,
) -> None:
    """Grow SESSION unattended by a plan kept in the store (resumable after any kill)."""
    store = open_store(ctx)
    if resume:
        pid = resume
        pl.control(store, session, pid, "resume")
    else:
        if from_:
            raise click.UsageError("a plan grows a branch's head: use --branch, not --from")
        if spiral and directions:
            raise click.UsageError("give --directions or --spiral, not both")
        dirs = pl.SPIRAL if spiral else tuple((directions or "right").split(","))
        pid, _plan = pl.create_plan(
            store,
            session,
            branch=branch,
            steps=steps,
            until=_until(until),
            directions=tuple(d.strip() for d in dirs),
            candidates=candidates,
            pick=pick,
            budget_micro_usd=parse_budget(plan_budget),
            max_seam_permille=None if max_seam is None else round(max_seam * 1000),
            repair_above_permille=None if repair_above is None else round(repair_above * 1000),
            params=step_params(options),
            prompt=prompt,
        )
        click.echo(f"plan {pid} (resume with: exq grow {session} --resume {pid})")
    st = pl.run(store, session, pid, observer=PhaseLine(), report=_print_event)
    click.echo(describe(st))
    if st.state == "failed":
        ctx.exit(1)


@click.command()
@click.argument("session")
@click.option("--pause", "pause", default=None, metavar="PLAN", help="Pause PLAN after its step.")
@click.option("--stop", "stop", default=None, metavar="PLAN", help="End PLAN after its step.")
@click.pass_context
def plans(ctx: click.Context, session: str, pause: str | None, stop: str | None) -> None:
    """List SESSION's plans with their progress (or pause or stop one)."""
    store = open_store(ctx)
    for pid, action in ((pause, "pause"), (stop, "stop")):
        if pid:
            click.echo(describe(pl.control(store, session, pid, action)))
            return
    states = pl.plans(store, session)
    for st in states:
        click.echo(describe(st))
    if not states:
        click.echo(f"no plans in {session} (start one with `exq grow {session} --steps N`)")


def describe(st: pl.PlanState) -> str:
    """One line about a plan, for ``exq plans``."""
    p = st.plan
    goal = f"{st.done}/{p.steps} steps" if p.steps else f"{st.done} steps"
    if p.until_width or p.until_height:
        goal += f", {st.width}x{st.height} of {p.until_width}x{p.until_height}"
    spend = format_usd(st.spent_micro_usd)
    if p.budget_micro_usd is not None:
        spend += f" of {format_usd(p.budget_micro_usd)}"
    why = f" ({st.reason})" if st.reason else ""
    fixed = sum(1 for e in st.repairs if e.get("result") == "accepted")
    repairs = f", {fixed} seam{'s' if fixed != 1 else ''} repaired" if fixed else ""
    return f"{st.id}  {p.branch}  {goal}{repairs}  {spend}  {st.state}{why}  from {short(p.start)}"


COMMANDS = (grow, plans)
