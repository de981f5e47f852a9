"""The original plan's per-step folder layout, written beside the static site.

``steps/0001/input_canvas.png, context.png, mask.png, api_output.png,
output_canvas.png, step.json, validation.json`` (``failure.txt`` for attempts), with
``session.json`` and ``canvas_latest.png`` at the top: HEAD's branch at the top of
the export, every branch under ``branches/<name>/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from exquisite_store import imageio
from exquisite_store.manifests import Attempt, Step, Validation, to_builtins
from exquisite_store.store import Store

Put = Callable[[str, bytes], None]


def _png(store: Store, oid: str) -> bytes:
    return imageio.encode_png(imageio.from_array(store.objects.get_image(oid)), compress_level=6)


def _canvas(store: Store, step: Step) -> bytes:
    return imageio.encode_png(imageio.from_array(store.canvas_pixels(step)), compress_level=6)


def _json(obj) -> bytes:
    return json.dumps(to_builtins(obj), indent=2, sort_keys=True).encode()


def branch_entries(store: Store, session: str, head: str) -> list[tuple[str, object]]:
    """``(id, Step | Attempt)`` along a branch from the root, each step after its failed tries."""
    chain = list(reversed(list(store.history(head))))
    tries: dict[str, list[tuple[str, Attempt]]] = {}
    for line in store.attempts(session):
        att = store.objects.get_manifest(line.id, Attempt)
        if att.parent:
            tries.setdefault(att.parent, []).append((line.id, att))
    out: list[tuple[str, object]] = []
    for i, (sid, step) in enumerate(chain):
        if i > 0:
            out.extend(tries.get(step.parent or "", []))
            out.append((sid, step))
    if chain:
        out.extend(tries.get(chain[-1][0], []))  # failed tries from the head
    return out


def write_branch(store: Store, session: str, branch: str, prefix: str, put: Put) -> None:
    """The seed's layout of one branch under ``prefix``."""
    head = store.refs.head(session, branch)
    entries = branch_entries(store, session, head)
    put(
        f"{prefix}session.json",
        json.dumps(
            {
                "session": to_builtins(store.session(session)),
                "branch": branch,
                "head": head,
                "steps": [
                    {"n": i + 1, "id": eid, "kind": type(e).__name__.lower()}
                    for i, (eid, e) in enumerate(entries)
                ],
            },
            indent=2,
            sort_keys=True,
        ).encode(),
    )
    put(f"{prefix}canvas_latest.png", _canvas(store, store.step(head)))
    for i, (eid, entry) in enumerate(entries):
        d = f"{prefix}steps/{i + 1:04d}/"
        parent = store.step(entry.parent) if entry.parent else None
        if parent is not None:
            put(d + "input_canvas.png", _canvas(store, parent))
        req, resp = entry.request, entry.response
        if req is not None:
            put(d + "context.png", _png(store, req.context_id))
            put(d + "mask.png", _png(store, req.mask_id))
        if resp is not None and resp.output_id:
            put(d + "api_output.png", _png(store, resp.output_id))
        put(
            d + "step.json",
            _json(entry)
            if not isinstance(entry, Step)
            else json.dumps({"id": eid, **to_builtins(entry)}, indent=2, sort_keys=True).encode(),
        )
        vid = entry.result.validation_id if isinstance(entry, Step) else entry.validation_id
        if vid and store.objects.has(vid):
            put(d + "validation.json", _json(store.objects.get_manifest(vid, Validation)))
        if isinstance(entry, Step):
            put(d + "output_canvas.png", _canvas(store, entry))
        else:
            put(
                d + "failure.txt",
                f"{entry.failure_kind}: {entry.message}\nattempt {eid}\n".encode(),
            )


def seed_layout(store: Store, session: str, branches: list[str], current: str, put: Put) -> None:
    """HEAD's branch (or the first exported one) at the top; every branch under branches/."""
    top = current if current in branches else branches[0]
    write_branch(store, session, top, "", put)
    for b in branches:
        write_branch(store, session, b, f"branches/{b}/", put)
