"""Where `reembed` keeps its progress record: every read and write of it goes through load() and save().

For now the record is a JSON file in the destination's local state folder (`<state dir>/<dest key>/
reembed.json`, the folder apply uses, see v2v_migrate.checkpoint). Issue 15 adds a destination-resident
state API (`Store.read_state(key)` / `Store.write_state(key, dict)`); once it is merged, these two
functions switch to `dest.read_state(KEY)` / `dest.write_state(KEY, record)` and nothing else changes:
the record is a plain JSON dict that names its source and destination by normalised URI (absolute paths),
and its cursor is the source's own, so a rerun from any folder resumes from it. Even without the record
nothing is embedded twice: each embedded row carries its mark in the destination (v2v_migrate.provenance),
and reembed skips marked rows; the record only saves re-reading the part of the source already done.
"""
from __future__ import annotations

import json
import os

from v2v_migrate.checkpoint import atomic_write_text, state_dir_for
from v2v_migrate.errors import CheckpointError

KEY = "reembed"
VERSION = 1


def _path(dest_uri: str, state_dir: str | os.PathLike | None):
    return state_dir_for(dest_uri, state_dir) / f"{KEY}.json"


def load(dest, dest_uri: str, state_dir: str | os.PathLike | None = None) -> dict | None:
    """The destination's reembed record, or None when there is none. (`dest`: the open destination store,
    unused until the record lives there.)"""
    path = _path(dest_uri, state_dir)
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise CheckpointError(f"The reembed record {path} is unreadable ({e}).",
                              "rerun with --restart (rows already embedded are recognised and skipped).") from None
    return record if record.get("version") == VERSION else None


def save(dest, dest_uri: str, state_dir: str | os.PathLike | None, record: dict) -> str:
    """Write the record atomically; returns where it went (for the summary)."""
    path = _path(dest_uri, state_dir)
    atomic_write_text(path, json.dumps({**record, "version": VERSION}, indent=1, default=str) + "\n")
    return str(path)


def clear(dest, dest_uri: str, state_dir: str | os.PathLike | None = None) -> None:
    _path(dest_uri, state_dir).unlink(missing_ok=True)
