"""Short ids in URLs: a unique prefix of 8+ hex characters redirects to the full id.

Every route with an id in its path gets a twin whose id parts take a prefix; the twin
resolves each prefix (404 when nothing matches, 400 when several do, each with the
reason) and redirects to the same route with the full ids, keeping the query string.
The prefix is checked against its pattern by the URL rule before anything reads the
store, so nothing else ever reaches a path.
"""

from __future__ import annotations

import itertools
import re
from urllib.parse import urlencode

from flask import Flask, redirect, request, url_for
from werkzeug.routing import BaseConverter, Rule

from exquisite_store.ids import ID_LEN, MIN_PREFIX, is_id
from viewer.web import get_store

#: a prefix that is not a whole id (a whole id is the ``oid`` converter's)
SHORT_PATTERN = f"[0-9a-f]{{{MIN_PREFIX},{ID_LEN - 1}}}"
SHORT_RE = re.compile(f"^{SHORT_PATTERN}$")
_ID_PART = re.compile(r"<oid:(\w+)>")


class PrefixConverter(BaseConverter):
    """An abbreviated id: 8 to 63 lowercase hex characters."""

    regex = SHORT_PATTERN


def expand(value: str) -> str:
    """The full id a prefix names (NotFound: none; AmbiguousId, a 400: several)."""
    return value if is_id(value) else get_store().objects.resolve(value)


def _redirect_view(endpoint: str, id_args: tuple[str, ...]):
    def view(**kwargs: str):
        full = {k: (expand(v) if k in id_args else v) for k, v in kwargs.items()}
        target = url_for(endpoint, **full)
        if request.query_string:
            target += "?" + request.query_string.decode("latin-1")
        return redirect(target, code=302)

    return view


def init_app(app: Flask) -> None:
    """Add a prefix twin of every rule that has an id in its path (call after blueprints)."""
    app.url_map.converters["prefix"] = PrefixConverter
    rules: list[Rule] = list(app.url_map.iter_rules())
    for rule in rules:
        ids = _ID_PART.findall(rule.rule)
        if not ids or "GET" not in (rule.methods or ()):
            continue
        for choice in itertools.product((False, True), repeat=len(ids)):
            if not any(choice):
                continue  # every id whole: the rule itself
            text = rule.rule
            for name, short in zip(ids, choice, strict=True):
                if short:
                    text = text.replace(f"<oid:{name}>", f"<prefix:{name}>")
            endpoint = f"short_ids.{rule.endpoint}.{''.join('s' if c else 'f' for c in choice)}"
            app.add_url_rule(
                text,
                endpoint,
                _redirect_view(rule.endpoint, tuple(ids)),
                methods=["GET"],
                defaults=rule.defaults,
            )
    app.extensions["exq_short_ids"] = True


def compare_query(ids: list[str]) -> str | None:
    """``ids=...`` with every prefix expanded, or None when all are whole already."""
    if all(is_id(i) for i in ids):
        return None
    return urlencode({"ids": ",".join(expand(i) for i in ids)}, safe=",")
