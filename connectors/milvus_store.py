"""Milvus connector: `milvus:PATH.db#COLLECTION` (Milvus Lite, embedded) and `milvus:http(s)://HOST:PORT#COLLECTION`.

Both go through `pymilvus.MilvusClient`, so the server path is the same code as the tested Lite path.
Reading uses the query iterator, which pages by primary key (`pk > last`): a Batch's cursor is the last pk
of the batch, and resuming is the same iterator with `pk > cursor` added to its filter.

Ids: an INT64 key holds int ids within int64; a VARCHAR key holds str ids natively and int ids as a
uuid5 key with the original in the dynamic field `_v2v_id` (restored on read). Str ids into an INT64
collection are refused (IdTypeError) — create the destination with id_type='str'.

Index on create: server HNSW (M=16, efConstruction=200); Lite FLAT (Milvus Lite 3.x accepts FLAT, IVF_FLAT,
HNSW, AUTOINDEX and DISKANN definitions; FLAT is exact and is what it historically supported). Option
`index_type=` overrides either.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from connectors import ids as idmap
from connectors.base import Batch, Store, check_metric, validate_vectors
from connectors.credentials import is_server_location, load_credentials, parse_server_location, redact
from connectors.errors import (
    ConnectorError, IdTypeError, StoreNotFoundError, StoreUsageError, UnreadableStoreError,
)
from connectors.id_scan import sample_by_id_scan
from connectors.json_ids import PAYLOAD_FIELDS_FOR_ID, attach_id, encode_payload, restore_id
from connectors.milvus_client import connect, disconnect
from connectors.milvus_schema import describe_collection, new_collection_schema

# The server's gRPC limit is 64 MB per request; we aim at half to leave room for protobuf framing.
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_ROWS_PER_REQUEST = 50_000
ITERATOR_MAX_BATCH = 16384  # pymilvus refuses larger iterator batches
METRIC_TO_MILVUS = {"cosine": "COSINE", "ip": "IP", "l2": "L2"}
MILVUS_TO_METRIC = {v: k for k, v in METRIC_TO_MILVUS.items()}


class _DropLiteTimestampWarning(logging.Filter):
    # Milvus Lite does not hand out an MVCC timestamp; pymilvus then warns on every iterator it opens.
    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


def _literal(value) -> str:
    """A pk value as a Milvus expression literal (strings quoted, quotes and backslashes escaped)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(int(value))


