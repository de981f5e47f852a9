"""Commands for a team's viewer: users and roles, API tokens, read-only share links."""

from __future__ import annotations

import click

from exquisite_store.cli.helpers import open_store, parse_duration, when
from exquisite_store.core import team
from exquisite_store.core.sessions import parse_budget

ROLE = click.Choice(list(team.ROLES))


@click.group()
def user() -> None:
    """The users of a viewer served with --auth (tokens or proxy)."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=ROLE, default="viewer", show_default=True)
@click.option("--budget", default=None, metavar="USD", help="The most they spend per session.")
@click.pass_context
def user_add(ctx: click.Context, name: str, role: str, budget: str | None) -> None:
    """Add user NAME: viewers read, editors also run steps, admins also drop branches."""
    team.add_user(open_store(ctx), name, role, parse_budget(budget))
    click.echo(f"added {name} ({role}); give them a token: exq token create {name}")


@user.command("list")
@click.pass_context
def user_list(ctx: click.Context) -> None:
    """List the users and their roles."""
    members = team.users(open_store(ctx))
    for m in members:
        state = "  revoked" if m.revoked else ""
        click.echo(f"{m.name}\t{m.role}\tsince {when(m.created_ms)}{state}")
    if not members:
        click.echo("no users (add one with `exq user add NAME --role editor`)")


@user.command("budget")
@click.argument("name")
@click.argument("usd")
@click.pass_context
def user_budget(ctx: click.Context, name: str, usd: str) -> None:
    """Set the most NAME may spend in one session (``none``: only the session's budget)."""
    team.set_user_budget(open_store(ctx), name, parse_budget(usd))
    click.echo(f"{name} may spend {usd} per session")


@user.command("revoke")
@click.argument("name")
@click.pass_context
def user_revoke(ctx: click.Context, name: str) -> None:
    """Revoke user NAME and every token of theirs (at once, in every viewer)."""
    team.revoke_user(open_store(ctx), name)
    click.echo(f"revoked {name} and their tokens")


@click.group()
def token() -> None:
    """API tokens: shown once when made, kept only as a salted scrypt hash."""


@token.command("create")
@click.argument("name")
@click.pass_context
def token_create(ctx: click.Context, name: str) -> None:
    """Make a token for user NAME (printed once: keep it)."""
    click.echo(team.create_token(open_store(ctx), name))


@token.command("revoke")
@click.argument("token_id")
@click.pass_context
def token_revoke(ctx: click.Context, token_id: str) -> None:
    """Revoke a token by its id (the 12 hex digits after ``exq_``)."""
    team.revoke_token(open_store(ctx), token_id)
    click.echo(f"revoked token {token_id}")


@click.command()
@click.argument("session", required=False)
@click.option("--branch", "-b", default="", help="Only this branch.")
@click.option("--expires", default="7d", show_default=True, help="Days, or s/m/h/d.")
@click.option("--private", is_flag=True, help="Show prompts and costs too.")
@click.option("--list", "listing", is_flag=True, help="List the links made.")
@click.option("--revoke", "revoke", default=None, metavar="ID", help="Revoke link ID.")
@click.pass_context
def share(
    ctx: click.Context,
    session: str | None,
    branch: str,
    expires: str,
    private: bool,
    listing: bool,
    revoke: str | None,
) -> None:
    """Make a read-only link to SESSION: no prompts or costs unless --private."""
    store = open_store(ctx)
    if revoke:
        team.revoke_share(store, revoke)
        click.echo(f"revoked link {revoke}")
        return
    if listing:
        for s in team.shares(store):
            state = "revoked" if s.revoked else f"until {when(s.expires_ms)}"
            click.echo(f"{s.id}\t{s.session}{':' + s.branch if s.branch else ''}\t{state}")
        return
    if not session:
        raise click.UsageError("exq share needs a SESSION (or --list, --revoke ID)")
    link, rec = team.create_share(
        store, session, branch=branch, expires_s=parse_duration(expires), private=private
    )
    click.echo(f"/-/share/{link}")
    click.echo(f"(add it to the viewer's address; link {rec.id}, until {when(rec.expires_ms)})")


COMMANDS = (user, token, share)
