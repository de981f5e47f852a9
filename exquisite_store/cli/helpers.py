"""What every command module shares: opening the store, step options, printing steps."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from exquisite_store import imageio
from exquisite_store.authorship import shown
from exquisite_store.errors import AlreadyExists
from exquisite_store.ids import short
from exquisite_store.manifests import Scores, Step
from exquisite_store.money import format_usd
from exquisite_store.pipeline.job import StepOutcome
from exquisite_store.pipeline.params import SPECS
from exquisite_store.store import Store
from exquisite_store.store.config import read_config

DEFAULT_STORE = "exquisite-store"

#: ``--queue``: steps are handed to RQ workers instead of running here
QUEUE_OPTION = click.option(
    "--queue",
    "queue_url",
    envvar="EXQ_QUEUE",
    default=None,
    metavar="redis://HOST:PORT/DB",
    help="The Redis that carries queued steps to `exq worker`s (or set EXQ_QUEUE).",
)


def store_path(ctx: click.Context) -> Path | str:
    """The store named by ``--store`` / ``EXQ_STORE``: a directory, or an ``s3://`` address."""
    where = str(ctx.obj["store"])
    return where if where.startswith("s3://") else Path(where).absolute()


def cli_author(ctx: click.Context) -> str:
    """Who runs this command: ``EXQ_AUTHOR``, else the store's ``user.name``, else nobody."""
    name = os.environ.get("EXQ_AUTHOR", "")
    if name or ctx.obj is None or "store" not in ctx.obj:
        return name
    where = store_path(ctx)
    return "" if isinstance(where, str) else read_config(where).get("user.name", "")


def open_store(ctx: click.Context, *, create: bool = False) -> Store:
    """Open the store; create it if asked (and say so)."""
    path = store_path(ctx)
    endpoint = ctx.obj.get("s3_endpoint")
    if isinstance(path, str):  # s3://bucket/prefix
        if not create:
            return Store.open(path, endpoint=endpoint)
        try:
            store = Store.init(path, endpoint=endpoint)
        except AlreadyExists:
            return Store.open(path, endpoint=endpoint)
        click.echo(f"created store at {path}")
        return store
    if create and not (path / "store.toml").exists():
        store = Store.init(path)
        click.echo(f"created store at {path}")
        return store
    return Store.open(path)


def parse_duration(text: str) -> float:
    """A duration in seconds: days, or a number with s/m/h/d; BadParameter otherwise."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 86400)
    try:
        seconds = float(number) * unit
    except ValueError:
        seconds = math.nan
    if math.isnan(seconds) or seconds < 0:  # nan would make every object "old enough"
        raise click.BadParameter(f"{text!r}: a number of days, or a number with s/m/h/d")
    return seconds


def when(ms: int) -> str:
    """A time in milliseconds since the epoch, for people."""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# --- step options -------------------------------------------------------------------

#: (option, short option, StepParams field): the CLI's names for the step parameters
STEP_OPTIONS = (
    ("--direction", "-d", "direction"),
    ("--px", None, "extension_px"),
    ("--overlap", None, "overlap_px"),
    ("--context", None, "context_px"),
    ("--seam", None, "seam"),
    ("--immutable", None, "immutable_policy"),
    ("--backend", None, "backend"),
    ("--model", None, "model"),
    ("--quality", None, "quality"),
    ("--seed", None, "seed"),
    ("-n", None, "n"),
    ("--input-fidelity", None, "input_fidelity"),
)


def _metavar(field: str) -> str:
    spec = SPECS[field]
    if spec.kind == "choice":
        return "|".join(spec.choices)
    if spec.kind == "int":
        return f"{spec.minimum}..{spec.maximum}"
    return "TEXT"


def step_options(f: Callable) -> Callable:
    """The step parameters as plain options: each is parsed by ``StepParams`` in the core.

    Options left out take the session's defaults. No click types here, so a bad value
    gets the same message on the CLI as in the viewer and the JSON API.
    """
    opts = [
        click.option("--from", "from_", default=None, help="Grow from this step (id prefix)."),
        click.option("--branch", "-b", default=None, help="Branch to grow (or to create)."),
    ]
    for long, short_opt, field in STEP_OPTIONS:
        names = [long, short_opt] if short_opt else [long]
        opts.append(click.option(*names, field, default=None, metavar=_metavar(field), help=field))
    opts.append(click.option("--prompt", "-p", default="", help="What should appear."))
    for opt in reversed(opts):
        f = opt(f)
    return f


def step_params(options: dict[str, Any]) -> dict[str, Any]:
    """The step parameters among a command's keyword arguments (those given)."""
    fields = {field for _, _, field in STEP_OPTIONS}
    return {k: v for k, v in options.items() if k in fields and v is not None}


