"""Commands for steps run by workers elsewhere: worker, reap, retry (RQ on Redis)."""

from __future__ import annotations

import click

from exquisite_store import core
from exquisite_store.cli.helpers import QUEUE_OPTION, open_store, report_outcome, store_path
from exquisite_store.core import queue as q
from exquisite_store.ids import short


@click.command()
@QUEUE_OPTION
@click.option(
    "--queues",
    default=",".join(q.QUEUES),
    show_default=True,
    help="Which queues to take steps from (openai: paid calls; cpu: local fills).",
)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--name", default=None, help="This worker's name (default: random).")
def worker(queue_url: str | None, queues: str, burst: bool, name: str | None) -> None:
    """Run queued steps (each names its store) until stopped."""
    if not queue_url:
        raise click.UsageError("exq worker needs --queue redis://HOST:PORT/DB (or EXQ_QUEUE)")
    conn = q.connect(queue_url)
    wanted = [s.strip() for s in queues.split(",") if s.strip()]
    click.echo(f"worker on {queue_url}: queues {', '.join(wanted)}", err=True)
    q.worker(conn, wanted, burst=burst, name=name)


@click.command()
@QUEUE_OPTION
@click.pass_context
def reap(ctx: click.Context, queue_url: str | None) -> None:
    """Record queued steps whose worker stopped beating as abandoned attempts."""
    if not queue_url:
        raise click.UsageError("exq reap needs --queue redis://HOST:PORT/DB (or EXQ_QUEUE)")
    n = q.reap(open_store(ctx), str(store_path(ctx)), q.connect(queue_url))
    click.echo(f"{n} abandoned job{'s' if n != 1 else ''} recorded")


@click.command()
@click.argument("attempt")
@QUEUE_OPTION
@click.pass_context
def retry(ctx: click.Context, attempt: str, queue_url: str | None) -> None:
    """Run a failed attempt's step again (an abandoned queued job: the same request)."""
    store = open_store(ctx)
    aid = store.objects.resolve(attempt)
    if queue_url:
        queued = q.requeue(store, str(store_path(ctx)), aid, q.connect(queue_url))
        click.echo(f"queued job {queued.job} on {queued.queue} (the same request: same seed)")
        return
    out = core.grow(store, core.retry_request(store, aid))
    click.echo(f"retried {short(aid)}")
    report_outcome(store, out)


COMMANDS = (worker, reap, retry)
