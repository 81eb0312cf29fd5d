"""`v2v-migrate status --dest URI`: who owns a destination, how far its migration got, who holds its lease,
and the error that ended the last run; read-only, for people and schedulers (`--json`).

The record kept with the destination (v2v_migrate.dest_state) is the authority; the local state dir's
copy is shown when the destination cannot be read now (an embedded file held open by a running apply).
"""
from __future__ import annotations

import time

from connectors import open_store
from connectors.errors import StoreLockedError
from v2v_migrate.checkpoint import load_checkpoint, normalize_uri, state_dir_for
from v2v_migrate.dest_state import APPLY_KEY, keeps_state
from v2v_migrate.lease import LEASE_KEY, describe


def _utc(t) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(t))) if t else None


def _running_here(dest_uri: str) -> str | None:
    """The pid of an apply holding this machine's lock on the destination, else None (nothing is locked)."""
    import fcntl
    import os

    from v2v_migrate.locking import DestinationLock

    lock = DestinationLock(dest_uri)
    if not lock.path.exists():
        return None
    fd = os.open(lock.path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return lock._read_holder()
    finally:
        os.close(fd)  # closing drops a lock taken just now
    return None


def destination_status(dest_uri: str, dest_options: dict | None = None, state_dir=None) -> dict:
    out: dict = {"dest": normalize_uri(dest_uri), "exists": None, "count": None, "record_from": None,
                 "owner": None, "progress": None, "lease": None, "last_error": None,
                 "running_here_pid": _running_here(dest_uri), "unreadable": None}
    record = lease = None
    try:
        with open_store(dest_uri, **(dest_options or {})) as dest:
            out["exists"] = dest.exists()
            if out["exists"]:
                out["count"] = dest.count()
                if keeps_state(dest):
                    record, lease = dest.read_state(APPLY_KEY), dest.read_state(LEASE_KEY)
                    out["record_from"] = "destination" if record else None
    except StoreLockedError as e:  # an embedded store open in the running apply
        out["unreadable"] = e.message
    if record is None:
        cp = load_checkpoint(state_dir_for(dest_uri, state_dir))
        if cp is not None:
            from dataclasses import asdict

            record, out["record_from"] = asdict(cp), "local state dir"
    if record:
        out["owner"] = {"migration_id": record.get("migration_id"), "source": record.get("source_uri"),
                        "translator_fingerprint": record.get("translator_fingerprint"),
                        "selection": record.get("selection"), "incremental": record.get("incremental"),
                        "started_at": _utc(record.get("started_at"))}
        out["progress"] = {k: record.get(k) for k in ("rows_read", "rows_written", "rows_skipped", "batches",
                                                        "completed")}
        out["progress"]["updated_at"] = _utc(record.get("updated_at"))
        out["last_error"] = record.get("last_error")
    out["lease"] = describe(lease)
    return out


def render_status(r: dict) -> str:
    if r["exists"] is False:
        return f"{r['dest']}: does not exist (no apply has written it)"
    lines = [f"{r['dest']}: " + (f"{r['count']:,} rows" if r["count"] is not None else r["unreadable"] or "?")]
    o, p = r["owner"], r["progress"]
    if o is None:
        lines.append("owner:    none (no v2v-migrate apply has marked it)")
    else:
        lines.append(f"owner:    migration {o['migration_id']} from {o['source']} (translator "
                     f"{str(o['translator_fingerprint'])[:12]}), started {o['started_at']} [{r['record_from']}]")
        state = "complete" if p["completed"] else "in progress or stopped"
        lines.append(f"progress: {p['rows_read']:,} source rows committed, {p['rows_written']:,} written; {state}; "
                     f"last commit {p['updated_at']}")
    lease = r["lease"]
    if lease:
        lines.append(f"lease:    {lease['holder']} {'until' if lease['live'] else 'expired'} {lease['expires_at_utc']}")
    if r["running_here_pid"]:
        lines.append(f"running:  apply pid {r['running_here_pid']} on this machine")
    if r["last_error"]:
        lines.append(f"last error: {r['last_error']}")
    return "\n".join(lines)
