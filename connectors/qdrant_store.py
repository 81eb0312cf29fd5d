"""Qdrant connector: `qdrant:DIR#COLLECTION` (qdrant-client local mode) and `qdrant:http(s)://HOST:PORT#COLLECTION`.

Reading pages with `scroll` in id order; a Batch's cursor is `{"offset": next_page_offset}` (or
`{"end": True}` after the last page), which `iter_batches(cursor=...)` continues from.

Ids: see qdrant_points (unsigned ints and UUIDs as they are; any other id mapped, the original kept).

Cosine collections: Qdrant normalises vectors on write. Unit vectors come back within 1 ulp, but not
always bit-identical (local mode divides by a float32 norm that is 1 +- 6e-8); Dot and Euclid collections
return vectors bit-exactly.

Local-mode speed: qdrant-client commits (and fsyncs) one sqlite transaction per point, ~24 ms each on
this project's disks. With `fast_local_writes=True` (default) we switch the collection's sqlite file to
WAL with synchronous=NORMAL: commits stop fsyncing, a crashed process still loses nothing committed, a power
loss can drop the last commits (never corrupt the file); `flush()` checkpoints the WAL to make them durable.

Shards: `SliceCondition` (hash(id) % total == index) splits any id space, UUIDs included, into disjoint
parts. Local mode supports it; a server must be recent enough to know the condition.
"""
from __future__ import annotations

import atexit
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from connectors.base import Batch, check_metric
from connectors.errors import (
    ConnectorError, StoreLockedError, StoreNotFoundError, StoreUsageError, UnreadableStoreError,
)
from connectors.credentials import is_server_location, load_credentials, parse_server_location, redact
from connectors.qdrant_common import QdrantBase, engine_point_id, pick_vector, point_vectors, points_by_engine_id
from connectors.qdrant_schema import client_create_kwargs, client_filter, describe_client
from connectors.retry import DEFAULT_DELAY, DEFAULT_TRIES, Retrier, describe
from connectors.schema import minimal

# Qdrant server refuses requests over 32 MB by default (service.max_request_size_mb); aim at half.
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
MAX_POINTS_PER_REQUEST = 2048

# One local-mode client per folder per process: local mode locks its folder, so a second client on the
# same folder (e.g. source and destination collections side by side) would lock itself out.
_LOCAL_CLIENTS: dict[str, list] = {}


@atexit.register
def _close_local_clients() -> None:
    # Release folder locks before interpreter teardown (QdrantClient.__del__ fails once imports are gone).
    for client, _ in list(_LOCAL_CLIENTS.values()):
        try:
            client.close()
        except Exception:
            pass
    _LOCAL_CLIENTS.clear()


def _distance_name(distance) -> str:
    return getattr(distance, "value", str(distance))


