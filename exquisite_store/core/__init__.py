"""The core: every write and summary a person can ask for, under both front ends.

The CLI (``exquisite_store.cli``) and the viewer (``viewer``) parse their input, call
one function here, and render what it returns; rules (the writer lock, name checks,
the budget rule, parameter limits) are applied here and below, once.
"""

from exquisite_store.core.branches import (
    HeadMove,
    create_branch,
    drop_branch,
    rename_branch,
    set_head,
    step_of_session,
)
from exquisite_store.core.drift import BranchDrift, branch_drift, session_drift
from exquisite_store.core.history import (
    Move,
    RefHistory,
    Undone,
    ever_held,
    histories,
    history,
    undo,
)
from exquisite_store.core.jobs import Jobs, job_states, live_jobs, mark_abandoned
from exquisite_store.core.sessions import (
    NewSession,
    StartImage,
    create_session,
    image_from_bytes,
    image_from_file,
    image_from_fixture,
    new_session,
    parse_budget,
    parse_frame,
    set_budget,
    set_defaults,
)
from exquisite_store.core.spending import Spending, spending
from exquisite_store.core.staging import (
    Decision,
    Staged,
    StagedGroup,
    accept,
    discard,
    keep,
    staged,
)
from exquisite_store.core.steps import (
    StepRequest,
    cached_response_of,
    estimate,
    grow,
    repair_request,
    retry_request,
    step_request,
)

__all__ = [
    "BranchDrift",
    "branch_drift",
    "session_drift",
    "Decision",
    "HeadMove",
    "Move",
    "RefHistory",
    "ever_held",
    "histories",
    "Staged",
    "StagedGroup",
    "Undone",
    "accept",
    "discard",
    "history",
    "keep",
    "staged",
    "undo",
    "Jobs",
    "NewSession",
    "Spending",
    "StartImage",
    "StepRequest",
    "cached_response_of",
    "create_branch",
    "create_session",
    "drop_branch",
    "estimate",
    "grow",
    "image_from_bytes",
    "image_from_file",
    "image_from_fixture",
    "job_states",
    "live_jobs",
    "mark_abandoned",
    "new_session",
    "parse_budget",
    "parse_frame",
    "rename_branch",
    "repair_request",
    "retry_request",
    "set_budget",
    "set_defaults",
    "set_head",
    "spending",
    "step_of_session",
    "step_request",
]
