"""What the two Qdrant connectors share: point ids, and reading (qdrant_store: client local mode and
servers; qdrant_edge_store: the embedded Edge engine). Both are the same engine, so the semantics are too.

Ids: Qdrant holds unsigned 64-bit ints and canonical UUIDs. Any other id (negative or too large int, a
string that is not a canonical lower-case UUID) is stored under `ids.to_uuid(id)` with the original in
payload `_v2v_id`, and restored on read. The mapping is deterministic, so upserts stay idempotent.

Reading pages with `scroll` in id order; a Batch's cursor is `{"offset": next_page_offset}` (or
`{"end": True}` after the last page). Shards are `SliceCondition` hash slices (any id space, UUIDs too).

Several vectors: `vector_name=` picks the one to migrate; the others (named dense and sparse) travel in
`Batch.extra["vectors"]` and are written back unchanged. Option `filter=`: a filter in Qdrant's JSON syntax
(`{"must": [{"key": "tenant", "match": {"value": "a"}}]}`) restricts every read (count, stream, sample).
"""
from __future__ import annotations

import uuid
from typing import Any, Iterator, Sequence

import numpy as np

from connectors import ids as idmap
from connectors.base import EXTRA_VECTORS, Batch, Store, other_vectors, validate_vectors
from connectors.errors import StoreUsageError, UnreadableStoreError
from connectors.id_scan import sample_by_id_scan
from connectors.json_ids import PAYLOAD_FIELDS_FOR_ID, attach_id, encode_payload, restore_id

DISTANCE_TO_METRIC = {"Cosine": "cosine", "Dot": "ip", "Euclid": "l2"}
METRIC_TO_DISTANCE = {v: k for k, v in DISTANCE_TO_METRIC.items()}


def engine_point_id(x) -> tuple[Any, bool]:
    """(id Qdrant can hold, whether the original must be kept in the payload)."""
    x = idmap.normalize_id(x)
    if isinstance(x, int) and idmap.fits_uint64(x):
        return x, False
    if isinstance(x, str):
        try:
            if str(uuid.UUID(x)) == x:  # Qdrant returns UUIDs canonical: other spellings would not round-trip
                return x, False
        except ValueError:
            pass
    return idmap.to_uuid(x), True


def points_by_engine_id(batch: Batch, p: dict, uri: str, engine: str) -> tuple[np.ndarray, dict, dict]:
    """(validated vectors, {engine id: (row, payload as stored)}, the rows' other vectors) for an upsert
    into Qdrant or Qdrant Edge (p: the store's params).

    A repeated id keeps its last row, as an upsert would; ids the engine cannot hold carry their original.
    """
    extras = other_vectors(batch, p["others"], f"Qdrant collection {uri}")
    vectors = validate_vectors(batch.vectors, p["dim"], where=f"upsert into {uri}")
    if len(batch.ids) != len(vectors):
        raise StoreUsageError(f"{len(batch.ids)} ids for {len(vectors)} vectors.", "pass one id per vector.")
    rows: dict = {}
    for i, x in enumerate(batch.ids):
        key, mapped = engine_point_id(x)
        payload = dict(batch.payloads[i] or {}) if batch.payloads is not None else {}
        payload = (attach_id(payload, idmap.normalize_id(x), engine) if mapped
                   else encode_payload(payload, engine))
        rows[key] = (i, payload)
    return vectors, rows, extras


def point_vectors(batch: Batch, i: int, vector: np.ndarray, p: dict, extras: dict, sparse) -> Any:
    """The vector(s) of row i for an upsert: the migrated one, plus the row's other vectors (a row without
    one leaves it out). sparse(indices, values) builds the engine's sparse vector."""
    if not p["name"] and not p["others"]:
        return vector.tolist()
    out = {p["name"] or "": vector.tolist()}
    for name, values in extras.items():
        value = values[i]
        if value is not None:
            out[name] = (sparse(list(value["indices"]), list(value["values"])) if p["others"][name] == "sparse"
                         else [float(x) for x in value])
    return out


def pick_vector(vectors: dict, option: str | None, where: str, preferred: str | None = None) -> str:
    """The named vector to migrate: `option` (vector_name=), the only one there is, or `preferred`
    (Store.select_vector) when there are several."""
    if option is None and preferred in vectors and len(vectors) > 1:
        return preferred
    if option is None:
        if len(vectors) != 1:
            raise StoreUsageError(f"{where} has named vectors {', '.join(sorted(vectors))}; which one to "
                                  "migrate is ambiguous.", "pass vector_name=NAME (one of those).")
        return next(iter(vectors))
    if option not in vectors:
        raise StoreUsageError(f"{where} has no vector {option!r}; it has {', '.join(sorted(vectors))}.",
                              "pass vector_name= one of those.")
    return option


