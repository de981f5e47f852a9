"""Canvas trees (schema 2): tiles hang off nodes of 8 x 8 children, like git trees.

A level-1 node holds up to 8 x 8 tiles, a level-2 node up to 8 x 8 level-1 nodes,
and so on; the canvas manifest names the root. Nodes sit on a grid of the plane, so
a node whose tiles an edit does not touch keeps its id and is shared by every canvas
after it. An edit stores the tiles it changes and the nodes above them (path
copying): O(changed tiles x depth) bytes of metadata, never O(canvas). Looking up or
composing a region descends only into nodes that intersect it.

Coordinates: a tile ``(col, row)`` is ``(col + OFFSET, row + OFFSET)`` in the tree,
and the level-k block of a tree coordinate ``u`` is ``u // 8**k``. OFFSET puts the
plane's origin near the middle of its block at every level (not on a block edge), so
a canvas that grows both left and right of the origin still fits under one root a
level or so above what its size needs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from exquisite_store.errors import CompositeError
from exquisite_store.geometry.rect import Rect
from exquisite_store.manifests import CANVAS_TREE_SCHEMA, Canvas, CanvasNode
from exquisite_store.store.objects import ObjectStore

FANOUT = 8
MAX_LEVEL = 12
#: 4 * (8**0 + 8**1 + ... + 8**(MAX_LEVEL-1)): the origin sits at ~4/7 of its block
OFFSET = 4 * (FANOUT**MAX_LEVEL - 1) // (FANOUT - 1)

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


def read_node(objects: ObjectStore, node_id: str, level: int) -> CanvasNode:
    """A node, checked to be at the level its place in the tree says."""
    node = objects.get_manifest(node_id, CanvasNode)
    if node.level != level:
        raise CompositeError(f"canvas node {node_id[:12]} is at level {node.level}, not {level}")
    return node


def iter_tiles(
    objects: ObjectStore, canvas: Canvas, rect: Rect | None = None
) -> Iterator[tuple[int, int, str]]:
    """``(col, row, tile id)`` of the tiles meeting ``rect`` (all when None), row by row.

    Only the nodes over ``rect`` are read.
    """
    full = Rect(canvas.x, canvas.y, canvas.width, canvas.height)
    area = full if rect is None else full.intersect(rect)
    if area.empty:
        return
    c0, c1, r0, r1 = tile_range(area, canvas.tile_size)
    lo, hi = (c0 + OFFSET, r0 + OFFSET), (c1 + OFFSET, r1 + OFFSET)
    level, _ = root_position(full, canvas.tile_size)
    found: list[tuple[int, int, str]] = []
    stack = [(level, str(canvas.root))]
    while stack:
        level, node_id = stack.pop()
        node = objects.get_manifest(node_id, CanvasNode)
        if node.level != level:
            raise CompositeError(
                f"canvas node {node_id[:12]} is at level {node.level}, not {level}"
            )
        b_lo, b_hi = _block(*lo, level - 1), _block(*hi, level - 1)
        for u, v, child in node.children:
            if not (b_lo[0] <= u <= b_hi[0] and b_lo[1] <= v <= b_hi[1]):
                continue
            if level == 1:
                found.append((u - OFFSET, v - OFFSET, child))
            else:
                stack.append((level - 1, child))
    found.sort(key=lambda t: (t[1], t[0]))
    yield from found


def tile_at(objects: ObjectStore, canvas: Canvas, col: int, row: int) -> str:
    """The id of one tile (reads the nodes on its path only)."""
    t = canvas.tile_size
    for c, r, oid in iter_tiles(objects, canvas, Rect(col * t, row * t, 1, 1)):
        if (c, r) == (col, row):
            return oid
    raise CompositeError(f"canvas has no tile at ({col}, {row})")


def differing_tiles(
    objects: ObjectStore, parent: Canvas, child: Canvas
) -> Iterator[tuple[int, int, str]]:
    """Tiles of ``child`` not in ``parent`` at the same cell; shared subtrees are skipped."""
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
                above = parent_node(level + 1, (block[0] // FANOUT, block[1] // FANOUT))
                if above is None:
                    memo[key] = None
                else:
                    node = objects.get_manifest(above, CanvasNode)
                    memo[key] = next((c for u, v, c in node.children if (u, v) == block), None)
        return memo[key]

    clevel, cpos = root_position(Rect(child.x, child.y, child.width, child.height), child.tile_size)
    found: list[tuple[int, int, str]] = []
    stack = [(clevel, cpos, str(child.root))]
    while stack:
        level, block, node_id = stack.pop()
        if parent_node(level, block) == node_id:
            continue  # the same subtree: every tile under it is the parent's
        node = objects.get_manifest(node_id, CanvasNode)
        for u, v, c in node.children:
            if level == 1:
                if parent_node(0, (u, v)) != c:
                    found.append((u - OFFSET, v - OFFSET, c))
            else:
                stack.append((level - 1, (u, v), c))
    found.sort(key=lambda t: (t[1], t[0]))
    yield from found


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
            self.nodes[(level, pos)] = self._children(str(parent.root), level)
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

    def _children(self, node_id: str, level: int) -> dict[Pos, str | None]:
        node = self.objects.get_manifest(node_id, CanvasNode)
        if node.level != level:
            raise CompositeError(
                f"canvas node {node_id[:12]} is at level {node.level}, not {level}"
            )
        return {(u, v): c for u, v, c in node.children}

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
                self.nodes[key] = self._children(existing, level - 1) if existing else {}
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
                for (u, v), child in sorted(children.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                    resolved.append((u, v, child if child is not None else ids[(k - 1, (u, v))]))
                node = CanvasNode(level=level, children=tuple(resolved))
                ids[(k, block)] = self.objects.put_json(node)
        return Canvas(
            schema_version=CANVAS_TREE_SCHEMA,
            root=ids[(self.level, self.pos)],
            tile_size=self.tile_size,
            **base,  # type: ignore[arg-type]
        )
