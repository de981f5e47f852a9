"""Canvas trees (schema 2): tiles hang off nodes of 8 x 8 children, like git trees.

A level-1 node holds up to 8 x 8 tiles, a level-2 node up to 8 x 8 level-1 nodes,
and so on; the canvas manifest names the root. Nodes sit on a grid of the plane, so
a node whose tiles an edit does not touch keeps its id and is shared by every canvas
after it. An edit stores the tiles it changes and the nodes above them (path
copying): O(changed tiles x depth) bytes of metadata, never O(canvas). A node stores
its children's places within it (0..7 each way); its own place follows from the path.
Looking up or composing a region descends only into nodes that intersect it.

Between tree writes, a canvas carries the few tiles changed since (``recent``, at most
RECENT_LIMIT): most steps write only the canvas manifest and their tiles, and every
few steps the gathered tiles are folded into the tree.

Coordinates: a tile ``(col, row)`` is ``(col + OFFSET, row + OFFSET)`` in the tree,
and the level-k block of a tree coordinate ``u`` is ``u // 8**k``. OFFSET puts the
plane's origin near the middle of its block at every level (not on a block edge), so
a canvas that grows both left and right of the origin still fits under one root a
level or so above what its size needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from msgspec import UNSET

from exquisite_store.errors import CompositeError
from exquisite_store.geometry.rect import Rect
from exquisite_store.manifests import CANVAS_TREE_SCHEMA, Canvas, CanvasNode
from exquisite_store.store.objects import ObjectStore

FANOUT = 8
MAX_LEVEL = 12
#: (FANOUT/2) * (1 + FANOUT + ... + FANOUT**(MAX_LEVEL-1)): the origin sits at ~4/7 of
#: its block at every level
OFFSET = (FANOUT // 2) * (FANOUT**MAX_LEVEL - 1) // (FANOUT - 1)

Pos = tuple[int, int]


def _block(u: int, v: int, level: int) -> Pos:
    """The level-``level`` block holding tree coordinate ``(u, v)`` (level 0: the tile)."""
    span = FANOUT**level
    return u // span, v // span


def tile_range(rect: Rect, tile_size: int) -> tuple[int, int, int, int]:
    """Tiles ``col0..col1, row0..row1`` (inclusive) that cover a non-empty rectangle."""
    t = tile_size
    return rect.x // t, (rect.right - 1) // t, rect.y // t, (rect.bottom - 1) // t


def root_position(rect: Rect, tile_size: int) -> tuple[int, Pos]:
    """The level and block of the smallest node holding every tile of ``rect``."""
    c0, c1, r0, r1 = tile_range(rect, tile_size)
    lo = (c0 + OFFSET, r0 + OFFSET)
    hi = (c1 + OFFSET, r1 + OFFSET)
    for level in range(1, MAX_LEVEL + 1):
        if _block(*lo, level) == _block(*hi, level):
            return level, _block(*lo, level)
    raise CompositeError(f"a canvas of {rect.w}x{rect.h} is too large for a canvas tree")


def children_of(
    objects: ObjectStore, node_id: str, level: int, block: Pos
) -> list[tuple[int, int, str]]:
    """The children ``(u, v, id)`` of the node at ``(level, block)``, in tree coordinates.

    A node stores its children's places within it (0 to FANOUT - 1 each way), which
    keeps it small; its own place comes from the path that led to it.
    """
    node = objects.get_manifest(node_id, CanvasNode)
    if node.level != level:
        raise CompositeError(f"canvas node {node_id[:12]} is at level {node.level}, not {level}")
    u0, v0 = block[0] * FANOUT, block[1] * FANOUT
    out = []
    for du, dv, child in node.children:
        if not (0 <= du < FANOUT and 0 <= dv < FANOUT):
            raise CompositeError(f"canvas node {node_id[:12]} has a child outside it")
        out.append((u0 + du, v0 + dv, child))
    return out


def recent_of(canvas: Canvas) -> dict[Pos, str]:
    """The canvas's recent tiles by ``(col, row)`` (empty when there are none)."""
    recent = canvas.recent if isinstance(canvas.recent, tuple) else ()
    return {(c, r): oid for c, r, oid in recent}


