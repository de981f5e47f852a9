"""Hostile input, one table: the CLI, the HTTP routes and the backends' answers.

Each case names its surface (``cli`` | ``http`` | ``backend``), its input and the clear
error it must give. Every case is checked the same three ways:

- **a clear error**: the CLI exits non-zero with one ``error:`` line as its last line
  (click's own ``Error:`` and exit 2 for an option click parses; fsck's report for
  ``exq fsck``; ``failed: Kind: reason`` and ``attempt ... recorded`` for a step whose
  backend misbehaved) and never a traceback; HTTP answers 4xx with the reason in the
  JSON body, never 5xx, never a traceback (a step the viewer runs in the background
  instead fails its job with the kind and reason, and its attempt page shows them);
- **nothing written**: a listing of every file and folder under the store, with the
  bytes of every file, is the same before and after; except a step that must record an
  attempt (then exactly one attempt, its objects and its log lines are added, and no
  ref or reflog changes) and a step the pipeline refuses after it has announced itself
  (then only ``failed``-terminated lines are appended to the session's event log);
- **nothing lost**: fsck afterwards reports exactly the damage the case put on disk
  itself, and nothing else.

A case that finds a bug carries ``bug=...``: it runs as a strict xfail, so the suite
stays green while the bug is open and turns red the moment it is fixed (then drop the
mark). ``test_figures`` prints the ``FIGURES:`` line and appends it to
``tests/artifacts/figures.jsonl``.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re
import shutil
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from exquisite_store.cli import cli
from exquisite_store.errors import ExqError
from exquisite_store.store import Store
from exquisite_store.store.fsck import fsck
from viewer import create_app

from . import figures
from .fakes import openai_server
from .fakes.openai_server import Behaviour
from .helpers import FIXTURES
from .image_makers import animated
from .viewer_helpers import BufferedClient, make_session, png_bytes, wait_job

KEY = "sk-test-hostile-0123456789abcdef"
NOWHERE = "http://127.0.0.1:9/v1"  # no case but a backend case may reach a model
S = "garden"
LOGS = f"logs/sessions/{S}/"
STEP_LOGS = {LOGS + name for name in ("attempts", "events", "responses")}
#: the store's index of answered requests (the run cache), appended to with responses
REQUEST_INDEX = "logs/requests/"
OPENAI_STEP = ("step", S, "--backend", "openai", "--model", "gpt-image-2", "--px", "16")
OPENAI_STEP += ("--overlap", "4", "--seed", "1", "--quality", "low")
OPENAI_JSON = {
    "backend": "openai",
    "model": "gpt-image-2",
    "extension_px": 16,
    "overlap_px": 4,
    "seed": 1,
    "quality": "low",
}
FAST = {"retry-after-ms": "1"}


# --- hostile bytes --------------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def header_bomb(w: int, h: int) -> bytes:
    """A PNG whose header claims ``w x h`` RGB pixels, with an empty body (a few dozen bytes)."""
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b""))


@functools.cache
def sparse_png(w: int, h: int) -> bytes:
    """A whole, valid 1-bit PNG of ``w x h`` black pixels: huge dimensions, a few kB."""
    buf = io.BytesIO()
    Image.new("1", (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def truncated_png() -> bytes:
    return png_bytes(64, 64, seed=1)[:-40]


def png_with_text_chunk(kind: bytes, body: bytes) -> bytes:
    """A small PNG carrying one more text chunk (before IEND)."""
    png = png_bytes(4, 4, seed=1)
    return png[:-12] + _chunk(kind, body) + png[-12:]


def text_chunk_50mb() -> bytes:
    return png_with_text_chunk(b"tEXt", b"exquisite-store\0" + b"x" * 50_000_000)


def ztxt_bomb() -> bytes:  # 50 kB on disk, 50 MB of text once inflated
    return png_with_text_chunk(b"zTXt", b"exquisite-store\0\0" + zlib.compress(b"x" * 50_000_000))


def float_tiff() -> bytes:
    buf = io.BytesIO()
    Image.new("F", (8, 8), 0.5).save(buf, format="TIFF")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- what a model may send back instead of a picture (rewrites of the fake's ``data``) -----


def _decoded(item: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))


def zero_bytes(data: list[dict]) -> list[dict]:
    return [{"b64_json": ""} for _ in data]


def greyscale(data: list[dict]) -> list[dict]:
    out = []
    for item in data:
        buf = io.BytesIO()
        _decoded(item).convert("L").save(buf, format="PNG")
        out.append({"b64_json": b64(buf.getvalue())})
    return out


def bomb_50000(data: list[dict]) -> list[dict]:
    return [{"b64_json": b64(header_bomb(50_000, 50_000))} for _ in data]


def truncated(data: list[dict]) -> list[dict]:
    out = []
    for item in data:
        raw = base64.b64decode(item["b64_json"])
        out.append({"b64_json": b64(raw[: len(raw) // 2])})
    return out


def one_pixel(data: list[dict]) -> list[dict]:
    return [{"b64_json": b64(png_bytes(1, 1))} for _ in data]


def no_images(data: list[dict]) -> list[dict]:
    return []


def url_not_b64(data: list[dict]) -> list[dict]:
    return [{"url": "http://127.0.0.1:9/image.png"} for _ in data]


# --- hostile state on disk (a case's setup) ------------------------------------------------


def _object_file(root: Path, oid: str) -> Path:
    path = root / "objects" / oid[:2] / f"{oid}.json"
    path.chmod(0o644)
    return path


def tamper_valid(root: Path, t: dict[str, str]) -> None:
    """Step 1's manifest, edited into other valid JSON (a canvas 10x wider than it is)."""
    path = _object_file(root, t["<step1>"])
    data = path.read_bytes()
    assert b'"width":' in data
    path.write_bytes(data.replace(b'"width":', b'"width":1', 1))


def tamper_truncated(root: Path, t: dict[str, str]) -> None:
    """Step 1's manifest, cut short (no longer JSON)."""
    path = _object_file(root, t["<step1>"])
    path.write_bytes(path.read_bytes()[:-10])


def ref_text(root: Path, t: dict[str, str]) -> None:
    (root / f"refs/{S}/heads/main").write_text("garbage!\n")


def ref_binary(root: Path, t: dict[str, str]) -> None:
    (root / f"refs/{S}/heads/main").write_bytes(b"\xff\xfe\x00garbage\n")


def toml_garbage(root: Path, t: dict[str, str]) -> None:
    (root / "store.toml").write_bytes(b"\x00\xff not toml [[[\n")


def toml_version(root: Path, t: dict[str, str]) -> None:
    (root / "store.toml").write_text("format_version = 99\ntile_size = 256\n")


def no_store(root: Path, t: dict[str, str]) -> None:
    shutil.rmtree(root)


OUTSIDE_SECRET = "a file of this machine, outside the store"


def outside(root: Path) -> Path:
    """A folder beside the store (what a planted link points at)."""
    out = root.parent / "outside"
    out.mkdir(exist_ok=True)
    return out


def link_prompt(root: Path, t: dict[str, str]) -> None:
    """Step 1's prompt object replaced by a link to a file outside the store."""
    secret = outside(root) / "secret.txt"
    secret.write_text(OUTSIDE_SECRET)
    path = root / "objects" / t["<prompt1>"][:2] / f"{t['<prompt1>']}.txt"
    path.chmod(0o644)
    path.unlink()
    path.symlink_to(secret)


