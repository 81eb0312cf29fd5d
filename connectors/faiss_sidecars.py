"""The files next to a FAISS index: `PATH.payload.parquet` (payloads by id) and `PATH.meta.json`.

The payload sidecar is never loaded whole per batch: its `id` column is read once into a sorted array
(8 bytes/row for the lookup plus 8 for the order), and payload rows are decoded one Parquet row group at
a time, keeping the last few decoded groups. Sidecars written by us are in the index's stream order,
so a full scan decodes every row group once; a sidecar in another order still gives correct results,
at the cost of re-decoding groups.
"""
from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from connectors.arrow_payloads import PayloadDecoder
from connectors.errors import UnreadableStoreError

META_FORMAT = "v2v-faiss"
ROW_GROUP_ROWS = 16_384
_CACHED_GROUPS = 4


def payload_path(index_path: Path) -> Path:
    return index_path.with_name(index_path.name + ".payload.parquet")


def meta_path(index_path: Path) -> Path:
    return index_path.with_name(index_path.name + ".meta.json")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_meta(index_path: Path) -> dict:
    p = meta_path(index_path)
    if not p.exists():
        return {}
    try:
        meta = json.loads(p.read_text())
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
        return meta
    except (ValueError, OSError) as e:
        raise UnreadableStoreError(f"Metadata sidecar {str(p)!r} is unreadable ({e}).",
                                   "delete it (the index is read with its own metric and int ids) or restore it.") from None


class PayloadSidecar:
    """Payloads by int64 id from a Parquet file with an `id` column."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._pf = pq.ParquetFile(str(path), memory_map=True)
            ids = self._pf.read(columns=["id"]).column("id")
        except (pa.ArrowException, OSError, KeyError) as e:
            raise UnreadableStoreError(f"Payload sidecar {str(path)!r} is unreadable or has no `id` column ({e}).",
                                       "rewrite it with columns `id` (int64, the FAISS ids) and the payload fields.") from None
        if not pa.types.is_integer(ids.type):
            raise UnreadableStoreError(f"Payload sidecar {str(path)!r}: column `id` is {ids.type}, not integer.",
                                       "store the FAISS int64 ids in `id` (string ids go in `_v2v_id`).")
        ids = ids.to_numpy().astype(np.int64, copy=False)
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]
        md = self._pf.metadata
        self._group_starts = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])
        schema = self._pf.schema_arrow
        self._decoder = PayloadDecoder(schema, [c for c in schema.names if c != "id"])
        self.fields = self._decoder.fields
        self._cache: OrderedDict[int, list[dict]] = OrderedDict()

    def _group(self, g: int) -> list[dict]:
        if g in self._cache:
            self._cache.move_to_end(g)
            return self._cache[g]
        rows = self._decoder.rows(self._pf.read_row_group(g, columns=self._decoder.columns))
        self._cache[g] = rows
        if len(self._cache) > _CACHED_GROUPS:
            self._cache.popitem(last=False)
        return rows

    def lookup(self, ids: np.ndarray) -> list[dict]:
        """One payload dict per id ({} for ids the sidecar does not have)."""
        ids = np.asarray(ids, dtype=np.int64)
        out: list[dict] = [{} for _ in range(len(ids))]
        if not len(self._sorted) or not len(ids):
            return out
        at = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
        found = self._sorted[at] == ids
        rows = np.where(found, self._order[at], -1)
        groups = np.searchsorted(self._group_starts, rows, side="right") - 1
        for g in np.unique(groups[found]):
            decoded = self._group(int(g))
            for j in np.flatnonzero(found & (groups == g)):
                out[j] = dict(decoded[rows[j] - self._group_starts[g]])
        return out
