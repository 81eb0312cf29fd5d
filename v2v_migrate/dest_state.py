"""The migration's record kept WITH the destination (connectors' `read_state`/`write_state`, key "apply").

Why: a rerun started from another folder, container or machine must find that the destination is this
migration's own, and where it stopped. So `apply`
  1. writes its record (source, destination, translator fingerprint, selection, migration id) to the
     destination before its first row (`save_progress` right after the pre-flight): the owner mark;
  2. after every durable flush, writes the cursor there too; then into the local state dir, a cache;
  3. on a rerun, trusts the destination's record first; the local checkpoint is used only where the
     destination holds none (stores that keep no state, or a destination written by an older version).
A record of another migration is refused as before (exit 5) unless --restart.
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict
from pathlib import Path

from v2v_migrate.checkpoint import Checkpoint, checkpoint_from_dict, remove_checkpoint, save_checkpoint

APPLY_KEY = "apply"
_USERINFO = re.compile(r"//[^/@\s]+@")


def keeps_state(dest) -> bool:
    return bool(getattr(dest, "keeps_state", False))


def load_dest_checkpoint(dest) -> Checkpoint | None:
    """The destination's own record of the migration that writes it (None: none, or it keeps no state)."""
    if not keeps_state(dest):
        return None
    data = dest.read_state(APPLY_KEY)
    return None if data is None else checkpoint_from_dict(data, f"kept with {dest.uri}")


def save_progress(dest, state: Path, cp: Checkpoint) -> None:
    """Record `cp` with the destination (authoritative), then in the local state dir (cache).

    Callers make the destination durable first (`dest.flush()`): the record never claims rows a crash
    could lose."""
    cp.updated_at = time.time()
    if keeps_state(dest):
        dest.write_state(APPLY_KEY, asdict(cp))
    save_checkpoint(state, cp)


def forget(dest, state: Path) -> None:
    """--restart, or a record of another migration being replaced: remove both copies."""
    if keeps_state(dest) and dest.exists():
        dest.write_state(APPLY_KEY, None)
    remove_checkpoint(state)


def note_error(dest, state: Path, cp: Checkpoint, exc: BaseException) -> None:
    """Keep the error that ended the run in the record (for `v2v-migrate status`); never raises, and
    never moves the cursor (the record is re-read, so rows not yet durable are not claimed)."""
    try:
        line = (str(exc).strip().splitlines() or [""])[0]
        if len(line) > 400:  # engines put the cause at the end ("... (File too large)")
            line = f"{line[:150]} ... {line[-240:]}"
        # errors of the connectors carry no secrets; strip any user:password@ of a URL all the same
        text = f"{type(exc).__name__}: {_USERINFO.sub('//', line)}"
        current = load_dest_checkpoint(dest) if dest.exists() else None
        if current is not None and current.migration_id == cp.migration_id:
            current.last_error = text
            save_progress(dest, state, current)
    except Exception:
        pass  # the destination may be what failed: the original error is what matters
