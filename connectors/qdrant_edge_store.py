"""Qdrant Edge connector: `qdrant-edge:DIR#COLLECTION` (qdrant-edge-py, the embedded Rust Qdrant engine).

One Edge shard per collection, stored in DIR/COLLECTION. Same semantics as the Qdrant connector (ids,
`_v2v_id`, cursor, slice shards), because it is the same engine: unsigned-int and UUID point ids, Cosine,
Dot and Euclid distances, JSON payloads, `scroll` in id order with a next-offset cursor, SliceCondition.

Why it is here: qdrant-client local mode is pure Python and commits per point (see qdrant_store.py); Edge
writes 20k x 384 in ~1 s and reads them back in ~0.7 s on this machine (benchmarks/connectors.py).
Edge keeps unit vectors bit-exact even on Cosine (it normalises only vectors that are not unit-length).
The shard's config (dim, distance) is read from the `edge_config.json` the engine persists, since the
Python API has no getter for it. An open shard holds a lock on its WAL: a second process gets
StoreLockedError.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from connectors.base import Batch, Store, check_metric
from connectors.id_scan import sample_by_id_scan
from connectors.json_ids import PAYLOAD_FIELDS_FOR_ID, restore_id
from connectors.qdrant_store import (
    DISTANCE_TO_METRIC, METRIC_TO_DISTANCE, engine_point_id, points_by_engine_id,
)
from v2v_migrate.errors import (
    DestinationNotEmptyError, DimensionMismatchError, MetricMismatchError, StoreLockedError, StoreNotFoundError,
    UnreadableStoreError, UsageError, V2VError,
)

CONFIG_FILE = "edge_config.json"
POINTS_PER_UPDATE = 4096
# One open shard per folder per process: the shard locks its WAL, a second load would lock itself out.
_OPEN_SHARDS: dict[str, list] = {}


def _user_id_and_payload(record) -> tuple[Any, dict | None]:
    return restore_id(record.id, record.payload)


class QdrantEdgeStore(Store):
    scheme = "qdrant-edge"
    writable = True

    def __init__(self, uri: str, vector_name: str | None = None, **options: Any):
        rest = str(uri).partition(":")[2]
        location, sep, collection = rest.rpartition("#")
        if not sep or not location or not collection or "/" in collection or collection in (".", ".."):
            raise UsageError(f"Qdrant Edge URI {uri!r} names no collection.",
                             "write it as qdrant-edge:DIR#COLLECTION (the shard lives in DIR/COLLECTION).")
        super().__init__(uri, **options)
        self.location = os.path.realpath(os.path.expanduser(location))
        self.collection = collection
        self.path = os.path.join(self.location, collection)
        self._vector_name_option = vector_name
        self._shard = None
        self._params: dict | None = None

    # -- shard handling --------------------------------------------------------------------------
    def _open(self):
        if self._shard is not None:
            return self._shard
        if self.path in _OPEN_SHARDS:
            _OPEN_SHARDS[self.path][1] += 1
            self._shard = _OPEN_SHARDS[self.path][0]
            return self._shard
        self._require_config()
        import qdrant_edge

        try:
            shard = qdrant_edge.EdgeShard.load(self.path)
        except Exception as e:  # the binding raises a bare Exception
            if "WouldBlock" in str(e) or "lock" in str(e).lower():
                raise StoreLockedError(f"Qdrant Edge shard {self.path!r} is open in another process.",
                                       "close the other program using it; an Edge shard allows one "
                                       "process at a time.") from None
            raise UnreadableStoreError(f"Qdrant Edge shard {self.path!r} cannot be loaded: {e}",
                                       "check that the folder holds an intact Edge shard.") from None
        _OPEN_SHARDS[self.path] = [shard, 1]
        self._shard = shard
        return shard

    def close(self) -> None:
        if self._shard is None:
            return
        entry = _OPEN_SHARDS.get(self.path)
        if entry is not None and entry[0] is self._shard:
            entry[1] -= 1
            if entry[1] <= 0:
                del _OPEN_SHARDS[self.path]
                entry[0].flush()
                entry[0].close()
        self._shard = None

    def exists(self) -> bool:
        return (Path(self.path) / CONFIG_FILE).is_file()

    def _require_config(self) -> dict:
        if self._params is not None:
            return self._params
        if not self.exists():
            base = Path(self.location)
            names = sorted(p.name for p in base.iterdir() if (p / CONFIG_FILE).is_file()) if base.is_dir() else []
            raise StoreNotFoundError(
                f"Qdrant Edge collection {self.collection!r} not found in {self.location}; "
                f"existing collections: {', '.join(names) if names else '(none)'}.",
                "use one of those names after '#', or create the collection first.")
        try:
            vectors = json.loads((Path(self.path) / CONFIG_FILE).read_text())["vectors"]
        except (OSError, ValueError, KeyError) as e:
            raise UnreadableStoreError(f"Qdrant Edge config of {self.path!r} is unreadable ({e}).",
                                       "check that the folder holds an intact Edge shard.") from None
        if not vectors:
            raise UnreadableStoreError(f"Qdrant Edge shard {self.path!r} has no dense vectors.",
                                       "point at a shard with dense vectors.")
        name = self._vector_name_option
        if name is None:
            if len(vectors) != 1:
                raise UsageError(f"Qdrant Edge shard {self.path!r} has named vectors "
                                 f"{', '.join(sorted(vectors))}; which one to migrate is ambiguous.",
                                 "pass vector_name=NAME (one of those).")
            name = next(iter(vectors))
        if name not in vectors:
            raise UsageError(f"Qdrant Edge shard {self.path!r} has no vector {name!r}; it has "
                             f"{', '.join(sorted(vectors))}.", "pass vector_name= one of those.")
        self._params = {"name": name, "dim": int(vectors[name]["size"]), "distance": vectors[name]["distance"]}
        return self._params

    # -- reading ---------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._require_config()["dim"]

    @property
    def metric(self) -> str:
        distance = self._require_config()["distance"]
        if distance not in DISTANCE_TO_METRIC:
            raise UnreadableStoreError(
                f"Qdrant Edge shard {self.path!r} uses {distance} distance, which v2v-migrate does not translate "
                "(it supports Cosine, Dot and Euclid).", "migrate from a shard with Cosine, Dot or Euclid distance.")
        return DISTANCE_TO_METRIC[distance]

    @property
    def id_type(self) -> str:
        records, _ = self._scroll(1, None, None, vectors=False, payload=PAYLOAD_FIELDS_FOR_ID)
        if not records:
            return "int"
        user_id, _ = _user_id_and_payload(records[0])
        return "int" if isinstance(user_id, int) else "str"

    def count(self) -> int:
        import qdrant_edge

        return int(self._open().count(qdrant_edge.CountRequest(exact=True)))

    def _scroll(self, limit: int, offset: Any, shard: Any, vectors: bool, payload: Any = True):
        import qdrant_edge

        name = self._require_config()["name"]
        flt = None
        if shard is not None:
            flt = qdrant_edge.Filter(must=[qdrant_edge.SliceCondition(int(shard["total"]), int(shard["index"]))])
        req = qdrant_edge.ScrollRequest(offset=offset, limit=int(limit), filter=flt, with_payload=payload,
                                        with_vector=[name] if vectors and name else vectors)
        try:
            return self._open().scroll(req)
        except V2VError:
            raise
        except Exception as e:
            raise UnreadableStoreError(f"Qdrant Edge scroll failed for {self.uri}: {e}",
                                       "check that the shard is intact.") from None

    def _records_to_batch(self, records: list, cursor: Any) -> Batch:
        name, dim = self._require_config()["name"], self.dim
        ids, payloads = [], []
        vectors = np.empty((len(records), dim), dtype=np.float32)
        for i, r in enumerate(records):
            user_id, payload = _user_id_and_payload(r)
            ids.append(user_id)
            payloads.append(payload or {})
            v = r.vector
            vectors[i] = v[name] if isinstance(v, dict) else v
        return Batch(ids, vectors, payloads, cursor)

    def iter_batches(self, batch_size: int = 1024, cursor: Any = None, shard: Any = None) -> Iterator[Batch]:
        if cursor is not None and cursor.get("end"):
            return
        offset = None if cursor is None else cursor.get("offset")
        while True:
            records, offset = self._scroll(batch_size, offset, shard, vectors=True)
            offset = str(offset) if offset is not None and not isinstance(offset, (int, str)) else offset
            if records:
                yield self._records_to_batch(records, {"offset": offset} if offset is not None else {"end": True})
            if offset is None:
                return

    def shards(self, n: int) -> list:
        """n disjoint hash slices of the id space (SliceCondition; works for UUID ids too)."""
        return [None] if n <= 1 else [{"total": int(n), "index": i} for i in range(int(n))]

    def _id_chunks(self) -> Iterator[tuple[list, list]]:
        offset = None
        while True:
            records, offset = self._scroll(8192, offset, None, vectors=False, payload=PAYLOAD_FIELDS_FOR_ID)
            if records:
                yield [r.id for r in records], [_user_id_and_payload(r)[0] for r in records]
            if offset is None:
                return

    def _retrieve(self, keys: list) -> Batch:
        name = self._require_config()["name"]
        records: list = []
        for i in range(0, len(keys), 4096):
            records += self._open().retrieve(keys[i:i + 4096], with_payload=True,
                                             with_vector=[name] if name else True)
        return self._records_to_batch(records, None)

    def get(self, ids: Sequence) -> Batch:
        return self._retrieve([engine_point_id(x)[0] for x in ids])

    def sample(self, n: int, seed: int = 0) -> Batch:
        return sample_by_id_scan(self._id_chunks(), self._retrieve, n, seed, f"Qdrant Edge shard {self.uri}")

    # -- writing ---------------------------------------------------------------------------------
    def create(self, dim: int, metric: str, id_type: str = "int", exist_ok: bool = True, **kw: Any) -> None:
        metric = check_metric(metric)
        if self.exists():
            if not exist_ok:
                raise DestinationNotEmptyError(f"Qdrant Edge collection {self.collection!r} already exists.",
                                               "choose a new collection name, or delete its folder.")
            if self.dim != int(dim):
                raise DimensionMismatchError(
                    f"Qdrant Edge collection {self.collection!r} holds {self.dim}-d vectors, not {dim}-d.",
                    "write to a new collection name for the new model.")
            if self.metric != metric:
                raise MetricMismatchError(
                    f"Qdrant Edge collection {self.collection!r} uses metric {self.metric}, not {metric}.",
                    "write to a new collection name, or ask for the collection's metric.")
            return
        import qdrant_edge

        config = qdrant_edge.EdgeConfig(vectors=qdrant_edge.EdgeVectorParams(
            size=int(dim), distance=getattr(qdrant_edge.Distance, METRIC_TO_DISTANCE[metric])))
        Path(self.location).mkdir(parents=True, exist_ok=True)
        shard = qdrant_edge.EdgeShard.create(self.path, config)
        _OPEN_SHARDS[self.path] = [shard, 1]
        self._shard, self._params = shard, None

    def upsert(self, batch: Batch) -> None:
        import qdrant_edge

        p = self._require_config()
        vectors, rows = points_by_engine_id(batch, p["dim"], self.uri, "Qdrant Edge")
        shard = self._open()
        items = list(rows.items())
        for start in range(0, len(items), POINTS_PER_UPDATE):
            points = []
            for key, (i, payload) in items[start:start + POINTS_PER_UPDATE]:
                vec = vectors[i].tolist()
                points.append(qdrant_edge.Point(key, {p["name"]: vec} if p["name"] else vec, payload))
            try:
                shard.update(qdrant_edge.UpdateOperation.upsert_points(points))
            except Exception as e:
                raise UsageError(f"Qdrant Edge upsert failed for {self.uri}: {e}",
                                 "check the payloads (JSON values only).") from None

    def flush(self) -> None:
        if self._shard is not None:
            self._shard.flush()
