"""The store's own settings that may change: its remotes (``remotes.json`` at the root).

Not an object, ref or log: fsck, gc, exports and transfers never touch it.
"""

from __future__ import annotations

import json

from exquisite_store.errors import StoreError, UserError
from exquisite_store.store.files import LockFile
from exquisite_store.store.store import Store

REMOTES_FILE = "remotes.json"


def read_remotes(store: Store) -> dict[str, str]:
    """``{name: url}`` of the store's remotes (none for a store without a folder)."""
    if store.root is None:
        return {}
    try:
        raw = (store.root / REMOTES_FILE).read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{REMOTES_FILE} is damaged: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise StoreError(f"{REMOTES_FILE} is damaged: not a table of names and URLs")
    return data


def change_remotes(store: Store, name: str, url: str | None) -> dict[str, str]:
    """Set (``url``) or remove (None) one remote, under a lock; returns the new table."""
    if store.root is None:
        raise UserError("only a store in a folder keeps a list of remotes")
    with LockFile(store.root / REMOTES_FILE, tmp_dir=store.root / "tmp") as lock:
        table = read_remotes(store)
        if url is None:
            table.pop(name, None)
        else:
            table[name] = url
        lock.commit(json.dumps(table, indent=2, sort_keys=True).encode() + b"\n")
    return table
