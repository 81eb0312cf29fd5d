"""The files next to a FAISS index: `PATH.payload.parquet` (payloads by id) and `PATH.meta.json`.

The payload sidecar is never loaded whole: payload rows are decoded one Parquet row group at a time,
keeping the last few decoded groups. Sidecars written by us are in the index's stream order, so a scan
(`rows_at`) reads the sidecar rows at the same positions and checks that their ids are the batch's:
memory stays bounded by a few row groups whatever the row count. Lookups by id (`get`, search, a sidecar
in another order) read the `id` column once into a sorted array (16 bytes/row: the ids and their order);
a sidecar in another order still gives correct results, at the cost of that array and re-decoded groups.
"""
from __future__ import annotations

import json
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
            id_type = self._pf.schema_arrow.field("id").type
        except (pa.ArrowException, OSError, KeyError) as e:
            raise UnreadableStoreError(f"Payload sidecar {str(path)!r} is unreadable or has no `id` column ({e}).",
                                       "rewrite it with columns `id` (int64, the FAISS ids) and the payload fields.") from None
        if not pa.types.is_integer(id_type):
            raise UnreadableStoreError(f"Payload sidecar {str(path)!r}: column `id` is {id_type}, not integer.",
                                       "store the FAISS int64 ids in `id` (string ids go in `_v2v_id`).")
        md = self._pf.metadata
        self.rows = md.num_rows
        self._group_starts = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])
        schema = self._pf.schema_arrow
        self._decoder = PayloadDecoder(schema, [c for c in schema.names if c != "id"])
        self.fields = self._decoder.fields
        self._cache: OrderedDict[int, tuple[np.ndarray, list[dict]]] = OrderedDict()
        self._sorted = self._order = None  # the id lookup, built on the first lookup()

    def _group(self, g: int) -> tuple[np.ndarray, list[dict]]:
        """(ids, decoded payload rows) of row group g."""
        if g in self._cache:
            self._cache.move_to_end(g)
            return self._cache[g]
        table = self._pf.read_row_group(g, columns=["id", *self._decoder.columns])
        out = (table.column("id").to_numpy().astype(np.int64, copy=False), self._decoder.rows(table))
        self._cache[g] = out
        if len(self._cache) > _CACHED_GROUPS:
            self._cache.popitem(last=False)
        return out

    def rows_at(self, start: int, ids: np.ndarray) -> list[dict]:
        """Payloads of the rows at index positions start.., whose ids are `ids`: read at the same positions
        of the sidecar when it holds exactly those ids there (ours always do), else looked up by id."""
        ids = np.asarray(ids, dtype=np.int64)
        stop = start + len(ids)
        if start < 0 or stop > self.rows:
            return self.lookup(ids)
        got_ids, rows = [], []
        g = int(np.searchsorted(self._group_starts, start, side="right") - 1)
        while len(ids) and int(self._group_starts[g]) < stop:
            lo, hi = max(start, int(self._group_starts[g])), min(stop, int(self._group_starts[g + 1]))
            group_ids, decoded = self._group(g)
            base = int(self._group_starts[g])
            got_ids.append(group_ids[lo - base:hi - base])
            rows += decoded[lo - base:hi - base]
            g += 1
        if len(ids) and not np.array_equal(np.concatenate(got_ids), ids):
            return self.lookup(ids)  # a sidecar in another order than the index
        return [dict(r) for r in rows]

    def lookup(self, ids: np.ndarray) -> list[dict]:
        """One payload dict per id ({} for ids the sidecar does not have)."""
        ids = np.asarray(ids, dtype=np.int64)
        out: list[dict] = [{} for _ in range(len(ids))]
        if self._sorted is None:
            all_ids = self._pf.read(columns=["id"]).column("id").to_numpy().astype(np.int64, copy=False)
            self._order = np.argsort(all_ids, kind="stable")
            self._sorted = all_ids[self._order]
        if not len(self._sorted) or not len(ids):
            return out
        at = np.minimum(np.searchsorted(self._sorted, ids), len(self._sorted) - 1)
        found = self._sorted[at] == ids
        rows = np.where(found, self._order[at], -1)
        groups = np.searchsorted(self._group_starts, rows, side="right") - 1
        for g in np.unique(groups[found]):
            decoded = self._group(int(g))[1]
            for j in np.flatnonzero(found & (groups == g)):
                out[j] = dict(decoded[rows[j] - self._group_starts[g]])
        return out