def link_session(root: Path, t: dict[str, str]) -> None:
    """The session's folders (refs, reflogs, logs) moved out and linked back in."""
    for sub in (f"refs/{S}", f"logs/refs/{S}", f"logs/sessions/{S}"):
        away = outside(root) / sub.replace("/", "-")
        shutil.move(root / sub, away)
        (root / sub).symlink_to(away, target_is_directory=True)


def ref_dir_new(root: Path, t: dict[str, str]) -> None:
    """A directory where a branch ``x`` would be."""
    (root / f"refs/{S}/heads/x").mkdir()


def ref_dir_main(root: Path, t: dict[str, str]) -> None:
    """Branch main (HEAD's) replaced by a directory."""
    (root / f"refs/{S}/heads/main").unlink()
    (root / f"refs/{S}/heads/main").mkdir()


def orphan(root: Path, t: dict[str, str]) -> None:
    """An unreachable object a moment old: inside any grace period."""
    Store.open(root).objects.put_text("an orphan a moment old: a step may be about to use it")


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Req:
    """One HTTP request; ``<token>``s in strings are replaced by ids of the store."""

    method: str  # "START": create the app itself (a viewer starting on this store)
    url: str = "/"
    json: Any = None
    body: bytes | str | None = None  # a raw body, sent with ``content_type``
    content_type: str | None = None
    form: dict[str, str] | None = None
    upload: tuple[Callable[[], bytes], str] | None = None  # field "image": (content, filename)
    csrf: str = "ok"  # ok | missing | wrong | no-session (a token, but none in the session)
    headers: dict[str, str] | None = None  # more request headers (Host, Origin, ...)


@dataclass(frozen=True)
class Answer:
    """What the fake OpenAI server answers, and whether ``exq step`` or the viewer asks."""

    channel: str  # cli | http
    script: tuple[Behaviour, ...] = ()
    mangle: Callable[[list[dict]], list[dict]] | None = None
    extra: tuple[str, ...] = ()  # more ``exq step`` options


@dataclass(frozen=True)
class Case:
    id: str
    surface: str  # cli | http | backend
    input: tuple[str, ...] | Req | Answer
    expect: str  # the reason the error must give (case-insensitive substring)
    status: int | None = None  # http: this exact 4xx (else any 4xx)
    form: str = "error"  # cli: error | usage | report (fsck) | failed (an attempt); job
    setup: Callable[[Path, dict[str, str]], None] | None = None
    files: dict[str, Callable[[], bytes]] = field(default_factory=dict)  # under <in>/
    writes: str = "none"  # none | events | attempt
    damage: tuple[str, ...] = ()  # fsck findings the setup causes; "store.toml", "nostore"
    bug: str = ""


def C(id: str, args: tuple[str, ...], expect: str, **kw: Any) -> Case:
    return Case(id, "cli", args, expect, **kw)


def H(id: str, req: Req, expect: str, status: int | None = None, **kw: Any) -> Case:
    return Case(id, "http", req, expect, status, **kw)


def B(id: str, answer: Answer, expect: str, **kw: Any) -> Case:
    form = "failed" if answer.channel == "cli" else "job"
    return Case(id, "backend", answer, expect, form=form, writes="attempt", **kw)


def J(url: str, body: Any, **kw: Any) -> Req:
    return Req("POST", url, json=body, **kw)


def RAW(url: str, body: bytes | str, **kw: Any) -> Req:
    return Req("POST", url, body=body, content_type="application/json", **kw)


def NEW(name: str, **kw: Any) -> Req:
    return Req("POST", "/-/new", form={"name": name, **kw})


def UP(content: Callable[[], bytes], filename: str = "start.png") -> Req:
    return Req("POST", "/-/new", form={"name": "uploaded"}, upload=(content, filename))


FLAT = "<fixtures>/flat.png"
LINKED = "is a symbolic link; the store never follows one"
LINKED_PROMPT = ("unsafe path objects/<pp1>/<prompt1>.txt", "missing object <prompt1>")
LINKED_SESSION = tuple(f"unsafe path {d}/{S}: a symbolic link" for d in ("refs", "logs/refs"))
LINKED_SESSION += (f"unsafe path logs/sessions/{S}: a symbolic link",)
X_DIR = f"refs/{S}/heads/x is a directory where a file belongs"
X_BAD = (f"bad ref {S}/heads/x: a directory where a ref belongs",)
MAIN_DIR = (f"bad ref {S}/heads/main: a directory", f"bad ref {S}/HEAD: refs/{S}/heads/main")
NAME = "may hold only letters"
REF_MESSAGE = "not an object id"  # technically right, but it names no ref (see the report)

