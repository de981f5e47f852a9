"""Every manifest and record the store hashes: msgspec Structs on one frozen base.

Encoded with ``msgspec.json.encode(obj, order="sorted")``; no floats anywhere (money
in integer micro-dollars, scores in per-mille), so the bytes, and so the ids, are
canonical. New fields get defaults so older manifests still decode.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from exquisite_store.errors import ManifestError
from exquisite_store.params import (
    MAX_CONTEXT_PX,
    MAX_EXTENSION_PX,
    MAX_MODEL_ID,
    MAX_N,
    MAX_SEED,
    BackendName,
    Direction,
    ImmutablePolicy,
    InputFidelity,
    Quality,
    SeamStrategy,
)

SCHEMA_VERSION = 1


class Base(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Settings shared by every record."""


class Manifest(Base, tag_field="kind", kw_only=True):
    """A stored, hashed record; ``kind`` tags the union."""

    schema_version: int = SCHEMA_VERSION


# --- canvases -----------------------------------------------------------------


#: the schema of a canvas whose tiles hang off a tree of ``CanvasNode`` objects
CANVAS_TREE_SCHEMA = 2


class Canvas(Manifest, tag="canvas", kw_only=True):
    """A canvas on the plane: its rectangle and its tiles on a grid anchored at the origin.

    A tile is the cell ``[col*T, (col+1)*T) x [row*T, ...)`` intersected with the
    rectangle, so a tile that an edit does not touch keeps its id.

    - schema 1 (flat): ``tiles`` lists ``(col, row, image id)`` of every cell, sorted by
      row then col; every step writes the whole list again.
    - schema 2 (tree): ``root`` is a ``CanvasNode``; the tiles hang off a tree of them
      (``store/canvas_tree.py``), and ``recent`` lists the few tiles changed since the
      tree was last written, so a step usually writes no node at all and otherwise only
      the nodes above the tiles it folds in. ``tiles`` is empty.
    """

    x: int
    y: int
    width: int
    height: int
    mode: str
    tile_size: int
    tiles: tuple[tuple[int, int, str], ...] = ()
    root: str | UnsetType = UNSET
    #: schema 2: tiles changed since the tree was last written, ``(col, row, id)``;
    #: they override the tree's (a few steps' changes ride here before being folded in)
    recent: tuple[tuple[int, int, str], ...] | UnsetType = UNSET


class CanvasNode(Manifest, tag="canvas_node", kw_only=True):
    """One node of a canvas tree: up to 8 x 8 children, each a node or (level 1) a tile.

    ``children`` are ``(col, row, id)`` at the level below, in the tree's coordinates
    (``store/canvas_tree.py``), sorted by row then col; a node is shared by every
    canvas whose tiles under it are the same.
    """

    schema_version: int = CANVAS_TREE_SCHEMA
    level: int
    children: tuple[tuple[int, int, str], ...]


# --- steps --------------------------------------------------------------------


class StepParams(Base, kw_only=True):
    """What a step accepts, with its defaults: the one definition (``params`` has the limits).

    Forms, CLI options, the JSON API and ``exq defaults`` are all parsed into it
    (``pipeline.params.merge``). ``input_fidelity`` is UNSET unless given, and an
    UNSET field is not encoded, so sessions that never set it keep their ids.
    """

    direction: Direction = "right"
    extension_px: Annotated[int, Meta(ge=1, le=MAX_EXTENSION_PX)] = 256
    overlap_px: Annotated[int, Meta(ge=0, le=MAX_EXTENSION_PX)] = 32
    context_px: Annotated[int, Meta(ge=1, le=MAX_CONTEXT_PX)] | None = None
    immutable_policy: ImmutablePolicy = "outside-seam"
    seam: SeamStrategy = "match"
    backend: BackendName = "patchmatch"
    model: Annotated[str, Meta(max_length=MAX_MODEL_ID)] = ""
    quality: Quality = "auto"
    n: Annotated[int, Meta(ge=1, le=MAX_N)] = 1
    seed: Annotated[int, Meta(ge=0, le=MAX_SEED)] | None = None
    input_fidelity: InputFidelity | UnsetType = UNSET


class Usage(Base, kw_only=True):
    """Token usage as the provider reported it (zeros when the backend is local)."""

    input_text_tokens: int = 0
    input_image_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class RepairOf(Base, kw_only=True):
    """What a repair step repaints: the seam a step made, and how wide a band around it."""

    #: the step whose seam this is (the step that grew the canvas there)
    step: str
    #: the seam line on the plane: x for right/left steps, y for up/down
    seam_at: int
    width_px: int


