"""``exq cost`` and ``exq budget``: what a session spent, per branch and per leaf."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

import click

from exquisite_store.errors import UserError
from exquisite_store.ids import short
from exquisite_store.manifests import Attempt
from exquisite_store.pipeline.cost import session_spent


def usd_to_micro(text: str) -> int:
    """Parse a dollar amount ("2.50") into micro-dollars, exactly."""
    try:
        value = Decimal(text.strip().lstrip("$"))
    except InvalidOperation:
        raise UserError(f"not a dollar amount: {text!r}") from None
    if not value.is_finite() or value < 0 or value > 1_000_000:
        raise UserError(f"a budget must be between $0 and $1,000,000, not {text!r}")
    return int(value * 1_000_000)


def fmt(micro: int | None) -> str:
    """Micro-dollars as dollars."""
    return "none" if micro is None else f"${micro / 1e6:,.4f}"


@click.command()
@click.argument("session")
@click.argument("usd")
@click.pass_context
def budget(ctx: click.Context, session: str, usd: str) -> None:
    """Set SESSION's budget in dollars (`none` removes it)."""
    from exquisite_store.cli import open_store

    store = open_store(ctx)
    value = None if usd.lower() == "none" else usd_to_micro(usd)
    store.update_session(session, f"budget: {fmt(value)}", budget_micro_usd=value)
    click.echo(f"budget of {session}: {fmt(value)} (spent {fmt(session_spent(store, session))})")


@click.command()
@click.argument("session")
@click.pass_context
def cost(ctx: click.Context, session: str) -> None:
    """Spending of SESSION: per branch, cost to reach each leaf, billed attempts."""
    from exquisite_store.cli import open_store

    store = open_store(ctx)
    sess = store.session(session)
    branches = store.refs.branches(session)
    chains = {name: list(store.history(head)) for name, head in sorted(branches.items())}
    on_paths: dict[str, int] = {}  # step id -> how many branch paths hold it
    for chain in chains.values():
        for sid, _ in chain:
            on_paths[sid] = on_paths.get(sid, 0) + 1
    for name, chain in chains.items():
        costs = [(sid, step.response.cost_micro_usd if step.response else 0) for sid, step in chain]
        reach = sum(c for _, c in costs)
        own = sum(c for sid, c in costs if on_paths[sid] == 1)
        click.echo(
            f"{name:<16} {short(chain[0][0])}  {len(chain) - 1:>3} steps  "
            f"cost to reach {fmt(reach):>10}  of it only on this branch {fmt(own):>10}"
        )
    billed = []
    for line in store.attempts(session):
        att = store.objects.get_manifest(line.id, Attempt)
        if att.response is not None and att.response.cost_micro_usd:
            billed.append((line.id, att.failure_kind, att.response.cost_micro_usd))
    for aid, kind, micro in billed:
        click.echo(f"attempt {short(aid)}  {kind:<22} billed {fmt(micro)}")
    spent = session_spent(store, session)
    click.echo(
        f"spent {fmt(spent)} in all ({len(billed)} billed attempts); "
        f"budget {fmt(sess.budget_micro_usd)}"
    )