# --- printing -------------------------------------------------------------------------


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


def seam_detail(sc: Scores) -> str:
    """What the seam score is made of (steps since issue 15), else the old texture figure."""
    c = sc.seam
    if not c:
        return f"(parent's own texture {sc.parent_seam_permille / 1000:.2f})"
    return (
        f"(colour {c.colour_milli / 1000:.1f}, structure {c.structure_milli / 1000:.1f}, "
        f"edge {c.edge_milli / 1000:.1f} levels over texture {c.texture_milli / 1000:.1f}; "
        f"shift {c.shift_x_milli / 1000:+.2f}, {c.shift_y_milli / 1000:+.2f} px; "
        f"detail kept {c.detail_permille / 10:.0f}%)"
    )


def report_outcome(store: Store, out: StepOutcome) -> None:
    """One line per committed candidate, one per failed one."""
    for name, sid in out.branches.items():
        step = store.step(sid)
        sc = step.result.scores
        click.echo(
            f"committed {short(sid)} on {name}: canvas {step.result.width}x{step.result.height}, "
            f"seam {sc.seam_permille / 1000:.2f} {seam_detail(sc)}"
        )
    for place, sid in out.staged.items():
        branch, _job, k = place.split("/")
        click.echo(
            f"staged candidate {k} for {branch}: {short(sid)} "
            f"(exq accept, keep or discard SESSION {short(sid)})"
        )
    for exc in out.failures:
        aid = exc.details.get("attempt_id") or ""
        click.echo(
            f"attempt {short(aid) if aid else '(not recorded)'} failed: {exc.kind}: {exc.message}"
        )


def branch_labels(store: Store, session: str) -> dict[str, list[str]]:
    """Branch labels per step id, like git's ``(main, HEAD)``."""
    current = store.refs.current_branch(session)
    labels: dict[str, list[str]] = {}
    for branch, sid in sorted(store.refs.branches(session).items()):
        labels.setdefault(sid, []).append(f"{branch}, HEAD" if branch == current else branch)
    return labels


def describe_step(store: Store, step: Step) -> str:
    """A few lines about a step, for ``exq log``."""
    r = step.result
    if step.recipe is None:
        what = f"root: imported {step.source_name or 'start image'}"
    else:
        rc = step.recipe
        grew = f"{rc.direction} +{rc.extension_px}px"
        if rc.repair:  # UNSET is falsy
            grew = f"repair of {short(rc.repair.step)}'s seam ({rc.direction}), {rc.extension_px}px"
        what = (
            f"{grew}  overlap {rc.overlap_px}  seam {rc.seam}  "
            f"{rc.backend}{'/' + rc.model if rc.model else ''}  seed {rc.seed}"
        )
    lines = [f"    {what}", f"    canvas {r.width}x{r.height}  {short(r.canvas_id)}"]
    lines.append(f"    by {shown(step.author)}")
    if step.import_notes:  # UNSET (falsy) unless the import changed the picture
        lines += [f"    on import: {note}" for note in step.import_notes]
    if step.recipe is not None:
        prompt = store.objects.get_text(step.recipe.prompt_id)
        if prompt:
            lines.append(f"    prompt {prompt[:100]!r}")
        before = r.scores.seam_before_permille
        if isinstance(before, int):
            lines.append(f"    seam before the repair {before / 1000:.2f}")
        if r.scores.seam_permille:
            lines.append(
                f"    seam score {r.scores.seam_permille / 1000:.2f} {seam_detail(r.scores)}"
            )
    if step.response is not None and step.response.cost_micro_usd:
        lines.append(f"    cost {format_usd(step.response.cost_micro_usd)}")
    return "\n".join(lines)


def write_branch_canvases(store: Store, session: str, out_dir: Path) -> None:
    """Write each branch head's canvas as a PNG into ``out_dir`` and list them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, sid in sorted(store.refs.branches(session).items()):
        step = store.step(sid)
        dest = out_dir / f"{name}.png"
        imageio.write_png(str(dest), store.canvas_pixels(step))
        click.echo(f"{name:<10} {short(sid)}  {step.result.width}x{step.result.height}  {dest}")
