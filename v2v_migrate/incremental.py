"""Per-id content hashes for `apply --incremental` (scheduled re-index jobs), kept in SQLite.

Each source row's hash covers its vector bytes and its payload (JSON, sorted keys). A row is rewritten when
its id is unknown or its hash changed; unchanged rows are skipped before translation. Memory stays bounded:
lookups go to SQLite one batch at a time.

Bootstrap: the first incremental run after a plain `apply` has no hashes yet. It scans the destination's ids
once (into the same table, hash NULL = "present, content unknown"); those rows count as unchanged and get
their hash recorded, so the run copies only what the destination lacks. (A row changed in the source between
that plain apply and the first incremental run is therefore not detected; later runs detect every change.)

Deletions: every row seen in a run gets that run's number. After a complete scan, ids whose run number is
older (and that some earlier run saw in the source) were deleted from the source; they are listed in
`deleted_ids.jsonl` and reported. The destination keeps them unless `--delete-missing` is given and the
destination's connector offers `delete(ids)`.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np


def id_key(x) -> str:
    # Type-tagged so that the int 7 and the string "7" stay distinct (as in connectors.ids).
    return f"i:{int(x)}" if isinstance(x, (int, np.integer)) else f"s:{x}"


def key_to_id(key: str):
    tag, _, value = key.partition(":")
    return int(value) if tag == "i" else value


def row_hashes(vectors: np.ndarray, payloads: Sequence[dict] | None, others: dict | None = None) -> list[bytes]:
    """A content hash per row: vector, payload, and the row's other vectors (Batch.extra["vectors"]), so that
    a changed sparse or second vector is copied again too. Rows without other vectors hash as before."""
    out = []
    for i in range(len(vectors)):
        h = hashlib.blake2b(np.ascontiguousarray(vectors[i], dtype=np.float32).tobytes(), digest_size=16)
        if payloads is not None and payloads[i]:
            h.update(json.dumps(payloads[i], sort_keys=True, default=str).encode())
        for name in sorted(others or {}):
            value = others[name][i]
            if value is not None:
                h.update(name.encode() + (np.asarray(value, dtype=np.float32).tobytes() if not isinstance(value, dict)
                                          else json.dumps(value, sort_keys=True).encode()))
        out.append(h.digest())
    return out


class HashIndex:
    """One SQLite file per destination. Open one instance per thread (SQLite connections are per thread)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.path), timeout=60)
        self.db.execute("PRAGMA journal_mode=WAL")  # the filter reads while the writer writes
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS rows (id TEXT PRIMARY KEY, h BLOB, run INTEGER NOT NULL)")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT)")
        self.db.commit()

    # -- bookkeeping ----------------------------------------------------------------------------
    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, str(value)))
        self.db.commit()

    def is_empty(self) -> bool:
        return self.db.execute("SELECT 1 FROM rows LIMIT 1").fetchone() is None

    def clear(self) -> None:
        self.db.execute("DELETE FROM rows")
        self.db.commit()

    def bootstrap_from(self, dest_batches: Iterable, run: int) -> int:
        """Record the ids the destination already holds (hash unknown). Returns how many."""
        n = 0
        for b in dest_batches:
            self.db.executemany("INSERT OR IGNORE INTO rows VALUES (?, NULL, ?)",
                                [(id_key(x), run) for x in b.ids])
            n += len(b.ids)
        self.db.commit()
        return n

    # -- per batch ------------------------------------------------------------------------------
    def changed_mask(self, keys: list[str], hashes: list[bytes]) -> np.ndarray:
        """True where the row must be written: unknown id, or a known hash that differs."""
        known: dict[str, bytes | None] = {}
        for start in range(0, len(keys), 900):  # SQLite's bound-parameter limit
            chunk = keys[start:start + 900]
            marks = ",".join("?" * len(chunk))
            known.update(self.db.execute(f"SELECT id, h FROM rows WHERE id IN ({marks})", chunk).fetchall())
        mask = np.ones(len(keys), dtype=bool)
        for i, (k, h) in enumerate(zip(keys, hashes)):
            if k in known and (known[k] is None or known[k] == h):
                mask[i] = False
        return mask

    def record(self, keys: list[str], hashes: list[bytes], run: int) -> None:
        """Stage hashes of rows now in the destination; `commit()` makes them count."""
        self.db.executemany("INSERT OR REPLACE INTO rows VALUES (?, ?, ?)",
                            [(k, h, run) for k, h in zip(keys, hashes)])

    def commit(self) -> None:
        self.db.commit()

    # -- after a complete scan ------------------------------------------------------------------
    def vanished(self, run: int, limit: int | None = None) -> list:
        """Ids not seen in `run`: deleted from the source since an earlier run."""
        # h IS NULL: bootstrapped from the destination and never seen in the source, i.e. not ours
        # (e.g. rows there before an --allow-existing migration): never reported nor deleted.
        sql = "SELECT id FROM rows WHERE run < ? AND h IS NOT NULL" + (f" LIMIT {int(limit)}" if limit else "")
        return [key_to_id(k) for (k,) in self.db.execute(sql, (run,))]

    def forget(self, ids: Sequence) -> None:
        self.db.executemany("DELETE FROM rows WHERE id=?", [(id_key(x),) for x in ids])
        self.db.commit()

    def close(self) -> None:
        self.db.close()
