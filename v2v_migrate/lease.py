"""A lease on a server destination (Milvus or Qdrant server): one apply at a time, from any machine.

The local `flock` (v2v_migrate.locking) only excludes applies on one machine. For a server collection the
holder is recorded WITH the collection (state key "lease": holder, host, pid, acquired/renewed/expiry
times) and renewed every `ttl / 3` seconds by a thread while the apply runs:
  - a second apply (any machine) finds a live lease and is refused, naming the holder and the expiry;
  - a lease past its expiry (its holder died: kill -9, lost machine) is taken over, with a warning; so is
    a live one whose holder is on this machine and whose process is gone (a rerun after kill -9);
  - the engines have no compare-and-swap, so after writing its lease an apply waits SETTLE_SECONDS and
    reads it back: of two applies starting at the same instant the last writer wins, the other gives up;
  - a holder that finds its lease taken (it could not renew in time) stops at its next commit.
Limits: expiry compares wall clocks, so the machines' clocks must agree to well within the ttl.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from connectors import open_store
from connectors.errors import StoreLockedError

LEASE_KEY = "lease"
DEFAULT_TTL = 60.0
SETTLE_SECONDS = 0.5
log = logging.getLogger("v2v_migrate.lease")


def needs_lease(dest_uri: str) -> bool:
    """Server destinations: an embedded file or folder is already excluded by the local flock."""
    scheme, _, rest = str(dest_uri).partition(":")
    return scheme in ("milvus", "qdrant") and "://" in rest.partition("#")[0]


def _dead_here(lease: dict) -> bool:
    """A holder on this machine whose process is gone (kill -9): its lease need not run out first."""
    if lease.get("host") != socket.gethostname() or not isinstance(lease.get("pid"), int):
        return False
    try:
        os.kill(lease["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def describe(lease: dict | None, now: float | None = None) -> dict | None:
    """The lease as `status` shows it (None: no lease recorded)."""
    if not lease:
        return None
    now = time.time() if now is None else now
    expires = float(lease.get("expires_at") or 0)
    return {**lease, "live": expires > now, "expires_in_seconds": round(expires - now, 1),
            "expires_at_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires))}


class Lease:
    """`with Lease(dest_uri, options): ...`; `check()` raises once the lease was lost."""

    def __init__(self, dest_uri: str, dest_options: dict | None = None, ttl: float = DEFAULT_TTL,
                 migration_id: str | None = None):
        self.dest_uri, self.options, self.ttl = dest_uri, dict(dest_options or {}), float(ttl)
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.migration_id = migration_id
        self.taken_over: dict | None = None  # the expired lease this one replaced
        self.lost: dict | None = None
        self.renewals = 0
        self._store = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._acquired_at = self._expires_at = 0.0

    def _record(self, now: float) -> dict:
        return {"holder": self.holder, "host": socket.gethostname(), "pid": os.getpid(),
                "migration_id": self.migration_id, "acquired_at": self._acquired_at, "renewed_at": now,
                "expires_at": now + self.ttl, "ttl": self.ttl}

    def _write(self, now: float) -> None:
        record = self._record(now)
        self._store.write_state(LEASE_KEY, record)
        self._expires_at = record["expires_at"]  # only once written: a failed renewal does not extend it

    def _refuse(self, cur: dict, now: float) -> StoreLockedError:
        d = describe(cur, now)
        return StoreLockedError(
            f"Destination {self.dest_uri} is leased by another apply ({cur.get('holder')}) until "
            f"{d['expires_at_utc']} (in {d['expires_in_seconds']:.0f} s unless renewed).",
            f"wait for that apply to finish (or stop it: its lease then expires by {d['expires_at_utc']} and a "
            "rerun takes over), or choose another destination.")

    def acquire(self) -> "Lease":
        self._store = open_store(self.dest_uri, **self.options)  # its own connection, used by the renewer
        try:
            now = time.time()
            cur = self._store.read_state(LEASE_KEY)
            if cur and cur.get("holder") != self.holder:
                dead = _dead_here(cur)
                if float(cur.get("expires_at") or 0) > now and not dead:
                    raise self._refuse(cur, now)
                self.taken_over = cur
                why = (f"its process {cur.get('pid')} on this machine is gone" if dead else
                       f"it expired {now - float(cur.get('expires_at') or 0):.0f} s ago")
                log.warning("taking over the lease of %s on %s (%s)", cur.get("holder"), self.dest_uri, why)
            self._acquired_at = now
            self._write(now)
            self._stop.wait(SETTLE_SECONDS)  # a racing apply's write lands now or never (module doc)
            back = self._store.read_state(LEASE_KEY)
            if back is None:  # a server that drops what it is given (e.g. Qdrant before 1.16: no metadata)
                log.warning("%s keeps no state: no lease, only this machine's lock protects it", self.dest_uri)
                self._store.close()
                self._store = None
                return self
            if back.get("holder") != self.holder:
                raise self._refuse(back, time.time())
        except BaseException:
            self._store.close()
            self._store = None
            raise
        self._thread = threading.Thread(target=self._renew_loop, name="v2v-lease", daemon=True)
        self._thread.start()
        return self

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                now = time.time()
                cur = self._store.read_state(LEASE_KEY) or {}
                if cur.get("holder") not in (None, self.holder):
                    self.lost = cur
                    return
                self._write(now)
                self.renewals += 1
            except Exception as e:  # a server restarting: try again; check() stops the run once expired
                log.warning("could not renew the lease on %s: %s", self.dest_uri, str(e).splitlines()[0][:200])
                if time.time() > self._expires_at:  # others may take it over now: stop at the next commit
                    self.lost = {"holder": "(unknown: it expired while the server could not be reached)"}
                    return

    def check(self) -> None:
        """Raise when the lease was lost: another apply may be writing, so this one must stop."""
        if self.lost is not None:
            raise StoreLockedError(f"The lease on {self.dest_uri} was lost to {self.lost.get('holder')}.",
                                   "check that apply is not running twice; rerun to resume once it is alone.")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._store is None:
            return
        try:
            if (self._store.read_state(LEASE_KEY) or {}).get("holder") == self.holder:
                self._store.write_state(LEASE_KEY, None)
        except Exception:
            pass  # unreachable server: the lease expires by itself
        finally:
            self._store.close()
            self._store = None

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
