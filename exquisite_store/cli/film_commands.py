"""``exq film``: a branch's growth as a video (MP4, WebM) or an animation (WebP, GIF)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

import click

from exquisite_store.cli.helpers import open_store
from exquisite_store.core import film as films
from exquisite_store.errors import UserError
from exquisite_store.film.plan import MODES
from exquisite_store.ids import short


@click.command()
@click.argument("session")
@click.option("--branch", "-b", default=None, help="The branch to film (default: HEAD's).")
@click.option(
    "--output", "-o", required=True, help="The film: OUT.mp4, OUT.webm, OUT.webp or OUT.gif."
)
@click.option(
    "--fps", type=int, default=None, help=f"Frames a second (default {films.DEFAULT_FPS})."
)
@click.option("--size", default=None, metavar="WxH", help="Frame size (default 1280x720).")
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default=films.DEFAULT_MODE,
    show_default=True,
    help="pan follows each new band; zoom-out shows the whole canvas; reveal uncovers the head.",
)
@click.pass_context
def film(
    ctx: click.Context,
    session: str,
    branch: str | None,
    output: str,
    fps: int | None,
    size: str | None,
    mode: str,
) -> None:
    """Film SESSION's branch growing step by step, from its root to its head."""
    options = films.film_options(output, size=size, fps=fps, mode=mode)
    store = open_store(ctx)
    head = films.branch_head(store, session, branch)
    total = films.frame_count(store, head, options)
    target = Path(output)
    folder = target.parent if str(target.parent) else Path(".")
    try:  # written beside the output and renamed: a failed film leaves no half file
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is private; a film is not
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    done = 0
    try:
        with click.progressbar(
            length=total, label=f"filming {total} frames", file=sys.stderr
        ) as bar:

            def progress(n: int) -> None:
                nonlocal done
                bar.update(n - done)
                done = n

            made = films.write_film(store, head, options, tmp, progress=progress)
        os.replace(tmp, target)
    except OSError as exc:
        raise UserError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    w, h = made.size
    click.echo(
        f"wrote {output}: {made.frames} frames, {w}x{h}, {made.fps} fps, "
        f"{made.steps} steps up to {short(made.head)} ({options.mode})"
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


COMMANDS = [film]