CASES: list[Case] = [
    # --- CLI: path traversal, NUL, unicode names -------------------------------------------
    C("cli-log-session-traversal", ("log", "../../x"), NAME),
    C("cli-log-session-encoded", ("log", "%2e%2e%2fx"), NAME),
    C("cli-log-branch-encoded-slash", ("log", S, "--branch", "..%2F..%2Fstore.toml"), NAME),
    C("cli-show-traversal", ("show", "../../store.toml"), "not an id"),
    C("cli-show-encoded-slash", ("show", "..%2f..%2fstore.toml"), "not an id"),
    C("cli-canvas-branch-traversal", ("canvas", f"{S}:../../x", "-o", "<in>/x.png"), NAME),
    C("cli-new-nul-name", ("new", "gar\0den", FLAT), NAME),
    C("cli-show-nul-id", ("show", "0123abcd\0"), "not an id"),
    C("cli-new-emoji-name", ("new", "\U0001f3a8garden", FLAT), NAME),
    C("cli-new-rtl-name", ("new", "garden\u202egnp", FLAT), NAME),
    C("cli-new-nfc-name", ("new", "caf\u00e9", FLAT), NAME),
    C("cli-new-nfd-name", ("new", "cafe\u0301", FLAT), NAME),
    C("cli-branch-emoji-name", ("branch", S, "\U0001f33f", "--from", "<step0>"), NAME),
    C("cli-branch-lock-name", ("branch", S, "main.lock", "--from", "<step0>"), NAME),
    # /s/g.json is session g's JSON twin: a session may not be named so
    C("cli-new-json-twin-name", ("new", "g.json", FLAT), "ends in '.json'"),
    C("cli-new-json-twin-name-upper", ("new", "G.JSON", FLAT), "ends in '.json'"),
    C(
        "cli-new-bad-name-creates-no-store",
        ("new", "../x", FLAT),
        NAME,
        setup=no_store,
        damage=("nostore",),
    ),
    C(
        "cli-demo-missing-fixture-creates-no-store",
        ("demo", "--fixture", "../nope.png"),
        "no fixture '../nope.png'",
        setup=no_store,
        damage=("nostore",),
    ),
    # --- CLI: images ------------------------------------------------------------------------
    C(
        "cli-new-not-an-image",
        ("new", "n", "<in>/x.png"),
        "not an image",
        files={"x.png": lambda: b"hello"},
    ),
    C(
        "cli-new-empty-file",
        ("new", "n", "<in>/x.png"),
        "not an image",
        files={"x.png": lambda: b""},
    ),
    C(
        "cli-new-truncated",
        ("new", "n", "<in>/x.png"),
        "cannot be decoded",
        files={"x.png": truncated_png},
    ),
    C(
        "cli-new-header-bomb-40000",
        ("new", "n", "<in>/x.png"),
        "over the limit",
        files={"x.png": lambda: header_bomb(40_000, 40_000)},
    ),
    C(
        "cli-new-huge-dimensions-small-bytes",
        ("new", "n", "<in>/x.png"),
        "9000x8000 = 72000000 pixels, over the limit",
        files={"x.png": lambda: sparse_png(9000, 8000)},
    ),
    C(
        "cli-inspect-header-bomb",
        ("inspect", "<in>/x.png"),
        "too large",
        files={"x.png": lambda: header_bomb(40_000, 40_000)},
    ),
    C(
        "cli-inspect-not-a-png",
        ("inspect", "<in>/x.png"),
        "cannot be read as a PNG",
        files={"x.png": lambda: b"GIF89a"},
    ),
    # --- CLI: step parameters ---------------------------------------------------------------
    C("cli-step-px-zero", ("step", S, "--px", "0"), "extension_px must be between 1 and 4096"),
    C(
        "cli-step-px-negative",
        ("step", S, "--px", "-16"),
        "extension_px must be between 1 and 4096",
    ),
    C("cli-step-px-enormous", ("step", S, "--px", str(10**12)), "extension_px must be between"),
    C("cli-step-overlap-negative", ("step", S, "--overlap", "-1"), "overlap_px must be between 0"),
    C(
        "cli-step-overlap-enormous",
        ("step", S, "--overlap", str(10**9)),
        "overlap_px must be between",
    ),
    C(
        "cli-step-overlap-wider-than-canvas",
        ("step", S, "--px", "8", "--overlap", "4000"),
        "must be smaller than the canvas",
        writes="events",
    ),
    C("cli-step-seed-negative", ("step", S, "--seed", "-1"), "seed must be between 0"),
    C("cli-step-n-zero", ("step", S, "-n", "0"), "n must be between 1 and 10"),
    C("cli-step-n-enormous", ("step", S, "-n", "1000"), "n must be between 1 and 10"),
    C(
        "cli-step-unknown-direction",
        ("step", S, "--direction", "sideways"),
        "direction must be one of right, left, up, down, not 'sideways'",
    ),
    C("cli-step-unknown-seam", ("step", S, "--seam", "glue"), "seam must be one of"),
    C("cli-step-unknown-backend", ("step", S, "--backend", "magic"), "backend must be one of"),
    C("cli-step-unknown-quality", ("step", S, "--quality", "ultra"), "quality must be one of"),
    C(
        "cli-step-unknown-model",
        ("step", S, "--backend", "openai", "--model", "gpt-image-9"),
        "unknown OpenAI image model 'gpt-image-9'",
        writes="events",
    ),
    C(
        "cli-step-retired-model",
        ("step", S, "--backend", "openai", "--model", "dall-e-2"),
        "gpt-image-2.6-sunburst",
        writes="events",
    ),
    C(
        "cli-step-quality-the-model-lacks",
        ("step", S, "--backend", "openai", "--model", "gpt-image-1.5", "--quality", "xhigh"),
        "gpt-image-1.5 accepts quality",
        writes="events",
    ),
    # refused before the step starts: nothing is written, not even an event
    C("cli-step-from-traversal", ("step", S, "--from", "../../x"), "not an id"),
    C("cli-step-from-an-attempt", ("step", S, "--from", "<attempt>"), "not a step"),
    C("cli-step-branch-traversal", ("step", S, "--branch", "../x"), NAME),
    C(
        "cli-step-prompt-10mb",
        ("step", S, "--px", "8", "--overlap", "2", "--prompt", "x" * 10_000_000),
        "prompt",
    ),
    C(
        "cli-step-prompt-not-unicode",
        ("step", S, "--px", "8", "--overlap", "2", "--prompt", "bad byte \udcff"),
        "the prompt is not valid Unicode text",
    ),
    # --- CLI: other commands ----------------------------------------------------------------
    C("cli-budget-nan", ("budget", S, "NaN"), "a budget must be between"),
    C("cli-budget-negative", ("budget", S, "--", "-5"), "a budget must be between"),
    C("cli-budget-garbage", ("budget", S, "lots"), "not a dollar amount"),
    C("cli-gc-grace-nan", ("gc", "--grace", "nan"), "a number of days", form="usage", setup=orphan),
    C(
        "cli-gc-grace-negative",
        ("gc", "--grace", "-5d"),
        "a number of days",
        form="usage",
        setup=orphan,
    ),
    C(
        "cli-canvas-unwritable-output",
        ("canvas", f"{S}:main", "-o", "/proc/nope/x.png"),
        "cannot write",
    ),
    C("cli-export-unwritable-directory", ("export", S, "/proc/nope/site"), "cannot write"),
    C("cli-export-unknown-branch", ("export", S, "<in>/site", "--branch", "../x"), "no branch"),
    C(
        "cli-export-prune-into-the-store",
        ("export", S, "<store>", "--prune", "--force"),
        "refusing to export into the store",
    ),
    C(
        "cli-export-into-a-folder-of-the-store",
        ("export", S, "<store>/site"),
        "refusing to export into the store",
    ),
    C(
        "cli-export-prune-a-folder-of-user-files",
        ("export", S, "<in>", "--prune"),
        "is not empty and holds no export",
        files={"notes.txt": lambda: b"precious"},
    ),
    # --- CLI: start images that are not one still picture, and inspect's text chunks -------
    C(
        "cli-new-animated-gif",
        ("new", "n", "<in>/a.gif"),
        "is animated (3 frames)",
        files={"a.gif": lambda: animated("GIF")},
    ),
    C(
        "cli-new-frame-out-of-range",
        ("new", "n", "<in>/a.webp", "--frame", "3"),
        "frame 3 is not one of them (0 to 2)",
        files={"a.webp": lambda: animated("WEBP")},
    ),
    C(
        "cli-new-frame-not-a-number",
        ("new", "n", "<in>/a.png", "--frame", "-1"),
        "frame must be a whole number from 0",
        files={"a.png": lambda: animated("PNG")},
    ),
    C(
        "cli-new-floating-point-pixels",
        ("new", "n", "<in>/f.tif"),
        "floating-point pixels",
        files={"f.tif": float_tiff},
    ),
    C(
        "cli-inspect-50mb-text-chunk",
        ("inspect", "<in>/x.png"),
        "over the limit of 1 MB",
        files={"x.png": text_chunk_50mb},
    ),
    C(
        "cli-inspect-ztxt-bomb",
        ("inspect", "<in>/x.png"),
        "over the limit of 1 MB",
        files={"x.png": ztxt_bomb},
    ),
    # --- CLI: damage on disk ----------------------------------------------------------------
    C(
        "cli-manifest-tampered-show",
        ("show", "<step1>"),
        "damaged",
        setup=tamper_valid,
        damage=("damaged object <step1>",),
    ),
    C(
        "cli-manifest-tampered-log",
        ("log", S),
        "damaged",
        setup=tamper_valid,
        damage=("damaged object <step1>",),
    ),
    C(
        "cli-manifest-tampered-fsck",
        ("fsck",),
        "damaged object <step1>",
        form="report",
        setup=tamper_valid,
        damage=("damaged object <step1>",),
    ),
    C(
        "cli-manifest-truncated-show",
        ("show", "<step1>"),
        "object <step1>",
        setup=tamper_truncated,
        damage=("damaged object <step1>",),
    ),
    C(
        "cli-manifest-truncated-log",
        ("log", S),
        "object <step1>",
        setup=tamper_truncated,
        damage=("damaged object <step1>",),
    ),
    C(
        "cli-manifest-truncated-fsck",
        ("fsck",),
        "damaged object <step1>",
        form="report",
        setup=tamper_truncated,
        damage=("damaged object <step1>",),
    ),
    C(
        "cli-ref-garbage-log",
        ("log", S),
        REF_MESSAGE,
        setup=ref_text,
        damage=("bad ref garden/heads/main",),
    ),
    C(
        "cli-ref-garbage-branches",
        ("branches", S),
        REF_MESSAGE,
        setup=ref_text,
        damage=("bad ref garden/heads/main",),
    ),
    C(
        "cli-ref-garbage-fsck",
        ("fsck",),
        "bad ref garden/heads/main",
        form="report",
        setup=ref_text,
        damage=("bad ref garden/heads/main",),
    ),
    C(
        "cli-ref-garbage-step",
        ("step", S, "--px", "8"),
        REF_MESSAGE,
        setup=ref_text,
        damage=("bad ref garden/heads/main",),
        writes="events",
    ),
    C(
        "cli-ref-binary-log",
        ("log", S),
        REF_MESSAGE,
        setup=ref_binary,
        damage=("bad ref garden/heads/main",),
    ),
    C(
        "cli-ref-binary-branches",
        ("branches", S),
        REF_MESSAGE,
        setup=ref_binary,
        damage=("bad ref garden/heads/main",),
    ),
    C(
        "cli-ref-binary-fsck",
        ("fsck",),
        "bad ref garden/heads/main",
        form="report",
        setup=ref_binary,
        damage=("bad ref garden/heads/main",),
    ),
    C(
        "cli-store-toml-garbage-log",
        ("log", S),
        "store.toml is damaged",
        setup=toml_garbage,
        damage=("store.toml",),
    ),
    C(
        "cli-store-toml-garbage-fsck",
        ("fsck",),
        "store.toml is damaged",
        setup=toml_garbage,
        damage=("store.toml",),
    ),
    C(
        "cli-store-toml-garbage-step",
        ("step", S, "--px", "8"),
        "store.toml is damaged",
        setup=toml_garbage,
        damage=("store.toml",),
    ),
    C(
        "cli-store-toml-future-version",
        ("branches", S),
        "store format 99 is not supported",
        setup=toml_version,
        damage=("store.toml",),
    ),
    # --- CLI: links and directories where files belong (never followed, never a traceback) ---
    C(
        "cli-linked-prompt-show",
        ("show", "<prompt1>"),
        LINKED,
        setup=link_prompt,
        damage=LINKED_PROMPT,
    ),
    C("cli-linked-prompt-log", ("log", S), LINKED, setup=link_prompt, damage=LINKED_PROMPT),
    C(
        "cli-linked-prompt-fsck",
        ("fsck",),
        "unsafe path objects/<pp1>/<prompt1>.txt: a symbolic link, never followed",
        form="report",
        setup=link_prompt,
        damage=LINKED_PROMPT,
    ),
    C(
        "cli-linked-prompt-gc",
        ("gc", "--grace", "0"),
        "gc refuses to run while the store holds links: objects/<pp1>/<prompt1>.txt",
        setup=link_prompt,
        damage=LINKED_PROMPT,
    ),
    C(
        "cli-linked-session-gc-dry-run",
        ("gc", "--dry-run", "--grace", "0"),
        f"gc refuses to run while the store holds links: logs/refs/{S}",
        setup=link_session,
        damage=LINKED_SESSION,
    ),
    C(
        "cli-linked-session-fsck",
        ("fsck",),
        f"unsafe path refs/{S}: a symbolic link",
        form="report",
        setup=link_session,
        damage=LINKED_SESSION,
    ),
    C(
        "cli-linked-session-log",
        ("log", S),
        f"refs/{S} {LINKED}",
        setup=link_session,
        damage=LINKED_SESSION,
    ),
    C(
        "cli-linked-session-step",
        ("step", S, "--px", "8"),
        f"refs/{S} {LINKED}",
        setup=link_session,
        damage=LINKED_SESSION,
    ),
    C(
        "cli-ref-directory-branch",
        ("branch", S, "x", "--from", "<step0>"),
        X_DIR,
        setup=ref_dir_new,
        damage=X_BAD,
    ),
    C(
        "cli-ref-directory-step",
        ("step", S, "--branch", "x", "--from", "<step0>", "--px", "8"),
        X_DIR,
        setup=ref_dir_new,
        damage=X_BAD,
    ),
    C(
        "cli-ref-directory-fsck",
        ("fsck",),
        f"bad ref {S}/heads/x: a directory where a ref belongs",
        form="report",
        setup=ref_dir_new,
        damage=X_BAD,
    ),
    C(
        "cli-ref-main-directory-step",
        ("step", S, "--px", "8"),
        f"refs/{S}/heads/main is a directory where a file belongs",
        setup=ref_dir_main,
        damage=MAIN_DIR,
    ),
    C(
        "cli-ref-main-directory-log",
        ("log", S),
        f"refs/{S}/heads/main is a directory where a file belongs",
        setup=ref_dir_main,
        damage=MAIN_DIR,
    ),
    C(
        "cli-ref-main-directory-fsck",
        ("fsck",),
        f"bad ref {S}/heads/main: a directory where a ref belongs",
        form="report",
        setup=ref_dir_main,
        damage=MAIN_DIR,
    ),
    # --- HTTP: paths --------------------------------------------------------------------------
    H("http-step-dotdot", Req("GET", "/step/../../etc/passwd"), "not found", 404),
    H("http-session-encoded-dots", Req("GET", "/s/%2e%2e%2f%2e%2e"), "not found", 404),
    H(
        "http-session-encoded-slash",
        Req("GET", "/s/garden%2F..%2F..%2Fstore.toml"),
        "not found",
        404,
    ),
    H("http-session-double-encoded", Req("GET", "/s/%252e%252e"), NAME, 400),
    H("http-object-encoded-slash", Req("GET", "/-/objects/..%2f..%2fstore.toml"), "not found", 404),
    H("http-static-encoded-slash", Req("GET", "/static/..%2f..%2fstore.toml"), "not found", 404),
    H("http-session-nul", Req("GET", "/s/garden%00"), NAME, 400),
    H("http-session-lock-name", Req("GET", "/s/garden.lock"), NAME, 400),
    H("http-object-uppercase-id", Req("GET", "/-/objects/<STEP0>"), "not found", 404),
    H("http-events-unknown-session", Req("GET", "/-/events/nope?once=1"), "no session", 404),
    # --- HTTP: names and ids in bodies (a bad name: 400 with its reason) -------------------
    H(
        "http-branch-nul-name",
        J(f"/s/{S}/branch", {"branch": "a\0b", "step": "<step0>"}),
        NAME,
        400,
    ),
    H(
        "http-branch-traversal-name",
        J(f"/s/{S}/branch", {"branch": "../../x", "step": "<step0>"}),
        NAME,
        400,
    ),
    H(
        "http-head-garbage-step",
        J(f"/s/{S}/head", {"branch": "main", "step": "../../x"}),
        "not an id or id prefix",
        404,
    ),
    H("http-new-emoji-name", NEW("\U0001f3a8", fixture="flat.png"), NAME, 400),
    H("http-new-rtl-name", NEW("garden\u202egnp", fixture="flat.png"), NAME, 400),
    H("http-new-nfd-name", NEW("cafe\u0301", fixture="flat.png"), NAME, 400),
    H("http-new-json-twin-name", NEW("g.json", fixture="flat.png"), "ends in '.json'", 400),
    H("http-new-fixture-traversal", NEW("fx", fixture="../../etc/passwd"), "no fixture", 400),
    H("http-new-budget-nan", NEW("fx", fixture="flat.png", budget="NaN"), "a budget must be", 400),
    H(
        "http-extend-parent-traversal",
        J(f"/s/{S}/extend", {"parent": "../../x"}),
        "not an id or id prefix",
        404,
    ),
    H(
        "http-extend-parent-attempt",
        J(f"/s/{S}/extend", {"parent": "<attempt>"}),
        "not a step",
        404,
    ),
    H("http-extend-branch-not-a-string", J(f"/s/{S}/extend", {"branch": ["main"]}), "branch", 400),
    H(
        "http-compare-nine-ids",
        Req("GET", "/compare.json?ids=" + ",".join(["<step0>"] * 9)),
        "2 to 8",
        404,
    ),
    H(
        "http-compare-an-attempt",
        Req("GET", "/compare.json?ids=<step0>,<attempt>"),
        "not a step",
        404,
    ),
    H("http-retry-a-step", Req("POST", "/attempt/<step0>/retry"), "not a attempt", 404),
    # --- HTTP: images -------------------------------------------------------------------------
    H("http-upload-not-an-image", UP(lambda: b"not an image at all"), "not an image", 400),
    H("http-upload-empty", UP(lambda: b""), "not an image", 400),
    H("http-upload-truncated", UP(truncated_png), "cannot be decoded", 400),
    H(
        "http-upload-header-bomb-40000",
        UP(lambda: header_bomb(40_000, 40_000)),
        "over the limit",
        400,
    ),
    H(
        "http-upload-huge-dimensions-small-bytes",
        UP(lambda: sparse_png(7000, 6000)),
        "7000x6000 = 42000000 pixels, over the limit",
        400,
    ),
    H("http-upload-over-32mb", UP(lambda: b"\0" * (33 * 1024 * 1024)), "capacity limit", 413),
    H(
        "http-upload-unicode-filename",
        UP(lambda: b"GIF", "\u202egnp.exe\U0001f3a8"),
        "not an image",
        400,
    ),
    H("http-upload-animated", UP(lambda: animated("GIF"), "a.gif"), "is animated (3 frames)", 400),
    H(
        "http-upload-frame-not-a-number",
        Req(
            "POST",
            "/-/new",
            form={"name": "uploaded", "frame": "two"},
            upload=(lambda: animated("GIF"), "a.gif"),
        ),
        "frame must be a whole number from 0",
        400,
    ),
    H(
        "http-upload-frame-out-of-range",
        Req(
            "POST",
            "/-/new",
            form={"name": "uploaded", "frame": "7"},
            upload=(lambda: animated("PNG"), "a.png"),
        ),
        "frame 7 is not one of them",
        400,
    ),
    # --- HTTP: step parameters ------------------------------------------------------------------
    H(
        "http-extend-prompt-10mb-json",
        J(f"/s/{S}/extend", {"prompt": "x" * 10_000_000}),
        "prompt",
        400,
    ),
    H(
        "http-extend-prompt-10mb-form",
        Req("POST", f"/s/{S}/extend", form={"prompt": "x" * 10_000_000}),
        "prompt",
        400,
    ),
    H("http-extend-prompt-nul", J(f"/s/{S}/extend", {"prompt": "a\0b"}), "prompt", 400),
    H(
        "http-extend-prompt-not-unicode",
        RAW(f"/s/{S}/extend", '{"prompt": "lone \\ud800 surrogate", "extension_px": 8}'),
        "the prompt is not valid Unicode text",
        400,
    ),
    H(
        "http-estimate-prompt-40k",
        Req("GET", f"/s/{S}/estimate.json?prompt=" + "x" * 40_000),
        "prompt",
        400,
    ),
    H("http-extend-px-zero", J(f"/s/{S}/extend", {"extension_px": 0}), "extension_px", 400),
    H("http-extend-px-negative", J(f"/s/{S}/extend", {"extension_px": -16}), "extension_px", 400),
    H(
        "http-extend-px-enormous",
        J(f"/s/{S}/extend", {"extension_px": 10**12}),
        "extension_px",
        400,
    ),
    H(
        "http-extend-px-infinite",
        RAW(f"/s/{S}/extend", '{"extension_px": 1e999}'),
        "extension_px",
        400,
    ),
    H(
        "http-extend-px-words",
        Req("POST", f"/s/{S}/extend", form={"extension_px": "ten"}),
        "extension_px",
        400,
    ),
    H("http-extend-overlap-negative", J(f"/s/{S}/extend", {"overlap_px": -1}), "overlap_px", 400),
    H(
        "http-extend-overlap-wider-than-canvas",
        J(f"/s/{S}/extend", {"extension_px": 8, "overlap_px": 4000}),
        "must be smaller than the canvas",
        400,
    ),
    H(
        "http-extend-unknown-direction",
        J(f"/s/{S}/extend", {"direction": "sideways"}),
        "direction",
        400,
    ),
    H("http-extend-unknown-seam", J(f"/s/{S}/extend", {"seam": "glue"}), "seam", 400),
    H("http-extend-unknown-backend", J(f"/s/{S}/extend", {"backend": "magic"}), "backend", 400),
    H("http-extend-unknown-quality", J(f"/s/{S}/extend", {"quality": "ultra"}), "quality", 400),
    H(
        "http-extend-unknown-model",
        J(f"/s/{S}/extend", {"backend": "openai", "model": "gpt-image-9", "extension_px": 16}),
        "unknown OpenAI image model",
        400,
    ),
    H(
        "http-extend-retired-model",
        J(f"/s/{S}/extend", {"backend": "openai", "model": "gpt-image-1", "extension_px": 16}),
        "gpt-image-2.5-sunburst",
        400,
    ),
    H(
        "http-estimate-px-zero",
        Req("GET", f"/s/{S}/estimate.json?extension_px=0"),
        "extension_px",
        400,
    ),
    # --- HTTP: bodies, CSRF, methods --------------------------------------------------------------
    H("http-json-malformed", RAW(f"/s/{S}/extend", "{not json"), "JSON", 400),
    H("http-json-array", RAW(f"/s/{S}/extend", "[1, 2]"), "JSON object", 400),
    H("http-json-null", RAW(f"/s/{S}/head", "null"), "JSON object", 400),
    H("http-json-bad-utf8", RAW(f"/s/{S}/branch", b'{"branch": "\xff\xfe"}'), "JSON", 400),
    H("http-json-deep-nesting", RAW(f"/s/{S}/extend", "[" * 100_000 + "]" * 100_000), "JSON", 400),
    H(
        "http-csrf-missing",
        J(f"/s/{S}/branch", {"branch": "x", "step": "<step0>"}, csrf="missing"),
        "missing CSRF",
        400,
    ),
    H(
        "http-csrf-wrong",
        J(f"/s/{S}/branch", {"branch": "x", "step": "<step0>"}, csrf="wrong"),
        "wrong CSRF",
        403,
    ),
    H(
        "http-csrf-not-in-session",
        J(f"/s/{S}/head", {"step": "<step0>"}, csrf="no-session"),
        "wrong CSRF",
        403,
    ),
    H(
        "http-csrf-wrong-new-session",
        Req("POST", "/-/new", form={"name": "fx", "fixture": "flat.png"}, csrf="wrong"),
        "wrong CSRF",
        403,
    ),
    H(
        "http-csrf-missing-retry",
        Req("POST", "/attempt/<attempt>/retry", csrf="missing"),
        "missing CSRF",
        400,
    ),
    H("http-get-on-extend", Req("GET", f"/s/{S}/extend"), "not allowed", 405),
    H("http-delete-session", Req("DELETE", f"/s/{S}"), "not allowed", 405),
    H("http-put-branch", Req("PUT", f"/s/{S}/branch"), "not allowed", 405),
    H("http-post-step-page", Req("POST", "/step/<step0>"), "not allowed", 405),
    H("http-events-for-garbage", Req("GET", f"/-/events/{S}?for=abc"), "for", 400),
    H("http-events-for-nan", Req("GET", f"/-/events/{S}?for=nan"), "for", 400),
    # the viewer as a network service: DNS rebinding, cross-origin writes, its secret
    H(
        "http-host-rebound-domain",
        Req("GET", "/index.json", headers={"Host": "rebind.attacker.example:5000"}),
        "is not served here",
        400,
    ),
    H(
        "http-host-rebound-extend",
        J(f"/s/{S}/extend", {"extension_px": 16}, headers={"Host": "rebind.attacker.example"}),
        "is not served here",
        400,
    ),
    H(
        "http-post-cross-site",
        J(
            f"/s/{S}/branch",
            {"branch": "x", "step": "<step0>"},
            headers={"Sec-Fetch-Site": "cross-site"},
        ),
        "may not change this store",
        403,
    ),
    H(
        "http-post-foreign-origin",
        J(f"/s/{S}/head", {"step": "<step0>"}, headers={"Origin": "http://attacker.example"}),
        "may not change this store",
        403,
    ),
    H("http-get-viewer-secret", Req("GET", "/viewer.secret"), "not found", 404),
    # --- HTTP: damage on disk -------------------------------------------------------------------
    H(
        "http-step-page-tampered",
        Req("GET", "/step/<step1>.json"),
        "damaged",
        setup=tamper_valid,
        damage=("damaged object <step1>",),
    ),
    H(
        "http-step-page-truncated",
        Req("GET", "/step/<step1>"),
        "object <step1>",
        setup=tamper_truncated,
        damage=("damaged object <step1>",),
    ),
    H(
        "http-session-page-truncated",
        Req("GET", f"/s/{S}.json"),
        "object <step1>",
        setup=tamper_truncated,
        damage=("damaged object <step1>",),
    ),
    H(
        "http-session-page-ref-garbage",
        Req("GET", f"/s/{S}"),
        REF_MESSAGE,
        404,
        setup=ref_text,
        damage=("bad ref garden/heads/main",),
    ),
    H(
        "http-session-page-ref-binary",
        Req("GET", f"/s/{S}"),
        REF_MESSAGE,
        404,
        setup=ref_binary,
        damage=("bad ref garden/heads/main",),
    ),
    H(
        "http-viewer-start-store-toml-garbage",
        Req("START"),
        "store.toml is damaged",
        setup=toml_garbage,
        damage=("store.toml",),
    ),
    # --- HTTP: links (410: damaged here, named; the linked file's bytes never sent) ---------------
    H(
        "http-linked-prompt-object",
        Req("GET", "/-/objects/<prompt1>"),
        LINKED,
        410,
        setup=link_prompt,
        damage=LINKED_PROMPT,
    ),
    H(
        "http-linked-prompt-step-page",
        Req("GET", "/step/<step1>.json"),
        LINKED,
        410,
        setup=link_prompt,
        damage=LINKED_PROMPT,
    ),
    H(
        "http-linked-session-page",
        Req("GET", f"/s/{S}.json"),
        f"refs/{S} {LINKED}",
        410,
        setup=link_session,
        damage=LINKED_SESSION,
    ),
    H(
        "http-ref-directory-branch",
        J(f"/s/{S}/branch", {"branch": "x", "step": "<step0>"}),
        X_DIR,
        410,
        setup=ref_dir_new,
        damage=X_BAD,
    ),
    # --- backends: what a model sends back ------------------------------------------------------
    B(
        "backend-garbage-base64",
        Answer("cli", (Behaviour("garbage_b64"),)),
        "DecodeError: backend output is not an image",
    ),
    B(
        "backend-zero-byte-image",
        Answer("cli", mangle=zero_bytes),
        "DecodeError: backend output is not an image",
    ),
    B(
        "backend-greyscale-image",
        Answer("cli", mangle=greyscale),
        "DecodeError: backend returned a L (greyscale) image",
    ),
    B(
        "backend-png-bomb-50000",
        Answer("cli", mangle=bomb_50000),
        "DecodeError: backend output is too large",
    ),
    B(
        "backend-truncated-png",
        Answer("cli", mangle=truncated),
        "DecodeError: backend output cannot be decoded",
    ),
    B("backend-one-pixel-image", Answer("cli", mangle=one_pixel), "DimensionMismatch"),
    B("backend-wrong-size", Answer("cli", (Behaviour("wrong_size"),)), "DimensionMismatch"),
    B(
        "backend-no-images",
        Answer("cli", mangle=no_images),
        "DecodeError: the backend returned no image",
    ),
    B(
        "backend-url-not-base64",
        Answer("cli", mangle=url_not_b64),
        "DecodeError: backend output is not an image",
    ),
    B(
        "backend-401",
        Answer("cli", (Behaviour("unauthorized"),)),
        "PermanentBackendError: OpenAI API error 401",
    ),
    # a prompt that, with the ~700 characters of instructions, would pass the model's
    # 32,000: refused before any call, nothing written
    Case(
        "backend-prompt-over-the-limit",
        "backend",
        Answer("cli", extra=("--prompt", "x" * 30_001)),
        "the prompt must be at most 30000 characters",
    ),
    B(
        "backend-refusal",
        Answer("cli", (Behaviour("moderation"),)),
        "SafetyRefusal: the model refused",
    ),
    B(
        "backend-500-three-times",
        Answer("cli", (Behaviour("server_error", headers=FAST),) * 3),
        "TransientBackendError: OpenAI API error 500 after 3 tries",
    ),
    B("backend-viewer-garbage-base64", Answer("http", (Behaviour("garbage_b64"),)), "DecodeError"),
    B("backend-viewer-png-bomb-50000", Answer("http", mangle=bomb_50000), "DecodeError"),
    B("backend-viewer-greyscale-image", Answer("http", mangle=greyscale), "greyscale"),
]