class Recipe(Base, kw_only=True):
    """What was asked: with the parent canvas id, its hash is the recipe id.

    A repair step's recipe names the seam it repaints in ``repair`` (its ``direction``
    is the repaired step's, ``extension_px`` the band's width); UNSET, and so not
    encoded, for every step that grows the canvas, keeping their ids.
    """

    direction: str
    extension_px: int
    overlap_px: int
    context_px: int
    immutable_policy: str
    seam: str
    prompt_id: str
    backend: str
    model: str
    quality: str = "auto"
    seed: int = 0
    n: int = 1
    params: dict[str, str] = {}
    repair: RepairOf | UnsetType = UNSET


class Request(Base, kw_only=True):
    """What was actually sent to the backend."""

    request_id: str
    context_id: str
    frame_id: str
    mask_id: str
    final_prompt_id: str
    frame_width: int
    frame_height: int
    scale_num: int = 1
    scale_den: int = 1


class Response(Base, kw_only=True):
    """What came back for this candidate."""

    response_id: str = ""
    output_id: str = ""
    candidate: int = 0
    metadata_id: str = ""
    usage: Usage = Usage()
    cost_micro_usd: int = 0
    provider_request_id: str = ""


class SeamCheck(Base, kw_only=True):
    """How the model's output lined up with its context, and the seam's defects (issue 15).

    Shifts are the model's, in plane pixels x 1000 (x right, y down), found by
    registering its rendering of the context on the true one, and undone before the
    seam; ``scale_ppm`` is its worst scale deviation (parts per million);
    ``registered`` is False when the context was too flat to register on.
    ``detail_permille``: the true fine detail the model's rendering keeps.
    The defects (milli-levels) make the seam score: colour step, structure, an edge
    only on the seam line, over the texture at the seam. ``jump_permille`` is the
    seam score as it was before (the jump across the seam over its neighbours').
    ``band_mean_milli``: the new band's mean colour per channel (for the drift report).
    """

    shift_x_milli: int = 0
    shift_y_milli: int = 0
    scale_ppm: int = 0
    registered: bool = False
    detail_permille: int = 1000
    colour_milli: int = 0
    structure_milli: int = 0
    edge_milli: int = 0
    texture_milli: int = 0
    jump_permille: int = 0
    band_mean_milli: tuple[int, ...] = ()


class Scores(Base, kw_only=True):
    """Seam and drift scores, integers (per-mille / milli-levels).

    Steps made since issue 15 carry ``seam`` (UNSET, so not encoded, in older ones,
    whose ids stay), and their ``seam_permille`` is the defect score (see SeamCheck).
    """

    seam_permille: int = 0
    parent_seam_permille: int = 0
    drift_mean_abs_milli: int = 0
    drift_changed_permille: int = 0
    corrected_drift_mean_abs_milli: int = 0
    corrected_drift_changed_permille: int = 0
    gain_milli: tuple[int, ...] = ()
    offset_milli: tuple[int, ...] = ()
    #: a repair: the seam's score on the parent before it (``seam_permille`` is after)
    seam_before_permille: int | UnsetType = UNSET
    seam: SeamCheck | UnsetType = UNSET


class Result(Base, kw_only=True):
    """The committed canvas and its checks."""

    canvas_id: str
    width: int
    height: int
    validation_id: str = ""
    scores: Scores = Scores()


class Timing(Base, kw_only=True):
    """When the step started (ms since the epoch) and how long each phase took."""

    started_ms: int = 0
    phases_ms: dict[str, int] = {}


class Step(Manifest, tag="step", kw_only=True):
    """One committed extension (or, with no parent, the imported start image)."""

    session: str
    parent: str | None = None
    created_ms: int = 0
    source_name: str = ""
    recipe: Recipe | None = None
    recipe_id: str = ""
    request: Request | None = None
    response: Response | None = None
    result: Result
    timing: Timing = Timing()
    #: a root step: what the import did to the start image (rotated, converted, ...);
    #: UNSET (and so not encoded) when it did nothing, keeping such roots' ids
    import_notes: tuple[str, ...] | UnsetType = UNSET
    #: who made it (the signed-in user, EXQ_AUTHOR, or the store's user.name); UNSET
    #: (not encoded) when nobody said, so older steps keep their ids and read "unknown"
    author: str | UnsetType = UNSET


class Attempt(Manifest, tag="attempt", kw_only=True):
    """A step that failed generation or validation: recorded, never a parent."""

    session: str
    parent: str | None = None
    branch: str = ""
    created_ms: int = 0
    failure_kind: str
    message: str
    recipe: Recipe | None = None
    recipe_id: str = ""
    request: Request | None = None
    response: Response | None = None
    validation_id: str = ""
    timing: Timing = Timing()
    #: a whole step that was stored but could not move its branch (BranchMoved)
    step_id: str = ""
    details: dict[str, str] = {}
    author: str | UnsetType = UNSET


