"""The store's settings that may change: remotes and ``exq config`` (user.name).

``remotes.json`` and ``config.json`` at the root. Not objects, refs or logs: fsck,
gc, exports and transfers never touch them.
"""

from __future__ import annotations

import json
from pathlib import Path

from exquisite_store.errors import StoreError, UserError
from exquisite_store.store.files import LockFile
from exquisite_store.store.store import Store

REMOTES_FILE = "remotes.json"
CONFIG_FILE = "config.json"
#: the settings ``exq config`` knows
CONFIG_KEYS = ("user.name",)


def _read_table(root: Path | None, file: str) -> dict[str, str]:
    if root is None:
        return {}
    try:
        raw = (root / file).read_bytes()
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"{file} is damaged: {exc}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raise StoreError(f"{file} is damaged: not a table of names and values")
    return data


def _change_table(store: Store, file: str, key: str, value: str | None) -> dict[str, str]:
    if store.root is None:
        raise UserError(f"only a store in a folder keeps {file}")
    with LockFile(store.root / file, tmp_dir=store.root / "tmp") as lock:
        table = _read_table(store.root, file)
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
        lock.commit(json.dumps(table, indent=2, sort_keys=True).encode() + b"\n")
    return table


def read_remotes(store: Store) -> dict[str, str]:
    """``{name: url}`` of the store's remotes (none for a store without a folder)."""
    return _read_table(store.root, REMOTES_FILE)


def change_remotes(store: Store, name: str, url: str | None) -> dict[str, str]:
    """Set (``url``) or remove (None) one remote, under a lock; returns the new table."""
    return _change_table(store, REMOTES_FILE, name, url)


def read_config(root: Path | None) -> dict[str, str]:
    """The ``exq config`` settings of the store at ``root`` (none for an object store)."""
    return _read_table(root, CONFIG_FILE)


def set_config(store: Store, key: str, value: str | None) -> dict[str, str]:
    """Set (or with None, unset) one ``exq config`` setting."""
    if key not in CONFIG_KEYS:
        raise UserError(f"unknown setting {key!r:.40}; the settings are {', '.join(CONFIG_KEYS)}")
    return _change_table(store, CONFIG_FILE, key, value)