def iter_tiles(
    objects: ObjectStore, canvas: Canvas, rect: Rect | None = None
) -> Iterator[tuple[int, int, str]]:
    """``(col, row, tile id)`` of the tiles meeting ``rect`` (all when None), row by row.

    Only the nodes over ``rect`` are read; a recent tile overrides the tree's.
    """
    recent = recent_of(canvas)
    tiles = {(c, r): oid for c, r, oid in _tree_tiles(objects, canvas, rect)}
    if recent:
        full = Rect(canvas.x, canvas.y, canvas.width, canvas.height)
        area = full if rect is None else full.intersect(rect)
        if not area.empty:
            c0, c1, r0, r1 = tile_range(area, canvas.tile_size)
            for (c, r), oid in recent.items():
                if c0 <= c <= c1 and r0 <= r <= r1:
                    tiles[(c, r)] = oid
    for (c, r), oid in sorted(tiles.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        yield c, r, oid


def _tree_tiles(
    objects: ObjectStore, canvas: Canvas, rect: Rect | None = None
) -> list[tuple[int, int, str]]:
    """The tree's own tiles meeting ``rect`` (recent ones not applied)."""
    full = Rect(canvas.x, canvas.y, canvas.width, canvas.height)
    area = full if rect is None else full.intersect(rect)
    if area.empty:
        return []
    c0, c1, r0, r1 = tile_range(area, canvas.tile_size)
    lo, hi = (c0 + OFFSET, r0 + OFFSET), (c1 + OFFSET, r1 + OFFSET)
    level, pos = root_position(full, canvas.tile_size)
    found: list[tuple[int, int, str]] = []
    stack = [(level, pos, str(canvas.root))]
    while stack:
        level, block, node_id = stack.pop()
        b_lo, b_hi = _block(*lo, level - 1), _block(*hi, level - 1)
        for u, v, child in children_of(objects, node_id, level, block):
            if not (b_lo[0] <= u <= b_hi[0] and b_lo[1] <= v <= b_hi[1]):
                continue
            if level == 1:
                found.append((u - OFFSET, v - OFFSET, child))
            else:
                stack.append((level - 1, (u, v), child))
    return found


def _cell_pixel(canvas: Canvas, col: int, row: int) -> Rect:
    """One pixel of the canvas inside a grid cell (empty if the cell is outside it).

    Not the cell's corner: where the canvas does not start on a grid line (it grew
    left or up), the corner of its first row or column of cells lies outside it.
    """
    t = canvas.tile_size
    part = Rect(col * t, row * t, t, t).intersect(
        Rect(canvas.x, canvas.y, canvas.width, canvas.height)
    )
    return Rect(part.x, part.y, 1, 1) if not part.empty else part


def tile_at(objects: ObjectStore, canvas: Canvas, col: int, row: int) -> str:
    """The id of one tile (reads the nodes on its path only)."""
    pixel = _cell_pixel(canvas, col, row)
    if not pixel.empty:
        for c, r, oid in iter_tiles(objects, canvas, pixel):
            if (c, r) == (col, row):
                return oid
    raise CompositeError(f"canvas has no tile at ({col}, {row})")


def differing_tiles(
    objects: ObjectStore, parent: Canvas, child: Canvas
) -> Iterator[tuple[int, int, str]]:
    """Tiles of ``child`` not in ``parent`` at the same cell; shared subtrees are skipped.

    The cells that can differ are those under tree nodes the two do not share, and
    the recent tiles of either; each is compared as the two canvases show it.
    """
    candidates = {(c, r) for c, r, _ in _tree_differences(objects, parent, child)}
    candidates |= set(recent_of(parent)) | set(recent_of(child))
    found = []
    for c, r in candidates:
        here = _cell_pixel(child, c, r)
        if here.empty:
            continue
        new = next((oid for _, _, oid in iter_tiles(objects, child, here)), None)
        if new is None:
            continue
        there = _cell_pixel(parent, c, r)
        old = None
        if not there.empty:
            old = next((oid for _, _, oid in iter_tiles(objects, parent, there)), None)
        if old != new:
            found.append((c, r, new))
    found.sort(key=lambda x: (x[1], x[0]))
    yield from found


def _tree_differences(
    objects: ObjectStore, parent: Canvas, child: Canvas
) -> list[tuple[int, int, str]]:
    """Tiles of ``child``'s tree not in ``parent``'s tree at the same cell."""
    plevel, ppos = root_position(
        Rect(parent.x, parent.y, parent.width, parent.height), parent.tile_size
    )
    memo: dict[tuple[int, Pos], str | None] = {}

    def parent_node(level: int, block: Pos) -> str | None:
        """The parent tree's node id at (level, block), or None."""
        key = (level, block)
        if key not in memo:
            if level > plevel:
                memo[key] = None
            elif level == plevel:
                memo[key] = str(parent.root) if block == ppos else None
            else:
                up = (block[0] // FANOUT, block[1] // FANOUT)
                above = parent_node(level + 1, up)
                if above is None:
                    memo[key] = None
                else:
                    kids = children_of(objects, above, level + 1, up)
                    memo[key] = next((c for u, v, c in kids if (u, v) == block), None)
        return memo[key]

    clevel, cpos = root_position(Rect(child.x, child.y, child.width, child.height), child.tile_size)
    found: list[tuple[int, int, str]] = []
    stack = [(clevel, cpos, str(child.root))]
    while stack:
        level, block, node_id = stack.pop()
        if parent_node(level, block) == node_id:
            continue  # the same subtree: every tile under it is the parent's
        for u, v, c in children_of(objects, node_id, level, block):
            if level == 1:
                if parent_node(0, (u, v)) != c:
                    found.append((u - OFFSET, v - OFFSET, c))
            else:
                stack.append((level - 1, (u, v), c))
    return found


#: tiles a canvas may carry in ``recent`` before they are folded into its tree: a step
#: usually changes a couple of tiles, so most steps write no node at all
RECENT_LIMIT = 6


def grow(
    objects: ObjectStore,
    parent: Canvas,
    new_rect: Rect,
    changed: Mapping[Pos, str],
    base: Mapping[str, object],
) -> Canvas:
    """The tree canvas over ``new_rect``: the parent's tiles with ``changed`` ones replaced.

    The changed tiles join the parent's recent ones; only when there are more than
    RECENT_LIMIT of them, or the canvas outgrows its root's block, are they folded into
    the tree (the nodes above them written again).
    """
    recent = recent_of(parent)
    recent.update(changed)
    t = parent.tile_size
    same_root = root_position(
        Rect(parent.x, parent.y, parent.width, parent.height), t
    ) == root_position(new_rect, t)
    if same_root and len(recent) <= RECENT_LIMIT:
        rows = tuple(sorted(((c, r, oid) for (c, r), oid in recent.items()), key=_row_major))
        return Canvas(
            schema_version=CANVAS_TREE_SCHEMA,
            root=parent.root,
            recent=rows or UNSET,
            tile_size=t,
            **base,  # type: ignore[arg-type]
        )
    tree = TreeEdit(objects, parent, new_rect, t)
    for (c, r), oid in recent.items():
        tree.set_tile(c, r, oid)
    return tree.write(base)


def _row_major(tile: tuple[int, int, str]) -> tuple[int, int]:
    return tile[1], tile[0]


class TreeEdit:
    """New tiles set into an existing tree (or an empty one), written as a new tree.

    Only the nodes on the paths to the changed tiles are read and written again;
    every other node keeps its id.
    """

    def __init__(self, objects: ObjectStore, parent: Canvas | None, rect: Rect, tile_size: int):
        self.objects = objects
        self.tile_size = tile_size
        self.level, self.pos = root_position(rect, tile_size)
        # children of the nodes on changed paths, by (level, block); a value of None
        # is a child that is itself such a node (its id is known once it is written)
        self.nodes: dict[tuple[int, Pos], dict[Pos, str | None]] = {}
        self.nodes[(self.level, self.pos)] = {}
        if parent is not None:
            self._graft(parent)

    def _graft(self, parent: Canvas) -> None:
        """Hang the parent's root where it belongs under the (possibly higher) new root."""
        prect = Rect(parent.x, parent.y, parent.width, parent.height)
        level, pos = root_position(prect, parent.tile_size)
        if level > self.level:
            raise CompositeError("a canvas tree edit cannot shrink the canvas")
        if level == self.level:
            if pos != self.pos:
                raise CompositeError("the new canvas does not contain the parent")
            self.nodes[(level, pos)] = self._children(str(parent.root), level, pos)
            return
        # the parent's root becomes a descendant: the nodes between it and the new root
        # are new, each with one child on the way down
        child: tuple[Pos, str | None] = (pos, str(parent.root))
        for k in range(level + 1, self.level + 1):
            span = FANOUT ** (k - level)
            block = (pos[0] // span, pos[1] // span)
            self.nodes[(k, block)] = dict([child])
            child = (block, None)
        if child[0] != self.pos:
            raise CompositeError("the new canvas does not contain the parent")

    def _children(self, node_id: str, level: int, block: Pos) -> dict[Pos, str | None]:
        return {(u, v): c for u, v, c in children_of(self.objects, node_id, level, block)}

    def set_tile(self, col: int, row: int, tile_id: str) -> None:
        """Put a tile at a grid cell (replacing what was there)."""
        u, v = col + OFFSET, row + OFFSET
        if _block(u, v, self.level) != self.pos:
            raise CompositeError(f"tile ({col}, {row}) lies outside the canvas tree")
        children = self.nodes[(self.level, self.pos)]
        for level in range(self.level, 1, -1):
            below = _block(u, v, level - 1)
            key = (level - 1, below)
            if key not in self.nodes:
                existing = children.get(below)
                self.nodes[key] = self._children(existing, *key) if existing else {}
            children[below] = None
            children = self.nodes[key]
        children[(u, v)] = tile_id

    def write(self, base: Mapping[str, object]) -> Canvas:
        """Store the changed nodes, children first; the new canvas manifest."""
        ids: dict[tuple[int, Pos], str] = {}
        for level in range(1, self.level + 1):
            for (k, block), children in self.nodes.items():
                if k != level:
                    continue
                resolved = []
                u0, v0 = block[0] * FANOUT, block[1] * FANOUT
                for (u, v), child in sorted(children.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                    cid = child if child is not None else ids[(k - 1, (u, v))]
                    resolved.append((u - u0, v - v0, cid))  # places within the node
                node = CanvasNode(level=level, children=tuple(resolved))
                ids[(k, block)] = self.objects.put_json(node)
        return Canvas(
            schema_version=CANVAS_TREE_SCHEMA,
            root=ids[(self.level, self.pos)],
            tile_size=self.tile_size,
            **base,  # type: ignore[arg-type]
        )