class Session(Manifest, tag="session", kw_only=True):
    """A named tree of steps: title, creation time, defaults, root, budget."""

    name: str
    title: str = ""
    created_ms: int = 0
    root: str
    defaults: StepParams = StepParams()
    budget_micro_usd: int | None = None


class Check(Base, kw_only=True):
    """One named validation check."""

    name: str
    ok: bool
    detail: str = ""


class Validation(Manifest, tag="validation", kw_only=True):
    """The machine-readable validation report of a step or attempt."""

    ok: bool
    checks: tuple[Check, ...] = ()
    expected_width: int = 0
    expected_height: int = 0
    immutable_mismatch_px: int = 0
    scores: Scores = Scores()


class BackendResponse(Manifest, tag="response", kw_only=True):
    """A backend's whole answer to one request, kept so replay can answer it again."""

    request_id: str
    backend: str
    model: str = ""
    output_ids: tuple[str, ...] = ()
    usage: Usage = Usage()
    cost_micro_usd: int = 0
    provider_request_id: str = ""
    metadata: dict[str, str] = {}


class Plan(Manifest, tag="plan", kw_only=True):
    """Unattended growth of one branch (``exq grow``), step by step, durable across kills.

    Step ``k`` calls with seed ``seed + k * SEED_STRIDE`` (its ``t``-th retry adds
    ``t``), so running it again after a kill sends the same request: the run cache
    answers a call that was already made. Stops after ``steps`` steps (0: no count),
    when the canvas is at least ``until_width`` x ``until_height`` (0: no size), when
    the plan's steps have cost ``budget_micro_usd``, or at the session's budget.
    """

    session: str
    branch: str
    start: str
    created_ms: int = 0
    steps: int = 0
    until_width: int = 0
    until_height: int = 0
    directions: tuple[Direction, ...] = ("right",)
    candidates: Annotated[int, Meta(ge=1, le=MAX_N)] = 1
    pick: Literal["best", "first"] = "best"
    budget_micro_usd: int | None = None
    max_seam_permille: int | None = None
    #: repair a committed step's seam when its score is above this (UNSET: never)
    repair_above_permille: int | UnsetType = UNSET
    params: StepParams = StepParams()
    prompt_id: str = ""
    seed: Annotated[int, Meta(ge=0, le=MAX_SEED)] = 0
    author: str | UnsetType = UNSET


class Member(Base, kw_only=True):
    """A user of a shared viewer: a name and a role (viewer < editor < admin)."""

    name: str
    role: Literal["viewer", "editor", "admin"]
    created_ms: int = 0
    revoked: bool = False
    #: the most this user may spend in one session (micro-dollars; None: no own limit)
    budget_micro_usd: int | None = None


class Secret(Base, kw_only=True):
    """An API token or a share link: only its slow salted hash is kept (scrypt)."""

    id: str
    salt: str
    hash: str
    created_ms: int = 0
    revoked: bool = False
    #: a token: whose it is
    user: str = ""
    #: a share link: the session (and branch) it shows, read-only, until when
    session: str = ""
    branch: str = ""
    expires_ms: int = 0
    private: bool = False


class Team(Manifest, tag="team", kw_only=True):
    """Who may use a shared store's viewer: users, their tokens, share links."""

    members: tuple[Member, ...] = ()
    tokens: tuple[Secret, ...] = ()
    shares: tuple[Secret, ...] = ()


class StepNote(Base, kw_only=True):
    """What a person said about one step: a star, tags, a free-text note."""

    starred: bool = False
    tags: tuple[str, ...] = ()
    note: str = ""


class Annotations(Manifest, tag="annotations", kw_only=True):
    """A session's annotations, like git notes: ``{step id: StepNote}``, replaced whole.

    The step ids are keys, not references: a note keeps no step from gc, and a bundle
    or a push does not carry a step because it was starred.
    """

    session: str
    notes: dict[str, StepNote] = {}


AnyManifest = (
    Canvas
    | CanvasNode
    | Step
    | Attempt
    | Session
    | Validation
    | BackendResponse
    | Plan
    | Annotations
    | Team
)

_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder(AnyManifest)


def encode(obj: Manifest) -> bytes:
    """Canonical bytes of a manifest."""
    return _encoder.encode(obj)


def decode(data: bytes) -> AnyManifest:
    """Decode a manifest; any malformed input raises ManifestError, nothing else."""
    try:
        return _decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"not a valid manifest: {exc}") from exc


def hash_input(*parts: Any) -> bytes:
    """Canonical bytes of several values, for ids of things that are not stored."""
    return _encoder.encode(list(parts))


def to_builtins(obj: Any) -> Any:
    """Plain dicts/lists for display (sorted keys)."""
    return msgspec.to_builtins(obj, order="sorted")