# --- running a case ---------------------------------------------------------------------------


def sub(value: Any, tokens: dict[str, str]) -> Any:
    """``<token>``s replaced in a string, recursively in lists and dicts."""
    if isinstance(value, str):
        for token, real in tokens.items():
            value = value.replace(token, real)
        return value
    if isinstance(value, list | tuple):
        return type(value)(sub(v, tokens) for v in value)
    if isinstance(value, dict):
        return {k: sub(v, tokens) for k, v in value.items()}
    return value


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file and folder under ``root``: folders as ``name/`` -> b"", files with bytes."""
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        out[rel + "/" if p.is_dir() else rel] = b"" if p.is_dir() else p.read_bytes()
    return out


@dataclass
class Outcome:
    problems: list[str] = field(default_factory=list)
    status: int | None = None
    traceback: bool = False


def _short(text: str) -> str:
    return repr(text[-400:])


def check_cli_output(case: Case, expect: str, code: int, out: str, got: Outcome) -> None:
    lines = out.splitlines()
    expect = expect.lower()
    if code == 0:
        got.problems.append(f"exit code 0: {_short(out)}")
    if case.form == "error":
        errors = [ln for ln in lines if ln.startswith("error:")]
        if len(errors) != 1 or not lines[-1].startswith("error:"):
            got.problems.append(f"no single closing 'error:' line: {_short(out)}")
        elif expect not in errors[0].lower():
            got.problems.append(f"the error does not say {case.expect!r}: {errors[0][:300]!r}")
        if code != 1:
            got.problems.append(f"exit code {code}, not 1")
    elif case.form == "usage":
        if code != 2 or not any(ln.startswith("Error:") and expect in ln.lower() for ln in lines):
            got.problems.append(f"no usage error about {case.expect!r}: {code} {_short(out)}")
    elif case.form == "report":
        if code != 1 or expect not in out.lower():
            got.problems.append(f"fsck did not report {case.expect!r}: {code} {_short(out)}")
    elif case.form == "failed":
        failed = [ln for ln in lines if ln.startswith("failed: ")]
        recorded = [
            ln
            for ln in lines
            if re.fullmatch(r"attempt [0-9a-f]{64} recorded; no branch moved", ln)
        ]
        if code != 1 or len(failed) != 1 or expect not in failed[0].lower() or len(recorded) != 1:
            got.problems.append(f"no 'failed: {case.expect}' and attempt line: {_short(out)}")


def run_cli(case: Case, root: Path, tokens: dict[str, str], env: dict[str, str]) -> Outcome:
    got = Outcome()
    if case.surface == "cli":
        args = sub(case.input, tokens)
    else:
        assert isinstance(case.input, Answer)
        args = (*OPENAI_STEP, *case.input.extra)
    res = CliRunner(env=env).invoke(cli, ["--store", str(root), *args])
    crashed = res.exception is not None and not isinstance(res.exception, SystemExit)
    if crashed or "Traceback" in res.output:
        got.traceback = True
        got.problems.append(f"traceback: {res.exception!r:.300}")
    check_cli_output(case, sub(case.expect, tokens), res.exit_code, res.output, got)
    return got


def viewer(root: Path):
    app = create_app({"EXQ_STORE": str(root), "TESTING": True})
    app.test_client_class = BufferedClient
    return app.test_client()


def multipart(fields: dict[str, str], content: bytes, filename: str) -> tuple[bytes, str]:
    """A multipart body in memory (the test client spools big ones to a file it never closes)."""
    boundary = "hostile-boundary-7c1f"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    )
    body = b"".join(parts) + head.encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def send(client, req: Req, tokens: dict[str, str]):
    token = "csrf-token-of-this-test-session"
    if req.csrf != "no-session":
        with client.session_transaction() as sess:
            sess["csrf"] = token
    headers = {"Accept": "application/json", "X-Requested-With": "fetch"}
    if req.csrf in ("ok", "no-session"):
        headers["X-CSRF-Token"] = token
    elif req.csrf == "wrong":
        headers["X-CSRF-Token"] = "forged-" + token
    headers.update(req.headers or {})
    kw: dict[str, Any] = {}
    if req.json is not None:
        kw["json"] = sub(req.json, tokens)
    elif req.body is not None:
        kw["data"], kw["content_type"] = req.body, req.content_type
    elif req.upload is not None:
        content, filename = req.upload
        kw["data"], kw["content_type"] = multipart(sub(req.form or {}, tokens), content(), filename)
    elif req.form is not None:
        kw["data"] = sub(dict(req.form), tokens)
    return client.open(sub(req.url, tokens), method=req.method, headers=headers, **kw)


def run_http(case: Case, root: Path, tokens: dict[str, str]) -> Outcome:
    got = Outcome()
    req = case.input
    assert isinstance(req, Req)
    if req.method == "START":
        try:
            viewer(root)
        except ExqError as exc:
            if case.expect.lower() not in exc.message.lower():
                got.problems.append(f"the viewer refused to start, but said {exc.message!r}")
        else:
            got.problems.append("the viewer started on a store it cannot read")
        return got
    client = viewer(root)
    resp = send(client, req, tokens)
    got.status = resp.status_code
    body = resp.get_data()
    if b"Traceback" in body:
        got.traceback = True
        got.problems.append("a traceback in the response")
    payload = resp.get_json(silent=True) if resp.is_json else None
    if resp.status_code == 202 and isinstance(payload, dict) and "job" in payload:
        wait_job(client, S, payload["job"])  # a refusal that was not: let it finish writing
    if not 400 <= resp.status_code < 500 or (case.status and resp.status_code != case.status):
        got.problems.append(
            f"status {resp.status_code}, not {case.status or '4xx'}: {body[:300]!r}"
        )
    reason = payload.get("error", "") if isinstance(payload, dict) else ""
    if sub(case.expect, tokens).lower() not in str(reason).lower():
        got.problems.append(f"the JSON body does not say {case.expect!r}: {body[:300]!r}")
    return got


def run_backend(case: Case, root: Path, tokens: dict[str, str], fake, monkeypatch) -> Outcome:
    answer = case.input
    assert isinstance(answer, Answer)
    fake.script(*answer.script)
    if answer.mangle is not None:
        real, mangle = openai_server.edit_response, answer.mangle

        def mangled(fields, images, mask, behaviour):
            body = real(fields, images, mask, behaviour)
            body["data"] = mangle(body["data"])
            return body

        monkeypatch.setattr(openai_server, "edit_response", mangled)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    if answer.channel == "cli":
        got = run_cli(case, root, tokens, {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake.base_url})
    else:
        got = Outcome()
        client = viewer(root)
        resp = send(client, Req("POST", f"/s/{S}/extend", json=OPENAI_JSON), tokens)
        got.status = resp.status_code
        if resp.status_code != 202:
            got.problems.append(f"extend answered {resp.status_code}: {resp.get_data()[:300]!r}")
            return got
        state = wait_job(client, S, resp.get_json()["job"])
        result = state.get("result", {})
        said = f"{result.get('kind')}: {result.get('message')}"
        if state["state"] != "failed" or case.expect.lower() not in said.lower():
            got.problems.append(f"the job did not fail with {case.expect!r}: {state}")
        aid = result.get("attempt_id", "")
        for url in (f"/attempt/{aid}", f"/attempt/{aid}.json"):
            page = client.get(url)
            if page.status_code != 200 or case.expect.encode() not in page.get_data():
                got.problems.append(f"{url} answered {page.status_code} without {case.expect!r}")
            if b"Traceback" in page.get_data():
                got.traceback = True
                got.problems.append(f"a traceback on {url}")
    if case.writes == "attempt" and len(fake.calls) == 0:
        got.problems.append("the fake model was never called")
    if case.writes == "none" and fake.calls:
        got.problems.append(f"the fake model was called {len(fake.calls)} times for a refusal")
    return got


def check_writes(case: Case, before: dict[str, bytes], after: dict[str, bytes]) -> list[str]:
    added = sorted(after.keys() - before.keys())
    removed = sorted(before.keys() - after.keys())
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    if case.writes == "none":
        return [f"wrote: +{added} -{removed} ~{changed}"] if added or removed or changed else []
    problems = []
    if removed:
        problems.append(f"removed {removed}")
    allowed = {LOGS + "events"} if case.writes == "events" else STEP_LOGS
    if case.writes == "attempt":  # an answer that came back is listed in the run cache
        allowed = allowed | {n for n in after if n.startswith(REQUEST_INDEX)}
    for name in changed:
        if name not in allowed or not after[name].startswith(before[name]):
            problems.append(f"changed {name}")
    for name in added:
        if case.writes == "events" or not (name.startswith("objects/") or name in allowed):
            problems.append(f"added {name}")
    appended = {
        name: [json.loads(ln) for ln in after[name][len(before.get(name, b"")) :].splitlines()]
        for name in allowed
        if name in after
    }
    events = appended.get(LOGS + "events", [])
    if not events or events[-1]["type"] != "failed":
        problems.append(f"the event log does not end with 'failed': {events[-1:]}")
    if case.writes == "attempt":
        lines = appended.get(LOGS + "attempts", [])
        if len(lines) != 1:
            problems.append(f"{len(lines)} attempts recorded, not 1")
        elif not any(lines[0]["id"] in name for name in added):
            problems.append("the attempt's manifest was not added")
    return problems


def check_fsck(case: Case, root: Path, template: Path, tokens: dict[str, str]) -> list[str]:
    if "nostore" in case.damage:
        return [f"{root} was created"] if root.exists() else []
    if "store.toml" in case.damage:  # put the original back: everything else must be intact
        (root / "store.toml").write_bytes((template / "store.toml").read_bytes())
    try:
        rep = fsck(Store.open(root))
    except Exception as exc:  # a crash here is a finding, not an error of the harness
        return [f"fsck crashed: {exc!r:.300}"]
    found = [f"damaged object {d}" for d in rep.damaged]
    found += [f"missing object {oid} (referenced by {p})" for p, oid in rep.missing]
    found += [f"bad ref {b}" for b in rep.bad_refs]
    found += [f"unsafe path {u}" for u in rep.unsafe]
    expected = [sub(d, tokens) for d in case.damage if d not in ("store.toml", "nostore")]
    problems = [f"fsck found {f[:200]!r}" for f in found if not any(e in f for e in expected)]
    problems += [f"fsck missed {e!r}" for e in expected if not any(e in f for f in found)]
    return problems


# --- the test -----------------------------------------------------------------------------------

RESULTS: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A store with a session (steps, a 2-candidate branch, an attempt), fsck-clean."""
    root = tmp_path_factory.mktemp("hostile") / "template"
    w = make_session(root, S)
    prompt1 = w["store"].step(w["steps"][1]).recipe.prompt_id

    # a store the viewer has served holds its secret (viewer.secret, made once); a
    # refused request must add nothing else
    create_app({"EXQ_STORE": str(root), "TESTING": True})
    assert (root / "viewer.secret").exists()
    tokens = {
        "<step0>": w["steps"][0],
        "<step1>": w["steps"][1],
        "<prompt1>": prompt1,
        "<pp1>": prompt1[:2],
        "<STEP0>": w["steps"][0].upper(),
        "<attempt>": w["attempt"],
        "<fixtures>": str(FIXTURES),
    }
    try:
        rep = fsck(Store.open(root))
    except Exception as exc:  # the harness cannot judge any case on a store fsck cannot read
        pytest.fail(f"fsck crashed on the template store: {exc!r:.300}")
    assert rep.ok and not rep.dangling, rep
    return root, tokens