class MilvusStore(Store):
    scheme = "milvus"
    writable = True

    def __init__(self, uri: str, vector_field: str | None = None, credentials_file: str | None = None,
                 metric: str | None = None, index_type: str | None = None, id_max_length: int = 1024,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, timeout: float | None = None,
                 **options: Any):
        rest = str(uri).partition(":")[2]
        location, sep, collection = rest.rpartition("#")
        if not sep or not location or not collection:
            raise StoreUsageError(f"Milvus URI {uri!r} names no collection.",
                             "write it as milvus:PATH.db#COLLECTION or milvus:https://HOST:19530#COLLECTION.")
        self._server = parse_server_location(location, "milvus") if is_server_location(location) else None
        super().__init__(uri, **options)
        if self._server is None and not location.endswith(".db"):
            raise StoreUsageError(f"Milvus Lite path {location!r} does not end with .db.",
                             "name the Milvus Lite file PATH.db (e.g. milvus:./vectors.db#docs).")
        self.location = location if self._server else os.path.abspath(os.path.expanduser(location))
        self.collection = collection
        self._creds = load_credentials("milvus", credentials_file) if self._server else {}
        self._vector_field_option = vector_field
        self._metric_option = check_metric(metric) if metric else None
        self._index_type = index_type
        self._id_max_length = int(id_max_length)
        self._max_request_bytes = int(max_request_bytes)
        self._timeout = timeout
        self._client_obj = None
        self._schema: dict | None = None
        self._loaded = False
        logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_DropLiteTimestampWarning())

    # -- connection and schema -------------------------------------------------------------------
    def _fail(self, exc: Exception, what: str, cls=UnreadableStoreError, fix: str | None = None) -> ConnectorError:
        msg = redact(getattr(exc, "message", None) or str(exc), self._creds)
        return cls(f"Milvus {what} failed for {self.uri}: {msg}", fix or "check that the collection is "
                   "healthy and the server reachable.")

    def _client(self, create: bool = False):
        if self._client_obj is None:
            self._client_obj = connect(self.location, self._server, self._creds, self._timeout, create,
                                       lambda e, what, fix=None: self._fail(e, what, fix=fix))
        return self._client_obj

    def exists(self) -> bool:
        if self._server is None and not Path(self.location).exists():
            return False
        return self._client().has_collection(self.collection)

    def _require(self) -> dict:
        if self._schema is not None:
            return self._schema
        client = self._client()
        if not client.has_collection(self.collection):
            names = sorted(client.list_collections())
            raise StoreNotFoundError(
                f"Milvus collection {self.collection!r} not found in {self.location}; "
                f"existing collections: {', '.join(names) if names else '(none)'}.",
                "use one of those names after '#', or create the collection first.")
        self._schema = describe_collection(client, self.collection, self._vector_field_option)
        return self._schema

    def _load(self) -> None:
        if not self._loaded:
            client = self._client()
            state = client.get_load_state(self.collection).get("state")
            if getattr(state, "name", str(state)) != "Loaded":
                client.load_collection(self.collection)
            self._loaded = True

    # -- reading ---------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._require()["dim"]

    @property
    def metric(self) -> str:
        s = self._require()
        if self._metric_option:
            return self._metric_option
        client = self._client()
        for index_name in client.list_indexes(self.collection, field_name=s["vector"]):
            info = client.describe_index(self.collection, index_name)
            if info.get("field_name", s["vector"]) == s["vector"] and info.get("metric_type") in MILVUS_TO_METRIC:
                return MILVUS_TO_METRIC[info["metric_type"]]
        raise UnreadableStoreError(f"Milvus field {s['vector']!r} has no index, so its metric is unknown.",
                                   "pass metric=cosine|ip|l2 as a store option.")

    @property
    def id_type(self) -> str:
        # A VARCHAR key may hold mapped int ids (restored on read); the key type is what the user chose.
        return "str" if self._require()["pk_str"] else "int"

    def payload_fields(self) -> list[str]:
        return list(self._require()["scalars"])

    def count(self) -> int:
        self._require()
        self._load()
        res = self._client().query(self.collection, filter="", output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def _output_fields(self) -> list[str]:
        s = self._require()
        return [s["pk"], s["vector"], *s["scalars"], *(["$meta"] if s["dynamic"] else [])]

    def _expr(self, shard: Any, after: Any) -> str | None:
        pk = self._require()["pk"]
        parts = []
        if shard is not None:
            if shard.get("after") is not None:
                parts.append(f"{pk} > {_literal(shard['after'])}")
            if shard.get("upto") is not None:
                parts.append(f"{pk} <= {_literal(shard['upto'])}")
        if after is not None:
            parts.append(f"{pk} > {_literal(after)}")
        return " and ".join(parts) if parts else None

    def _pages(self, output_fields: list[str], batch_size: int, cursor: Any, shard: Any) -> Iterator[list]:
        """Pages in pk order, each `pk > last pk of the previous page`: the query iterator's own protocol.

        Not `client.query_iterator` itself: pymilvus 3.0 writes string pks into its next filter unescaped,
        so a key holding a quote or backslash breaks it (tested in test_milvus_store.py).
        """
        self._load()
        pk = self._require()["pk"]
        limit = min(max(int(batch_size), 1), ITERATOR_MAX_BATCH)
        after = cursor
        while True:
            try:
                # iterator/reduce_stop_for_best: the options the query iterator sends, which make the
                # server merge segments in pk order and return the `limit` smallest keys.
                page = self._client().query(self.collection, filter=self._expr(shard, after) or "",
                                            output_fields=output_fields, limit=limit,
                                            iterator="True", reduce_stop_for_best="True")
            except ConnectorError:
                raise
            except Exception as e:
                raise self._fail(e, "query") from None
            if not page:
                return
            page = sorted(page, key=lambda r: r[pk])
            yield page
            if len(page) < limit:
                return
            after = page[-1][pk]

    def _rows_to_batch(self, rows: list, cursor: Any) -> Batch:
        s = self._require()
        has_payloads = bool(s["scalars"]) or s["dynamic"]
        ids, payloads = [], []
        for row in rows:
            pk = row[s["pk"]]
            payload = {k: v for k, v in row.items() if k not in (s["pk"], s["vector"], "$meta")}
            user_id, payload = restore_id(pk, payload)
            ids.append(user_id)
            payloads.append(payload)
        vectors = np.asarray([row[s["vector"]] for row in rows], dtype=np.float32).reshape(len(rows), s["dim"])
        return Batch(ids, vectors, payloads if has_payloads else None, cursor)

    def iter_batches(self, batch_size: int = 1024, cursor: Any = None, shard: Any = None) -> Iterator[Batch]:
        pk = self._require()["pk"]
        for page in self._pages(self._output_fields(), batch_size, cursor, shard):
            yield self._rows_to_batch(page, page[-1][pk])

    def _id_chunks(self, shard: Any = None) -> Iterator[tuple[list, list]]:
        """(engine pks, user ids) in pk order; reads the pk and `_v2v_id` only."""
        s = self._require()
        fields = [s["pk"]] + (PAYLOAD_FIELDS_FOR_ID if s["pk_str"] and s["dynamic"] else [])
        for page in self._pages(fields, ITERATOR_MAX_BATCH, None, shard):
            keys = [r[s["pk"]] for r in page]
            yield keys, [restore_id(r[s["pk"]], {k: v for k, v in r.items() if k != s["pk"]})[0] for r in page]

    def shards(self, n: int) -> list:
        """Up to n pk ranges of about equal row counts (boundaries from one pass over the pks only)."""
        total = self.count()
        if n <= 1 or total < 2 * n:
            return [None]
        step = -(-total // n)
        bounds, seen = [], 0
        for keys, _ in self._id_chunks():
            for k in keys:
                seen += 1
                if seen % step == 0 and len(bounds) < n - 1:
                    bounds.append(k)
        edges = [None, *bounds, None]
        return [{"after": edges[i], "upto": edges[i + 1]} for i in range(len(edges) - 1)]

    def _engine_keys(self, ids: Sequence) -> list:
        """Primary keys of these ids; an id this collection cannot hold is not in it, so it is left out."""
        keys = []
        for x in ids:
            try:
                keys.append(self._engine_id(idmap.normalize_id(x))[0])
            except IdTypeError:
                continue
        return keys

    def get(self, ids: Sequence) -> Batch:
        s = self._require()
        self._load()
        keys = self._engine_keys(ids)
        return self._get_by_keys(keys) if keys else Batch([], np.zeros((0, s["dim"]), np.float32), None)

    def _get_by_keys(self, keys: list) -> Batch:
        # Our own `pk in [...]` filter: pymilvus' get(ids=) does not escape quotes/backslashes in string keys.
        pk = self._require()["pk"]
        rows: list = []
        for i in range(0, len(keys), 4096):
            part = keys[i:i + 4096]
            rows += self._client().query(self.collection, filter=f"{pk} in [{', '.join(map(_literal, part))}]",
                                         output_fields=self._output_fields(), limit=len(part))
        return self._rows_to_batch(rows, None)

    def sample(self, n: int, seed: int = 0) -> Batch:
        self._load()
        return sample_by_id_scan(self._id_chunks(), self._get_by_keys, n, seed, f"Milvus collection {self.uri}")

    # -- writing ---------------------------------------------------------------------------------
    def create(self, dim: int, metric: str, id_type: str = "int", exist_ok: bool = True, **kw: Any) -> None:
        metric = check_metric(metric)
        if id_type not in ("int", "str"):
            raise StoreUsageError(f"Unknown id_type {id_type!r}.", "use 'int' or 'str'.")
        client = self._client(create=True)
        if client.has_collection(self.collection):
            self.check_existing(dim, metric, exist_ok=exist_ok, what=f"Milvus collection {self.collection!r}",
                                new="collection name")
            if id_type == "str" and not self._require()["pk_str"]:
                raise IdTypeError(f"Milvus collection {self.collection!r} has an INT64 key; string ids "
                                  "cannot go there.", "write to a new collection created with id_type='str'.")
            return
        schema, index = new_collection_schema(client, int(dim), METRIC_TO_MILVUS[metric], id_type,
                                              self._index_type or ("HNSW" if self._server else "FLAT"),
                                              self._id_max_length)
        try:
            client.create_collection(self.collection, schema=schema, index_params=index)
        except Exception as e:
            raise self._fail(e, "create_collection", StoreUsageError, "check the index_type option and the "
                             "server's permissions.") from None
        self._schema, self._loaded = None, False

    def _engine_id(self, x) -> tuple[Any, bool]:
        """(pk to store, whether the original must go to the payload)."""
        s = self._require()
        if s["pk_str"]:
            if isinstance(x, int):
                return idmap.to_uuid(x), True
            if len(x.encode()) > s["pk_max_length"]:
                raise IdTypeError(f"Id {x[:40]!r}... is longer than the key's max_length {s['pk_max_length']}.",
                                  "write to a new collection created with a larger id_max_length= option.")
            return x, False
        if isinstance(x, str):
            raise IdTypeError(f"Milvus collection {self.collection!r} has an INT64 key; string id {x[:40]!r} "
                              "cannot go there.", "write to a new collection created with id_type='str'.")
        if not idmap.fits_int64(x):
            raise IdTypeError(f"Id {x} does not fit Milvus INT64 keys.",
                              "write to a new collection created with id_type='str' (ids become strings).")
        return x, False

    def upsert(self, batch: Batch) -> None:
        s = self._require()
        vectors = validate_vectors(batch.vectors, s["dim"], where=f"upsert into {self.uri}")
        if len(batch.ids) != len(vectors):
            raise StoreUsageError(f"{len(batch.ids)} ids for {len(vectors)} vectors.", "pass one id per vector.")
        rows: dict = {}  # keyed by pk: a repeated id within one batch keeps its last row, as an upsert would
        for i, x in enumerate(batch.ids):
            key, mapped = self._engine_id(idmap.normalize_id(x))
            payload = dict(batch.payloads[i] or {}) if batch.payloads is not None else {}
            for reserved in (s["pk"], s["vector"]):
                if reserved in payload:
                    raise StoreUsageError(f"Payload field {reserved!r} clashes with the collection's "
                                     f"{'key' if reserved == s['pk'] else 'vector'} field.",
                                     "rename that payload field in the source, or write to a new collection.")
            payload = (attach_id(payload, idmap.normalize_id(x), "Milvus") if mapped
                       else encode_payload(payload, "Milvus"))
            rows[key] = {s["pk"]: key, s["vector"]: vectors[i], **payload}
        chunk: list = []
        size = 0
        for row in rows.values():
            row_bytes = 4 * s["dim"] + len(str(row[s["pk"]])) + 16 + len(
                json.dumps({k: v for k, v in row.items() if k not in (s["pk"], s["vector"])}, default=str))
            if chunk and (size + row_bytes > self._max_request_bytes or len(chunk) >= MAX_ROWS_PER_REQUEST):
                self._send(chunk)
                chunk, size = [], 0
            chunk.append(row)
            size += row_bytes
        if chunk:
            self._send(chunk)

    def delete(self, ids: Sequence) -> None:
        if not self.exists():
            return  # nothing to delete from
        pk = self._require()["pk"]
        keys = self._engine_keys(ids)
        for i in range(0, len(keys), 4096):
            try:
                self._client().delete(self.collection, filter=f"{pk} in [{', '.join(map(_literal, keys[i:i + 4096]))}]")
            except Exception as e:
                raise self._fail(e, "delete") from None

    def _send(self, rows: list) -> None:
        try:
            self._client().upsert(self.collection, rows)
        except Exception as e:
            raise self._fail(e, "upsert", StoreUsageError, "check that payload fields match the collection's "
                             "schema (declared fields need matching types).") from None

    def flush(self) -> None:
        if self._client_obj is not None and self._client_obj.has_collection(self.collection):
            self._client_obj.flush(self.collection)

    def close(self) -> None:
        if self._client_obj is not None:
            disconnect(self._client_obj, self.location, self._server is not None)
            self._client_obj = None
            self._loaded = False

    def search(self, queries, k: int = 10) -> tuple[list[list], list[list]]:
        """The collection's own ANN search (its index, its metric): (user ids per query, scores per query)."""
        s = self._require()
        self._load()
        q = validate_vectors(np.asarray(queries, dtype=np.float32), s["dim"], where="search queries")
        fields = PAYLOAD_FIELDS_FOR_ID if s["pk_str"] and s["dynamic"] else []
        try:
            hits = self._client().search(self.collection, data=q.tolist(), limit=int(k), anns_field=s["vector"],
                                         output_fields=fields)
        except Exception as e:
            raise self._fail(e, "search") from None
        ids = [[restore_id(h["id"], dict(h.get("entity") or {}))[0] for h in row] for row in hits]
        return ids, [[float(h["distance"]) for h in row] for row in hits]
