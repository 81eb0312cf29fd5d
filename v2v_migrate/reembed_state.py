"""Where `reembed` keeps its progress record: every read and write of it goes through load() and save().

The record lives WITH the destination (`Store.read_state("reembed")` / `write_state`, as apply's own
record, v2v_migrate.dest_state), so a rerun from any folder, container or machine resumes; a copy in the
local state folder (`<state dir>/<dest key>/reembed.json`) is a cache, read only where the destination
keeps no state. The record is a plain JSON dict that names its source and destination by normalised URI,
and its cursor is the source's own. Even without the record nothing is embedded twice: each embedded row
carries its mark in the destination (v2v_migrate.provenance), and reembed skips marked rows; the record
only saves re-reading the part of the source already done.
"""
from __future__ import annotations

import json
import os

from v2v_migrate.checkpoint import atomic_write_text, state_dir_for
from v2v_migrate.dest_state import keeps_state as _kept
from v2v_migrate.errors import CheckpointError

KEY = "reembed"
VERSION = 1


def _path(dest_uri: str, state_dir: str | os.PathLike | None):
    return state_dir_for(dest_uri, state_dir) / f"{KEY}.json"


def load(dest, dest_uri: str, state_dir: str | os.PathLike | None = None) -> dict | None:
    """The destination's reembed record (kept with it; else the local cache), or None when there is none."""
    if _kept(dest):
        record = dest.read_state(KEY)
        return record if isinstance(record, dict) and record.get("version") == VERSION else None
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
    """Write the record atomically, with the destination first; returns where it went (for the summary)."""
    record = json.loads(json.dumps({**record, "version": VERSION}, default=str))  # plain JSON, as stored
    if _kept(dest):
        dest.write_state(KEY, record)
    path = _path(dest_uri, state_dir)
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return f"{dest_uri} (kept with the destination)" if _kept(dest) else str(path)


def clear(dest, dest_uri: str, state_dir: str | os.PathLike | None = None) -> None:
    if _kept(dest) and dest.exists():
        dest.write_state(KEY, None)
    _path(dest_uri, state_dir).unlink(missing_ok=True)
