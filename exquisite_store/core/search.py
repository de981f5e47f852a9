"""Search a session's steps by prompt, tag, star, backend, seam score and cost.

``matching`` is pure (each step's facts and the annotations in, ids out); the viewer
runs it over the steps it holds for the tree, ``exq find`` over the step-facts index.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from exquisite_store.authorship import check_author, shown
from exquisite_store.core.annotations import check_tag, session_notes
from exquisite_store.errors import UserError
from exquisite_store.manifests import Step, StepNote
from exquisite_store.money import parse_usd
from exquisite_store.params import BACKENDS
from exquisite_store.store import Store
from exquisite_store.store.step_facts import StepFacts, facts_of, reachable_facts

MAX_PROMPT_QUERY = 200


@dataclass(frozen=True)
class Query:
    """What a step must have to match; every field given must hold (an empty query: all)."""

    prompt: str = ""
    tag: str = ""
    starred: bool = False
    backend: str = ""
    #: the seam score must be above this, in per-mille (1.20 -> 1200)
    seam_above_permille: int | None = None
    #: the step's cost must be above this, in micro-dollars
    cost_above_micro_usd: int | None = None
    #: who made it (``unknown``: steps made before authorship was kept)
    author: str = ""

    @property
    def empty(self) -> bool:
        """Whether the query asks for nothing (every step matches)."""
        return self == Query()


def parse_query(
    prompt: str | None = None,
    tag: str | None = None,
    starred: bool = False,
    backend: str | None = None,
    seam_above: str | None = None,
    cost_above: str | None = None,
    author: str | None = None,
) -> Query:
    """A Query from text as typed (CLI options, a form); UserError names a bad field."""
    prompt = (prompt or "").strip()
    if len(prompt) > MAX_PROMPT_QUERY:
        raise UserError(f"prompt: at most {MAX_PROMPT_QUERY} characters")
    backend = (backend or "").strip()
    if backend and backend not in BACKENDS:
        raise UserError(f"backend: {backend!r:.40} is none of {', '.join(BACKENDS)}")
    seam = None
    if seam_above not in (None, ""):
        try:
            value = Decimal(str(seam_above).strip())
        except InvalidOperation:
            value = Decimal("nan")
        if not value.is_finite() or not 0 <= value <= 1000:
            raise UserError(f"seam-above: a number from 0 to 1000, not {seam_above!r:.40}")
        seam = int(value * 1000)
    cost = None
    if cost_above not in (None, ""):
        try:
            cost = parse_usd(str(cost_above))
        except UserError:
            raise UserError(f"cost-above: not a dollar amount: {cost_above!r:.40}") from None
    return Query(
        prompt=prompt,
        tag=check_tag(tag.strip()) if tag and tag.strip() else "",
        starred=bool(starred),
        backend=backend,
        seam_above_permille=seam,
        cost_above_micro_usd=cost,
        author=check_author((author or "").strip()) if (author or "").strip() else "",
    )


def matching(facts: dict[str, StepFacts], notes: dict[str, StepNote], query: Query) -> list[str]:
    """Ids of the steps that match ``query``, oldest first (pure)."""
    needle = query.prompt.casefold()
    out = []
    for sid, f in facts.items():
        note = notes.get(sid)
        if query.starred and not (note and note.starred):
            continue
        if query.tag and not (note and query.tag in note.tags):
            continue
        if query.backend and f.backend != query.backend:
            continue
        if query.author and shown(f.author) != query.author:
            continue
        if query.seam_above_permille is not None and (
            not f.backend or f.seam_permille <= query.seam_above_permille
        ):
            continue
        cost_floor = query.cost_above_micro_usd
        if cost_floor is not None and f.cost_micro_usd <= cost_floor:
            continue
        if needle and needle not in f.prompt.casefold():
            continue
        out.append(sid)
    out.sort(key=lambda s: (facts[s].created_ms, s))
    return out


class PromptTexts:
    """User prompts by id, remembered (a text object never changes; many steps share one)."""

    def __init__(self, size: int = 4096) -> None:
        self._texts: OrderedDict[str, str] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def lookup(self, store: Store) -> Callable[[str], str]:
        """A function from a prompt id to its text, reading ``store`` on a miss."""

        def text(oid: str) -> str:
            with self._lock:
                if oid in self._texts:
                    self._texts.move_to_end(oid)
                    return self._texts[oid]
            value = store.objects.get_text(oid) if oid else ""
            with self._lock:
                self._texts[oid] = value
                while len(self._texts) > self._size:
                    self._texts.popitem(last=False)
            return value

        return text


PROMPTS = PromptTexts()


class KnownFacts:
    """Steps' facts by id, remembered (a step never changes): the viewer's searches."""

    def __init__(self, size: int = 100_000) -> None:
        self._facts: dict[str, StepFacts] = {}
        self._size = size

    def of(self, sid: str, step: Step, prompt_text: Callable[[str], str]) -> StepFacts:
        """The facts of ``step`` (whose id is ``sid``), made once."""
        f = self._facts.get(sid)
        if f is None:
            if len(self._facts) >= self._size:
                self._facts.clear()  # a crude bound: rebuilt from the steps on the next search
            f = self._facts[sid] = facts_of(step, prompt_text)
        return f


FACTS = KnownFacts()


@dataclass(frozen=True)
class Found:
    """One matching step with what a list of results shows."""

    id: str
    facts: StepFacts
    note: StepNote


def find(
    store: Store, session: str, query: Query, steps: dict[str, Step] | None = None
) -> list[Found]:
    """The steps of ``session`` (on its branches and staged) that match ``query``.

    ``steps``: the steps to search when the caller holds them already (the viewer's
    tree); otherwise the branches are walked through the step-facts index in ``cache/``,
    which reads only the manifests of steps no search has seen before.
    """
    notes = session_notes(store, session)
    text = PROMPTS.lookup(store)
    if steps is None:
        heads = [*store.refs.branches(session).values(), *store.refs.staged(session).values()]
        facts = reachable_facts(store, session, heads, text)
    else:
        facts = {sid: FACTS.of(sid, st, text) for sid, st in steps.items()}
    ids = matching(facts, notes, query)
    return [Found(sid, facts[sid], notes.get(sid, StepNote())) for sid in ids]