class QdrantBase(Store):
    """Reading for both Qdrant connectors. Subclasses give `_params()` ({'name', 'dim', 'distance'} of the
    migrated vector, 'others': {name: 'dense'|'sparse'}), `_scroll(limit, offset, shard, vectors, payload)`
    -> (records, next offset), `_fetch(keys)` -> records, and `where` (the store named in messages); they
    keep the vector_name= option in `_vector_name_option` and the params in `_cached_params`."""

    _vector_name_option: str | None = None
    _preferred_vector: str | None = None  # select_vector(): settles a choice the option leaves open
    _cached_params: dict | None = None

    def select_vector(self, name: str | None) -> None:
        if name and name != self._preferred_vector:
            self._preferred_vector, self._cached_params = name, None

    def _vector_names(self) -> list | bool:
        """What scroll/retrieve should return: the migrated vector and the others."""
        p = self._params()
        if not p["name"] and not p["others"]:
            return True
        return [p["name"] or "", *p["others"]]

    @property
    def where(self) -> str:
        return f"Qdrant collection {self.uri}"

    def _params(self) -> dict:
        raise NotImplementedError

    def _scroll(self, limit: int, offset: Any, shard: Any, vectors: bool, payload: Any = True):
        raise NotImplementedError

    def _fetch(self, keys: list) -> list:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        return self._params()["dim"]

    @property
    def metric(self) -> str:
        distance = self._params()["distance"]
        if distance not in DISTANCE_TO_METRIC:
            raise UnreadableStoreError(f"{self.where} uses {distance} distance, which v2v-migrate does not "
                                       "translate (it supports Cosine, Dot and Euclid).",
                                       "migrate from a collection with Cosine, Dot or Euclid distance.")
        return DISTANCE_TO_METRIC[distance]

    @property
    def id_type(self) -> str:
        records, _ = self._scroll(1, None, None, vectors=False, payload=PAYLOAD_FIELDS_FOR_ID)
        if not records:
            return "int"
        user_id, _ = restore_id(records[0].id, records[0].payload)
        return "int" if isinstance(user_id, int) else "str"

    def _records_to_batch(self, records: list, cursor: Any) -> Batch:
        p = self._params()
        ids, payloads = [], []
        vectors = np.empty((len(records), p["dim"]), dtype=np.float32)
        others: dict = {name: [] for name in p["others"]}
        for i, r in enumerate(records):
            user_id, payload = restore_id(r.id, r.payload)
            ids.append(user_id)
            payloads.append(payload or {})
            vectors[i] = r.vector[p["name"] or ""] if isinstance(r.vector, dict) else r.vector
            for name, kind in p["others"].items():
                value = r.vector.get(name) if isinstance(r.vector, dict) else None
                if value is not None:
                    value = ({"indices": [int(x) for x in value.indices], "values": [float(x) for x in value.values]}
                             if kind == "sparse" else np.asarray(value, dtype=np.float32))
                others[name].append(value)
        return Batch(ids, vectors, payloads, cursor, {EXTRA_VECTORS: others} if others else {})

    def iter_batches(self, batch_size: int = 1024, cursor: Any = None, shard: Any = None) -> Iterator[Batch]:
        if cursor is not None and cursor.get("end"):
            return
        offset = None if cursor is None else cursor.get("offset")
        while True:
            records, offset = self._scroll(batch_size, offset, shard, vectors=True)
            # A cursor is saved as JSON: a UUID offset object becomes its string.
            offset = str(offset) if offset is not None and not isinstance(offset, (int, str)) else offset
            if records:
                yield self._records_to_batch(records, {"offset": offset} if offset is not None else {"end": True})
            if offset is None:
                return

    def shards(self, n: int) -> list:
        """n disjoint hash slices of the id space (Qdrant has no id-range filter; slices work for UUIDs too)."""
        return [None] if n <= 1 else [{"total": int(n), "index": i} for i in range(int(n))]

    def _id_chunks(self) -> Iterator[tuple[list, list]]:
        offset = None
        while True:
            records, offset = self._scroll(8192, offset, None, vectors=False, payload=PAYLOAD_FIELDS_FOR_ID)
            if records:
                yield [r.id for r in records], [restore_id(r.id, r.payload)[0] for r in records]
            if offset is None:
                return

    def _retrieve(self, keys: list) -> Batch:
        return self._records_to_batch(self._fetch(keys), None)

    def get(self, ids: Sequence) -> Batch:
        return self._retrieve([engine_point_id(x)[0] for x in ids])

    def sample(self, n: int, seed: int = 0) -> Batch:
        return sample_by_id_scan(self._id_chunks(), self._retrieve, n, seed, self.where)
