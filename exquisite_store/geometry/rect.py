"""Integer rectangles on the unbounded canvas plane (pure, no I/O)."""

from __future__ import annotations

from typing import NamedTuple


class Rect(NamedTuple):
    """A half-open rectangle ``[x, x + w) x [y, y + h)`` on the plane; ``w, h >= 0``."""

    x: int
    y: int
    w: int
    h: int

    @property
    def right(self) -> int:
        """First column past the rectangle."""
        return self.x + self.w

    @property
    def bottom(self) -> int:
        """First row past the rectangle."""
        return self.y + self.h

    @property
    def empty(self) -> bool:
        """Whether the rectangle holds no pixel."""
        return self.w <= 0 or self.h <= 0

    @property
    def area(self) -> int:
        """Number of pixels."""
        return 0 if self.empty else self.w * self.h

    def intersect(self, other: Rect) -> Rect:
        """The overlap of two rectangles (possibly empty, then ``w`` or ``h`` is 0)."""
        x0, y0 = max(self.x, other.x), max(self.y, other.y)
        x1, y1 = min(self.right, other.right), min(self.bottom, other.bottom)
        return Rect(x0, y0, max(0, x1 - x0), max(0, y1 - y0))

    def union(self, other: Rect) -> Rect:
        """The smallest rectangle holding both (an empty side is ignored)."""
        if self.empty:
            return other
        if other.empty:
            return self
        x0, y0 = min(self.x, other.x), min(self.y, other.y)
        x1, y1 = max(self.right, other.right), max(self.bottom, other.bottom)
        return Rect(x0, y0, x1 - x0, y1 - y0)

    def contains(self, other: Rect) -> bool:
        """Whether ``other`` lies wholly inside this rectangle."""
        return other.empty or (
            self.x <= other.x
            and self.y <= other.y
            and other.right <= self.right
            and other.bottom <= self.bottom
        )

    def relative_to(self, origin: Rect) -> Rect:
        """This rectangle in the coordinates of ``origin``'s top-left corner."""
        return Rect(self.x - origin.x, self.y - origin.y, self.w, self.h)

    def slices(self, origin: Rect) -> tuple[slice, slice]:
        """Numpy ``[rows, cols]`` slices of this rectangle inside an array covering ``origin``."""
        r = self.relative_to(origin)
        return slice(r.y, r.y + r.h), slice(r.x, r.x + r.w)
