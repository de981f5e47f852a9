"""One exception hierarchy for every failure the project reports.

Each class carries structured attributes so callers (CLI, viewer, attempt records)
never parse messages. ``kind`` is the stable machine-readable name.
"""

from __future__ import annotations

from typing import Any


class ExqError(Exception):
    """Root of every error this project raises on purpose."""

    kind = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe description: kind, message and string-valued details."""
        return {
            "kind": self.kind,
            "message": self.message,
            "details": {k: str(v) for k, v in sorted(self.details.items())},
        }


# --- user input -------------------------------------------------------------


class UserError(ExqError):
    """Bad input from a user: reported as one line, never with a traceback."""

    kind = "user_error"


class InvalidId(UserError):
    """A string that is not a well-formed object id or unique id prefix."""

    kind = "invalid_id"


class InvalidName(UserError):
    """A session or branch name that could escape its directory or is malformed."""

    kind = "invalid_name"


class NotFound(UserError):
    """An id, session, branch or object that does not exist."""

    kind = "not_found"


class AmbiguousId(UserError):
    """An abbreviated id that matches more than one object."""

    kind = "ambiguous_id"


class ConfigError(UserError):
    """A step parameter or setting out of range; ``field`` names it."""

    kind = "config_error"

    def __init__(self, message: str, *, field: str = "", **details: Any) -> None:
        super().__init__(message, field=field, **details)
        self.field = field


class ImageRejected(UserError):
    """An input image that cannot be decoded or breaks the size limits."""

    kind = "image_rejected"


class AlreadyExists(UserError):
    """A session, branch or store that already exists."""

    kind = "already_exists"


class Busy(UserError):
    """Too much work already waiting (the job queue is full): try again later."""

    kind = "busy"


# --- store ------------------------------------------------------------------


class StoreError(ExqError):
    """The store on disk is missing, unreadable or damaged."""

    kind = "store_error"


class IntegrityError(StoreError):
    """Stored bytes do not hash to their id."""

    kind = "integrity_error"

    def __init__(self, message: str, *, expected: str, got: str) -> None:
        super().__init__(message, expected=expected, got=got)
        self.expected = expected
        self.got = got


class ManifestError(StoreError):
    """Bytes that are not a valid manifest of a known kind and schema."""

    kind = "manifest_error"


class LayoutError(StoreError):
    """A path of the store that is not what the layout says it is.

    A symbolic link (never followed), a directory where a file belongs, a file where a
    directory belongs, or something that is no regular file at all.
    """

    kind = "layout_error"


class LockHeld(StoreError):
    """A lock file exists; reported with the holder (pid, host) and the lock's age.

    ``path`` is relative to the store: records never name this machine's paths.
    """

    kind = "lock_held"

    def __init__(
        self, message: str, *, path: str, pid: int | None, age_s: int, host: str = ""
    ) -> None:
        super().__init__(message, path=path, pid=pid, age_s=age_s, host=host)
        self.path = path
        self.pid = pid
        self.age_s = age_s
        self.host = host


# --- step failures (DESIGN.md §4): each becomes an attempt record -----------


class StepFailure(ExqError):
    """A step that did not commit; the subclasses are the failure taxonomy."""

    kind = "step_failure"


class TransientBackendError(StepFailure):
    """Timeout, 5xx, rate limit: worth retrying later."""

    kind = "TransientBackendError"


class PermanentBackendError(StepFailure):
    """Auth, invalid request, replay miss: retrying will not help."""

    kind = "PermanentBackendError"


class SafetyRefusal(StepFailure):
    """The model refused the request (moderation)."""

    kind = "SafetyRefusal"


class BudgetExceeded(StepFailure):
    """The step's estimate would pass the session budget; nothing was called."""

    kind = "BudgetExceeded"


class DecodeError(StepFailure):
    """Returned bytes are not an image of an accepted mode."""

    kind = "DecodeError"


class DimensionMismatch(StepFailure):
    """An image of another size than expected."""

    kind = "DimensionMismatch"


class ImmutableViolation(StepFailure):
    """A pixel of the immutable region differs from the parent canvas."""

    kind = "ImmutableViolation"


class MisregisteredOutput(ImmutableViolation):
    """The model moved (shifted or scaled) its picture further than a seam can be fixed.

    Carries ``shift_px`` and ``scale_ppm`` as found, and the limits.
    """

    kind = "MisregisteredOutput"


class CompositeError(StepFailure):
    """Geometry that cannot be satisfied (e.g. no frame fits the band)."""

    kind = "CompositeError"


class ArtifactWriteError(StepFailure):
    """An object, manifest or log could not be written (disk full, I/O error)."""

    kind = "ArtifactWriteError"


class Cancelled(StepFailure):
    """Someone cancelled the step; a call already paid for still has its output kept."""

    kind = "Cancelled"


class BranchMoved(StepFailure):
    """A compare-and-swap found the branch at another step than expected."""

    kind = "BranchMoved"

    def __init__(self, message: str, *, ref: str, expected: str | None, actual: str | None) -> None:
        super().__init__(message, ref=ref, expected=expected, actual=actual)
        self.ref = ref
        self.expected = expected
        self.actual = actual


FAILURE_KINDS: tuple[type[StepFailure], ...] = (
    TransientBackendError,
    PermanentBackendError,
    SafetyRefusal,
    BudgetExceeded,
    DecodeError,
    DimensionMismatch,
    ImmutableViolation,
    MisregisteredOutput,
    CompositeError,
    ArtifactWriteError,
    BranchMoved,
    Cancelled,
)