class QdrantStore(QdrantBase):
    scheme = "qdrant"
    writable = True

    def __init__(self, uri: str, vector_name: str | None = None, credentials_file: str | None = None,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, timeout: int | None = None,
                 fast_local_writes: bool = True, filter: Any = None, retries: int = DEFAULT_TRIES,
                 retry_delay: float = DEFAULT_DELAY, **options: Any):
        rest = str(uri).partition(":")[2]
        location, sep, collection = rest.rpartition("#")
        if not sep or not location or not collection:
            raise StoreUsageError(f"Qdrant URI {uri!r} names no collection.",
                             "write it as qdrant:DIR#COLLECTION or qdrant:https://HOST:6333#COLLECTION.")
        self._server = parse_server_location(location, "qdrant") if is_server_location(location) else None
        super().__init__(uri, **options)
        self.location = location if self._server else os.path.realpath(os.path.expanduser(location))
        self.collection = collection
        self._creds = load_credentials("qdrant", credentials_file) if self._server else {}
        self._vector_name_option = vector_name
        self._max_request_bytes = int(max_request_bytes)
        self._timeout = timeout
        self._fast_local_writes = bool(fast_local_writes)
        self._filter = client_filter(filter)
        self.retrier = Retrier(int(retries), float(retry_delay))
        self._wal_on = False
        self._client_obj = None
        self._cached_params: dict | None = None

    # -- connection ------------------------------------------------------------------------------
    def _fail(self, exc: Exception, what: str, cls=UnreadableStoreError, fix: str | None = None) -> ConnectorError:
        msg = redact(describe(exc), self._creds)[:500]
        return cls(f"Qdrant {what} failed for {self.uri}: {msg}",
                   fix or "check that the collection is healthy and the server reachable.")

    def _call(self, what: str, fn, cls=UnreadableStoreError, fix: str | None = None):
        """fn(client): on a server retried on transient errors; errors typed, secrets masked."""
        return self.retrier.guard(lambda: fn(self._client()), f"Qdrant {what} on {self.uri}",
                                  lambda e: redact(describe(e), self._creds), lambda e: self._fail(e, what, cls, fix),
                                  fix, retry=self._server is not None)

    def _client(self, create: bool = False):
        if self._client_obj is not None:
            return self._client_obj
        from qdrant_client import QdrantClient

        if self._server is not None:
            key = self._creds.get("api_key")
            try:
                self._client_obj = QdrantClient(url=self._server.url, https=self._server.tls,
                                                api_key=key.reveal() if key else None, timeout=self._timeout,
                                                check_compatibility=False)
            except Exception as e:
                raise self._fail(e, "connection", fix="check the address and QDRANT_API_KEY "
                                 "(or credentials_file=).") from None
            return self._client_obj
        if self.location in _LOCAL_CLIENTS:
            entry = _LOCAL_CLIENTS[self.location]
            entry[1] += 1
            self._client_obj = entry[0]
            return self._client_obj
        if not Path(self.location).is_dir():
            if not create:
                raise StoreNotFoundError(f"Qdrant folder {self.location!r} does not exist.",
                                         "check the path (qdrant:DIR#COLLECTION).")
            Path(self.location).mkdir(parents=True, exist_ok=True)
        try:
            client = QdrantClient(path=self.location)
        except (RuntimeError, BlockingIOError) as e:
            if "already accessed" in str(e) or isinstance(e, BlockingIOError):
                raise StoreLockedError(f"Qdrant folder {self.location!r} is open in another process.",
                                       "close the other program using it (local mode allows one process "
                                       "per folder), or run a Qdrant server for shared access.") from None
            raise self._fail(e, "open") from None
        _LOCAL_CLIENTS[self.location] = [client, 1]
        self._client_obj = client
        return client

    def close(self) -> None:
        if self._client_obj is None:
            return
        if self._server is None:
            entry = _LOCAL_CLIENTS.get(self.location)
            if entry is not None and entry[0] is self._client_obj:
                entry[1] -= 1
                if entry[1] <= 0:
                    del _LOCAL_CLIENTS[self.location]
                    entry[0].close()
        else:
            self._client_obj.close()
        self._client_obj = None

    def exists(self) -> bool:
        if self._server is None and not Path(self.location).is_dir():
            return False
        return self._call("request", lambda c: c.collection_exists(self.collection))

    # -- state kept with the collection: its metadata (connectors.state) ---------------------------
    keeps_state = True

    def read_state(self, key: str) -> dict | None:
        from connectors.state import PREFIX, check_key, decode

        check_key(key)
        if not self.exists():
            return None
        info = self._call("request", lambda c: c.get_collection(self.collection))
        meta = getattr(info.config, "metadata", None) or {}
        return decode(key, meta.get(PREFIX + key), f"Qdrant collection {self.uri}")

    def write_state(self, key: str, value: dict | None) -> None:
        import json

        from connectors.state import PREFIX, encode

        text = encode(key, value)
        record = json.loads(text) if text is not None else None  # None removes the key (metadata merge)
        self._call("update", lambda c: c.update_collection(self.collection, metadata={PREFIX + key: record}),
                   StoreUsageError)

    def _params(self) -> dict:
        if self._cached_params is not None:
            return self._cached_params
        fix = "check the address, that the server runs, and QDRANT_API_KEY (or credentials_file=)."
        found = self._call("request", lambda c: c.collection_exists(self.collection), fix=fix)
        names = [] if found else sorted(c.name for c in self._call(
            "request", lambda c: c.get_collections(), fix=fix).collections)
        params_all = self._call("request", lambda c: c.get_collection(self.collection), fix=fix).config.params \
            if found else None
        vectors = params_all.vectors if found else None
        if not found:
            raise StoreNotFoundError(
                f"Qdrant collection {self.collection!r} not found in {self.location}; "
                f"existing collections: {', '.join(names) if names else '(none)'}.",
                "use one of those names after '#', or create the collection first.")
        if vectors is None or (isinstance(vectors, dict) and not vectors):
            raise UnreadableStoreError(f"Qdrant collection {self.collection!r} has no dense vectors.",
                                       "point at a collection with dense vectors.")
        if isinstance(vectors, dict):
            name = pick_vector(vectors, self._vector_name_option, self.where, self._preferred_vector)
            params = vectors[name]
        else:
            name, params = None, vectors
        if getattr(params, "multivector_config", None) is not None:
            raise UnreadableStoreError(f"Qdrant vector {name or '(default)'} is a multivector.",
                                       "choose a single dense vector (vector_name=).")
        distance = _distance_name(params.distance)
        others = {n: "dense" for n in (vectors if isinstance(vectors, dict) else {}) if n != name}
        others.update({n: "sparse" for n in params_all.sparse_vectors or {}})
        self._cached_params = {"name": name, "dim": int(params.size), "distance": distance, "others": others}
        return self._cached_params

    @property
    def flavor(self) -> str:
        return "qdrant" if self._server is not None else "qdrant-local"

    def describe_schema(self) -> dict:
        info = self._call("request", lambda c: c.get_collection(self.collection))
        return describe_client(self.flavor, self._params()["name"], info)

    # -- reading (the rest: QdrantBase) -------------------------------------------------------
    def count(self) -> int:
        self._params()
        return int(self._call("count", lambda c: c.count(self.collection, count_filter=self._filter,
                                                         exact=True)).count)

    def _read_filter(self, shard: Any):
        """The filter= option and the shard's slice, as one filter (None when neither)."""
        from qdrant_client import models

        conditions = [self._filter] if self._filter is not None else []
        if shard is not None:
            conditions.append(models.SliceCondition(slice=models.Slice(total=int(shard["total"]),
                                                                       index=int(shard["index"]))))
        return models.Filter(must=conditions) if conditions else None

    def _scroll(self, limit: int, offset: Any, shard: Any, vectors: bool, payload: Any = True):
        return self._call("scroll", lambda c: c.scroll(
            self.collection, scroll_filter=self._read_filter(shard), limit=int(limit), offset=offset,
            with_payload=payload, with_vectors=self._vector_names() if vectors else False))

    def _fetch(self, keys: list) -> list:
        records: list = []
        for i in range(0, len(keys), 1024):
            records += self._call("retrieve", lambda c: c.retrieve(
                self.collection, ids=keys[i:i + 1024], with_payload=True, with_vectors=self._vector_names()))
        return records

    # -- writing ---------------------------------------------------------------------------------
    def create(self, dim: int, metric: str, id_type: str = "int", exist_ok: bool = True,
               schema: dict | None = None, **kw: Any) -> None:
        metric = check_metric(metric)
        self._client(create=True)
        if self._call("request", lambda c: c.collection_exists(self.collection)):
            self.check_existing(dim, metric, exist_ok=exist_ok, what=self.where, new="collection name")
            return
        from qdrant_client import models

        description = schema or minimal(self.flavor, dim, metric)
        fix = "check the schema's settings and the server's permissions."
        self._call("create_collection", lambda c: c.create_collection(
            self.collection, **client_create_kwargs(description, int(dim), metric)), StoreUsageError, fix)
        for field, kind in (description.get("payload_indexes") or {}).items():
            if self._server is not None:  # local mode keeps none (it warns and ignores them)
                self._call("create_payload_index", lambda c: c.create_payload_index(
                    self.collection, field, field_schema=models.PayloadSchemaType(kind), wait=True),
                    StoreUsageError, fix)
        self._cached_params = None
        self.select_vector(description.get("vector") or None)

    def upsert(self, batch: Batch) -> None:
        p = self._params()
        vectors, rows, extras = points_by_engine_id(batch, p, self.uri, "Qdrant")
        keys, chunk_bytes = [], 0
        for key, (i, payload) in rows.items():
            row_bytes = 12 * p["dim"] + 64 + len(json.dumps(payload, default=str))  # JSON floats ~12 chars
            if keys and (chunk_bytes + row_bytes > self._max_request_bytes or len(keys) >= MAX_POINTS_PER_REQUEST):
                self._send(batch, keys, rows, vectors, extras)
                keys, chunk_bytes = [], 0
            keys.append(key)
            chunk_bytes += row_bytes
        if keys:
            self._send(batch, keys, rows, vectors, extras)

    def delete(self, ids: Sequence) -> None:
        from qdrant_client import models

        if not self.exists():
            return  # nothing to delete from
        keys = [engine_point_id(x)[0] for x in ids]
        self._prepare_local_writes()
        for i in range(0, len(keys), MAX_POINTS_PER_REQUEST):
            part = keys[i:i + MAX_POINTS_PER_REQUEST]
            self._call("delete", lambda c: c.delete(self.collection, wait=True,
                                                    points_selector=models.PointIdsList(points=part)))

    def _local_sqlite(self):
        """The sqlite connection behind a local-mode collection (private API: None if it moved)."""
        inner = getattr(self._client(), "_client", None)
        collection = getattr(inner, "collections", {}).get(self.collection)
        storage = getattr(collection, "storage", None)
        return getattr(storage, "storage", None)

    def _prepare_local_writes(self) -> None:
        if self._server is None and self._fast_local_writes and not self._wal_on:
            conn = self._local_sqlite()
            if conn is not None:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            self._wal_on = True

    def flush(self) -> None:
        if self._server is None and self._wal_on:
            conn = self._local_sqlite()
            if conn is not None:
                conn.execute("PRAGMA wal_checkpoint(FULL)")

    def _send(self, batch: Batch, keys: list, rows: dict, vectors: np.ndarray, extras: dict) -> None:
        from qdrant_client import models

        self._prepare_local_writes()
        p = self._params()
        if extras:  # rows may lack some of their other vectors: one PointStruct each
            points: Any = [models.PointStruct(id=k, payload=rows[k][1], vector=point_vectors(
                batch, rows[k][0], vectors[rows[k][0]], p, extras, lambda i, v: models.SparseVector(
                    indices=i, values=v))) for k in keys]
        else:
            vecs = [vectors[rows[k][0]].tolist() for k in keys]
            points = models.Batch(ids=keys, vectors={p["name"]: vecs} if p["name"] is not None else vecs,
                                  payloads=[rows[k][1] for k in keys])
        self._call("upsert", lambda c: c.upsert(self.collection, points=points, wait=True), StoreUsageError,
                   "check the payloads (JSON values only) and the server's request size limit "
                   "(max_request_bytes=).")

    def search(self, queries, k: int = 10) -> tuple[list[list], list[list]]:
        """The collection's own search (HNSW on a server; exact in local mode): (user ids, scores) per query."""
        from qdrant_client import models

        from connectors.base import validate_vectors
        from connectors.json_ids import PAYLOAD_FIELDS_FOR_ID, restore_id

        p = self._params()
        q = validate_vectors(np.asarray(queries, dtype=np.float32), p["dim"], where="search queries")
        requests = [models.QueryRequest(query=v.tolist(), using=p["name"], limit=int(k),
                                        with_payload=PAYLOAD_FIELDS_FOR_ID) for v in q]
        answers = self._call("search", lambda c: c.query_batch_points(self.collection, requests=requests))
        ids = [[restore_id(h.id, h.payload)[0] for h in a.points] for a in answers]
        return ids, [[float(h.score) for h in a.points] for a in answers]
