"""A session's step tree and its tidy layout (pure: no I/O, no Flask)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Node:
    """One step (or failed attempt) in the tree."""

    id: str
    parent: str | None
    created_ms: int
    failed: bool = False
    children: list[Node] = field(default_factory=list)
    x: float = 0.0
    depth: int = 0
    label: dict = field(default_factory=dict)


def build_tree(nodes: list[Node]) -> Node | None:
    """Link nodes to their parents; children ordered steps first, then by creation."""
    by_id = {n.id: n for n in nodes}
    root = None
    for n in nodes:
        if n.parent is None:
            root = n
        elif n.parent in by_id:
            by_id[n.parent].children.append(n)
    for n in nodes:
        n.children.sort(key=lambda c: (c.failed, c.created_ms, c.id))
    return root


def layout(root: Node) -> tuple[int, int]:
    """Tidy layered layout: leaves on consecutive columns, parents centred over children.

    Iterative (a 10,000-step chain must not hit the recursion limit). Returns the
    number of columns and of rows.
    """
    next_col = 0
    max_depth = 0
    stack: list[tuple[Node, int, bool]] = [(root, 0, False)]
    while stack:
        node, depth, expanded = stack.pop()
        node.depth = depth
        max_depth = max(max_depth, depth)
        if not node.children:
            node.x = next_col
            next_col += 1
        elif expanded:
            node.x = (node.children[0].x + node.children[-1].x) / 2
        else:
            stack.append((node, depth, True))
            for child in reversed(node.children):
                stack.append((child, depth + 1, False))
    return next_col, max_depth + 1


def walk(root: Node) -> list[Node]:
    """Every node, parents before children."""
    out, stack = [], [root]
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(reversed(n.children))
    return out
