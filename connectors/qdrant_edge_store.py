"""Qdrant Edge connector: `qdrant-edge:DIR#COLLECTION` (qdrant-edge-py, the embedded Rust Qdrant engine).

One Edge shard per collection, stored in DIR/COLLECTION. Same semantics as the Qdrant connector (ids,
`_v2v_id`, cursor, slice shards), because it is the same engine: unsigned-int and UUID point ids, Cosine,
Dot and Euclid distances, JSON payloads, `scroll` in id order with a next-offset cursor, SliceCondition.

Why it is here: qdrant-client local mode is pure Python and commits per point (see qdrant_store.py); Edge
writes 20k x 384 in ~1 s and reads them back in ~0.7 s on this machine (benchmarks/connectors.py).
Edge keeps unit vectors bit-exact even on Cosine (it normalises only vectors that are not unit-length).
The shard's config (vectors, sparse vectors, HNSW and optimizer settings) is read from the `edge_config.json`
the engine persists, since the Python API has no getter for it; `describe_schema` adds the payload indexes,
and `create(..., schema=)` builds all of it (connectors.qdrant_schema). An open shard holds a lock on its WAL: a second process gets
StoreLockedError.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from connectors.base import Batch, check_metric
from connectors.errors import (
    ConnectorError, StoreLockedError, StoreNotFoundError, StoreUsageError, UnreadableStoreError,
)
from connectors.qdrant_common import QdrantBase, engine_point_id, pick_vector, point_vectors, points_by_engine_id
from connectors.qdrant_schema import describe_edge, edge_config, edge_filter, edge_payload_index
from connectors.schema import minimal
from connectors.state import FileStateMixin

CONFIG_FILE = "edge_config.json"
POINTS_PER_UPDATE = 4096
# One open shard per folder per process: the shard locks its WAL, a second load would lock itself out.
_OPEN_SHARDS: dict[str, list] = {}


class QdrantEdgeStore(FileStateMixin, QdrantBase):
    scheme = "qdrant-edge"
    writable = True

    def __init__(self, uri: str, vector_name: str | None = None, filter: Any = None, **options: Any):
        rest = str(uri).partition(":")[2]
        location, sep, collection = rest.rpartition("#")
        if not sep or not location or not collection or "/" in collection or collection in (".", ".."):
            raise StoreUsageError(f"Qdrant Edge URI {uri!r} names no collection.",
                             "write it as qdrant-edge:DIR#COLLECTION (the shard lives in DIR/COLLECTION).")
        super().__init__(uri, **options)
        self.location = os.path.realpath(os.path.expanduser(location))
        self.collection = collection
        self.path = os.path.join(self.location, collection)
        self._vector_name_option = vector_name
        self._filter = edge_filter(filter)
        self._shard = None
        self._cached_params: dict | None = None

    @property
    def where(self) -> str:
        return f"Qdrant Edge shard {self.path}"

    def _state_path(self) -> Path:
        return Path(self.location) / f"{self.collection}.v2v-state.json"  # beside the shard, not inside it

    # -- shard handling --------------------------------------------------------------------------
    def _open(self):
        if self._shard is not None:
            return self._shard
        if self.path in _OPEN_SHARDS:
            _OPEN_SHARDS[self.path][1] += 1
            self._shard = _OPEN_SHARDS[self.path][0]
            return self._shard
        self._params()
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

    def _params(self) -> dict:
        if self._cached_params is not None:
            return self._cached_params
        if not self.exists():
            base = Path(self.location)
            names = sorted(p.name for p in base.iterdir() if (p / CONFIG_FILE).is_file()) if base.is_dir() else []
            raise StoreNotFoundError(
                f"Qdrant Edge collection {self.collection!r} not found in {self.location}; "
                f"existing collections: {', '.join(names) if names else '(none)'}.",
                "use one of those names after '#', or create the collection first.")
        config = self._config()
        vectors = config.get("vectors") or {}
        if not vectors:
            raise UnreadableStoreError(f"Qdrant Edge shard {self.path!r} has no dense vectors.",
                                       "point at a shard with dense vectors.")
        name = pick_vector(vectors, self._vector_name_option, self.where, self._preferred_vector)
        others = {n: "dense" for n in vectors if n != name}
        others.update({n: "sparse" for n in config.get("sparse_vectors") or {}})
        self._cached_params = {"name": name, "dim": int(vectors[name]["size"]), "distance": vectors[name]["distance"],
                               "others": others}
        return self._cached_params

    def _config(self) -> dict:
        try:
            return json.loads((Path(self.path) / CONFIG_FILE).read_text())
        except (OSError, ValueError) as e:
            raise UnreadableStoreError(f"Qdrant Edge config of {self.path!r} is unreadable ({e}).",
                                       "check that the folder holds an intact Edge shard.") from None

    def describe_schema(self) -> dict:
        name = self._params()["name"]
        return describe_edge(name, self._config(), self._open().info().payload_schema)

    # -- reading ---------------------------------------------------------------------------------
    def count(self) -> int:
        import qdrant_edge

        return int(self._open().count(qdrant_edge.CountRequest(exact=True, filter=self._filter)))

    def _scroll(self, limit: int, offset: Any, shard: Any, vectors: bool, payload: Any = True):
        import qdrant_edge

        conditions = [self._filter] if self._filter is not None else []
        if shard is not None:
            conditions.append(qdrant_edge.SliceCondition(int(shard["total"]), int(shard["index"])))
        flt = qdrant_edge.Filter(must=conditions) if conditions else None
        req = qdrant_edge.ScrollRequest(offset=offset, limit=int(limit), filter=flt, with_payload=payload,
                                        with_vector=self._vector_names() if vectors else False)
        try:
            return self._open().scroll(req)
        except ConnectorError:
            raise
        except Exception as e:
            raise UnreadableStoreError(f"Qdrant Edge scroll failed for {self.uri}: {e}",
                                       "check that the shard is intact.") from None

    def _fetch(self, keys: list) -> list:
        records: list = []
        for i in range(0, len(keys), 4096):
            records += self._open().retrieve(keys[i:i + 4096], with_payload=True, with_vector=self._vector_names())
        return records

    # -- writing ---------------------------------------------------------------------------------
    def create(self, dim: int, metric: str, id_type: str = "int", exist_ok: bool = True,
               schema: dict | None = None, **kw: Any) -> None:
        metric = check_metric(metric)
        if self.exists():
            self.check_existing(dim, metric, exist_ok=exist_ok, what=self.where, new="collection name")
            return
        import qdrant_edge

        description = schema or minimal("qdrant-edge", dim, metric)
        Path(self.location).mkdir(parents=True, exist_ok=True)
        shard = qdrant_edge.EdgeShard.create(self.path, edge_config(description, int(dim), metric))
        for field, kind in (description.get("payload_indexes") or {}).items():
            shard.update(qdrant_edge.UpdateOperation.create_field_index(field, edge_payload_index(kind)))
        _OPEN_SHARDS[self.path] = [shard, 1]
        self._shard, self._cached_params = shard, None
        self.select_vector(description.get("vector") or None)

    def upsert(self, batch: Batch) -> None:
        import qdrant_edge

        p = self._params()
        vectors, rows, extras = points_by_engine_id(batch, p, self.uri, "Qdrant Edge")
        shard = self._open()
        items = list(rows.items())
        for start in range(0, len(items), POINTS_PER_UPDATE):
            points = [qdrant_edge.Point(key, point_vectors(batch, i, vectors[i], p, extras, qdrant_edge.SparseVector),
                                        payload) for key, (i, payload) in items[start:start + POINTS_PER_UPDATE]]
            try:
                shard.update(qdrant_edge.UpdateOperation.upsert_points(points))
            except Exception as e:
                raise StoreUsageError(f"Qdrant Edge upsert failed for {self.uri}: {e}",
                                 "check the payloads (JSON values only).") from None

    def delete(self, ids: Sequence) -> None:
        import qdrant_edge

        if not self.exists():
            return  # nothing to delete from
        keys = [engine_point_id(x)[0] for x in ids]
        shard = self._open()
        for start in range(0, len(keys), POINTS_PER_UPDATE):
            try:
                shard.update(qdrant_edge.UpdateOperation.delete_points(keys[start:start + POINTS_PER_UPDATE]))
            except Exception as e:
                raise UnreadableStoreError(f"Qdrant Edge delete failed for {self.uri}: {e}",
                                           "check that the shard is intact.") from None

    def flush(self) -> None:
        if self._shard is not None:
            self._shard.flush()

    def search(self, queries, k: int = 10) -> tuple[list[list], list[list]]:
        """The shard's own search (the Edge engine's index): (user ids per query, scores per query)."""
        import numpy as np
        import qdrant_edge

        from connectors.base import validate_vectors
        from connectors.json_ids import PAYLOAD_FIELDS_FOR_ID, restore_id

        p = self._params()
        q = validate_vectors(np.asarray(queries, dtype=np.float32), p["dim"], where="search queries")
        ids, scores = [], []
        for v in q:
            req = qdrant_edge.SearchRequest(qdrant_edge.Query.Nearest(v.tolist(), using=p["name"] or None),
                                            int(k), with_payload=PAYLOAD_FIELDS_FOR_ID)
            try:
                hits = self._open().search(req)
            except Exception as e:  # the binding raises a bare Exception
                raise UnreadableStoreError(f"Qdrant Edge search failed for {self.uri}: {e}",
                                           "check that the shard is intact.") from None
            ids.append([restore_id(h.id, h.payload)[0] for h in hits])
            scores.append([float(h.score) for h in hits])
        return ids, scores
