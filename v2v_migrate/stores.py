"""Opening stores for the workflow: the one opener that refuses a missing or empty store with the fix."""
from __future__ import annotations

import json

from connectors import open_store
from connectors.errors import EmptyStoreError, StoreNotFoundError
from connectors.secrets import clean_uri
from v2v_migrate.errors import UsageError


def open_existing(uri: str, role: str, options: dict | None = None, allow_empty: bool = False,
                  prefer_vector: str | None = None):
    """Open a store that must exist (a source, target, or a destination to report on).

    role names the store in messages and fixes ('source', 'target', 'destination'); prefer_vector: the
    vector to use where the store holds several and its options name none (Store.select_vector).
    """
    store = open_store(uri, **(options or {}))
    store.select_vector(prefer_vector or None)
    try:
        if not store.exists():
            hint = "; for a destination, run `v2v-migrate apply` first" if role == "destination" else ""
            raise StoreNotFoundError(f"The {role} store {clean_uri(uri)} does not exist.",
                                     f"check the {role} URI (path, file name and #collection){hint}.")
        if not allow_empty and store.count() == 0:
            raise EmptyStoreError(f"The {role} store {clean_uri(uri)} holds no vectors.",
                                  f"point --{role} at a store with vectors.")
    except BaseException:
        store.close()
        raise
    return store


def parse_options(pairs: list[str] | None, flag: str) -> dict:
    """['k=v', ...] -> {'k': value}; values parsed as JSON when they look like numbers/bools."""
    out: dict = {}
    for item in pairs or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{flag} {item!r} is not KEY=VALUE.", f"write it as {flag} key=value.")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out