def _param(case: Case):
    marks = [pytest.mark.xfail(strict=True, reason="BUG: " + case.bug)] if case.bug else []
    return pytest.param(case, id=case.id, marks=marks)


def test_the_table_is_well_formed() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    assert len(CASES) >= 40
    assert {c.surface for c in CASES} == {"cli", "http", "backend"}
    for c in CASES:
        assert c.id.startswith(c.surface), c.id
        assert c.writes in ("none", "events", "attempt") and c.expect


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_hostile(case: Case, template, tmp_path: Path, request, monkeypatch) -> None:
    base, tokens = template
    root = tmp_path / "store"
    shutil.copytree(base, root)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, content in case.files.items():
        (inputs / name).write_bytes(content())
    tokens = tokens | {"<in>": str(inputs), "<store>": str(root)}
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", NOWHERE)
    if case.setup is not None:
        case.setup(root, tokens)
    before = snapshot(root)

    if case.surface == "cli":
        got = run_cli(case, root, tokens, {"OPENAI_BASE_URL": NOWHERE})
    elif case.surface == "http":
        got = run_http(case, root, tokens)
    else:
        fake = request.getfixturevalue("fake_openai")
        got = run_backend(case, root, tokens, fake, monkeypatch)

    wrote = check_writes(case, before, snapshot(root))
    lost = check_fsck(case, root, base, tokens)
    RESULTS[case.id] = {
        "surface": case.surface,
        "5xx": int(got.status is not None and got.status >= 500),
        "traceback": int(got.traceback),
        "wrote": int(bool(wrote)),
        "bug": case.bug,
    }
    problems = got.problems + [f"writes: {w}" for w in wrote] + [f"lost: {x}" for x in lost]
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module", autouse=True)
def _figures():
    """The summary line, when the whole table ran (printed at the end of the run)."""
    yield
    if len(RESULTS) < len(CASES):
        return
    figures.record(
        "hostile",
        {
            "cases": len(RESULTS),
            "5xx": sum(r["5xx"] for r in RESULTS.values()),
            "tracebacks": sum(r["traceback"] for r in RESULTS.values()),
            "writes-when-refused": sum(r["wrote"] for r in RESULTS.values()),
            "per_surface": {
                s: sum(r["surface"] == s for r in RESULTS.values())
                for s in ("cli", "http", "backend")
            },
            "known_bugs": sorted(k for k, r in RESULTS.items() if r["bug"]),
        },
    )
