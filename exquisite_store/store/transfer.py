"""Copy objects between two stores: what one side lacks of a set of roots, children first.

A store writes an object only after everything it points at (tiles before canvas
nodes, the canvas before its step, a parent step before its child) and a ref only after
its step. So an object present on the other side stands for its whole closure, and a
walk from the roots stops at the first object the other side has: a push of one new
step on a long branch looks at that step's few new objects and its parent, no more.

One pass: each missing object is read once, rehashed (a damaged one is never copied,
and nothing that points at it is), and written after everything it points at, so the
receiving side holds only whole closures at every instant. Only the manifests on the
current path wait in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from exquisite_store import manifests
from exquisite_store.errors import IntegrityError, ManifestError, NotFound
from exquisite_store.ids import EXTENSIONS, check_id
from exquisite_store.store.reach import references
from exquisite_store.store.store import Store


@dataclass
class Transfer:
    """What one copy did: objects copied and their bytes, objects found already there."""

    copied: int = 0
    bytes: int = 0
    present: int = 0


def copy_closure(
    src: Store,
    dst: Store,
    roots: Iterable[str],
    progress: Callable[[Transfer], None] | None = None,
) -> Transfer:
    """Copy to ``dst`` everything reachable from ``roots`` in ``src`` that it lacks.

    NotFound if ``src`` lacks an object it refers to; IntegrityError names an object
    whose bytes do not hash to its id. Either way nothing pointing at it was copied.
    """
    out = Transfer()
    seen: set[str] = set()
    for root in roots:
        stack: list[tuple[str, bytes | None]] = [(check_id(root), None)]
        while stack:
            oid, ready = stack.pop()
            if ready is not None:  # everything it points at is there now
                _put(dst, oid, "json", ready, out, progress)
                continue
            if oid in seen:
                continue
            seen.add(oid)
            if dst.storage.has_object(oid):
                out.present += 1
                continue
            kind, data = _read(src, oid)
            if kind != "json":
                _put(dst, oid, kind, data, out, progress)
                continue
            stack.append((oid, data))
            stack.extend((ref, None) for ref in references(manifests.decode(data)))
    return out


def _read(src: Store, oid: str) -> tuple[str, bytes]:
    try:
        kind, data = src.objects.get_bytes(oid, verify=True)
        if kind == "json":
            manifests.decode(data)
    except NotFound:
        raise NotFound(f"object {oid} is missing from the source store", oid=oid) from None
    except IntegrityError as exc:
        raise IntegrityError(f"refusing to copy: {exc.message}", expected=oid, got=exc.got) from exc
    except ManifestError as exc:
        raise IntegrityError(
            f"refusing to copy: object {oid} is damaged: {exc.message}", expected=oid, got="?"
        ) from exc
    return kind, data


def _put(
    dst: Store,
    oid: str,
    kind: str,
    data: bytes,
    out: Transfer,
    progress: Callable[[Transfer], None] | None,
) -> None:
    if dst.storage.put_object(oid, EXTENSIONS[kind], data):
        out.copied += 1
        out.bytes += len(data)
    else:
        out.present += 1
    if progress is not None:
        progress(out)
