"""Milvus connector: `milvus:PATH.db#COLLECTION` (Milvus Lite, embedded) and `milvus:http(s)://HOST:PORT#COLLECTION`.

Both go through `pymilvus.MilvusClient`, so the server path is the same code as the tested Lite path.
Reading uses the query iterator, which pages by primary key (`pk > last`): a Batch's cursor is the last pk
of the batch, and resuming is the same iterator with `pk > cursor` added to its filter.

Ids: an INT64 key holds int ids within int64; a VARCHAR key holds str ids natively and int ids as a
uuid5 key with the original in the dynamic field `_v2v_id` (restored on read). Str ids into an INT64
collection are refused (IdTypeError) — create the destination with id_type='str'.

Schema (`describe_schema`, `create(..., schema=)`; see connectors.schema): index types and parameters,
declared scalar fields with their types and VARCHAR lengths, the dynamic field, named partitions, the
partition key, scalar indexes, and further vector fields (FLOAT_VECTOR and SPARSE_FLOAT_VECTOR, copied
unchanged through `Batch.extra["vectors"]`). Without a schema the index is the server's HNSW (M=16,
efConstruction=200) or Lite's FLAT; option `index_type=` overrides it either way.

Subsets: option `filter=` (a Milvus boolean expression) restricts every read (count, stream, sample, get);
`partitions=` (names, comma-separated) reads only those partitions. A collection with named partitions is
read partition by partition (each batch carries `extra["partition"]`, and a cursor `{"partition", "after"}`)
so that a copy puts every row back in its partition.

Server calls are retried on transient errors (connection reset or refused, timeouts, rate limits):
`retries=` tries (default 5) with back-off from `retry_delay=` seconds, then TransientStoreError.
Milvus servers before 2.4 route upserts into a partition-key collection by the primary key instead of the
partition key (filters on the key then miss rows): there, writes are a delete then an insert.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Iterator, Sequence

import numpy as np

from connectors import ids as idmap
from connectors.base import Batch, check_metric, validate_vectors
from connectors.credentials import is_server_location, load_credentials, parse_server_location
from connectors.errors import (
    ConnectorError, IdTypeError, StoreUsageError, UnreadableStoreError,
)
from connectors.id_scan import sample_by_id_scan
from connectors.json_ids import PAYLOAD_FIELDS_FOR_ID, restore_id
from connectors.milvus_client import MilvusBase, server_before
from connectors.milvus_rows import (
    PARTITION, batch_to_rows, conjunction, engine_key, literal, row_bytes, rows_to_batch,
)
from connectors.milvus_schema import (
    MILVUS_TO_METRIC, describe_schema, new_collection_schema, read_partitions,
)
from connectors.retry import DEFAULT_DELAY, DEFAULT_TRIES, Retrier
from connectors.schema import minimal

# The server's gRPC limit is 64 MB per request; we aim at half to leave room for protobuf framing.
DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024
MAX_ROWS_PER_REQUEST = 50_000
ITERATOR_MAX_BATCH = 16384  # pymilvus refuses larger iterator batches


class _DropLiteTimestampWarning(logging.Filter):
    # Milvus Lite does not hand out an MVCC timestamp; pymilvus then warns on every iterator it opens.
    def filter(self, record: logging.LogRecord) -> bool:
        return "mvccTs" not in record.getMessage()


def _names(value) -> list[str] | None:
    if value in (None, ""):
        return None
    return [p.strip() for p in (value.split(",") if isinstance(value, str) else value) if str(p).strip()]


class MilvusStore(MilvusBase):
    scheme = "milvus"
    writable = True

    def __init__(self, uri: str, vector_field: str | None = None, credentials_file: str | None = None,
                 metric: str | None = None, index_type: str | None = None, id_max_length: int = 1024,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES, timeout: float | None = None,
                 filter: str | None = None, partitions: str | list | None = None, retries: int = DEFAULT_TRIES,
                 retry_delay: float = DEFAULT_DELAY, **options: Any):
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
        self._preferred_vector: str | None = None  # select_vector(): settles a choice the option leaves open
        self._metric_option = check_metric(metric) if metric else None
        self._index_type = index_type
        self._id_max_length = int(id_max_length)
        self._max_request_bytes = int(max_request_bytes)
        self._timeout = timeout
        self._filter = str(filter).strip() if filter else None
        self._partitions_option = _names(partitions)
        self.retrier = Retrier(int(retries), float(retry_delay))
        self._client_obj = None
        self._schema: dict | None = None
        self._loaded = False
        self._known_partitions: set | None = None
        logging.getLogger("pymilvus.client.iterator.query_iterator").addFilter(_DropLiteTimestampWarning())

    # -- reading ---------------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        return self._require()["dim"]

    def _metric_of(self, field: str) -> str | None:
        for index_name in self._call("list_indexes", lambda c: c.list_indexes(self.collection, field_name=field)):
            info = self._call("describe_index", lambda c: c.describe_index(self.collection, index_name))
            if info.get("field_name", field) == field and info.get("metric_type") in MILVUS_TO_METRIC:
                return MILVUS_TO_METRIC[info["metric_type"]]
        return None

    @property
    def metric(self) -> str:
        s = self._require()
        if self._metric_option:
            return self._metric_option
        found = self._metric_of(s["vector"])
        if found is None:
            raise UnreadableStoreError(f"Milvus field {s['vector']!r} has no index, so its metric is unknown.",
                                       "pass metric=cosine|ip|l2 as a store option.")
        return found

    @property
    def id_type(self) -> str:
        # A VARCHAR key may hold mapped int ids (restored on read); the key type is what the user chose.
        return "str" if self._require()["pk_str"] else "int"

    def payload_fields(self) -> list[str]:
        return list(self._require()["scalars"])

    def describe_schema(self) -> dict:
        s = self._require()
        out = self._call("describe", lambda c: describe_schema(c, self.collection, s, self._metric_of))
        if self._metric_option:
            out["vectors"][s["vector"]]["metric"] = self._metric_option
        return out

    def select_vector(self, name: str | None) -> None:
        if name and name != self._preferred_vector:
            self._preferred_vector, self._schema = name, None

    def _read_partitions(self) -> list[str] | None:
        """Partitions read one by one (so that rows keep theirs), or None: the collection as a whole."""
        s = self._require()
        existing = None if s["partition_key"] else self._call(
            "list_partitions", lambda c: c.list_partitions(self.collection))
        return read_partitions(s, existing, self._partitions_option, self.collection)

    def count(self) -> int:
        self._require()
        self._load()
        parts = self._read_partitions()
        res = self._call("count", lambda c: c.query(self.collection, filter=self._filter or "",
                                                     output_fields=["count(*)"], partition_names=parts))
        return int(res[0]["count(*)"])

    def _output_fields(self) -> list[str]:
        s = self._require()
        return [s["pk"], s["vector"], *s["other_vectors"], *s["scalars"], *(["$meta"] if s["dynamic"] else [])]

    def _expr(self, shard: Any, after: Any) -> str:
        pk = self._require()["pk"]
        parts = [self._filter]
        if shard is not None:
            if shard.get("after") is not None:
                parts.append(f"{pk} > {literal(shard['after'])}")
            if shard.get("upto") is not None:
                parts.append(f"{pk} <= {literal(shard['upto'])}")
        if after is not None:
            parts.append(f"{pk} > {literal(after)}")
        return conjunction(*parts)

    def _pages(self, output_fields: list[str], batch_size: int, cursor: Any, shard: Any,
               partition: str | None = None) -> Iterator[list]:
        """Pages in pk order, each `pk > last pk of the previous page`: the query iterator's own protocol.

        Not `client.query_iterator` itself: pymilvus 3.0 writes string pks into its next filter unescaped,
        so a key holding a quote or backslash breaks it (tested in test_milvus_store.py).
        """
        self._load()
        pk = self._require()["pk"]
        limit = min(max(int(batch_size), 1), ITERATOR_MAX_BATCH)
        after = cursor
        parts = [partition] if partition else None
        while True:
            # iterator/reduce_stop_for_best: the options the query iterator sends, which make the server
            # merge segments in pk order and return the smallest keys.
            page = self._call("query", lambda c: c.query(
                self.collection, filter=self._expr(shard, after), output_fields=output_fields, limit=limit,
                iterator="True", reduce_stop_for_best="True", partition_names=parts))
            if not page:
                return  # only an empty page ends: with reduce_stop_for_best a server's page is a correct
                # prefix that may be shorter than `limit` before the end (Milvus 2.3 with several partitions)
            page = sorted(page, key=lambda r: r[pk])
            yield page
            after = page[-1][pk]

    def iter_batches(self, batch_size: int = 1024, cursor: Any = None, shard: Any = None) -> Iterator[Batch]:
        s = self._require()
        pk = s["pk"]
        if shard is not None and "partition" in shard:
            parts = [shard["partition"]]
        else:
            parts = self._read_partitions()
        if parts is None:
            for page in self._pages(self._output_fields(), batch_size, cursor, shard):
                yield rows_to_batch(page, s, page[-1][pk])
            return
        start = parts.index(cursor["partition"]) if isinstance(cursor, dict) and cursor.get("partition") in parts else 0
        for p in parts[start:]:
            after = cursor.get("after") if isinstance(cursor, dict) and cursor.get("partition") == p else None
            for page in self._pages(self._output_fields(), batch_size, after, None, p):
                yield rows_to_batch(page, s, {"partition": p, "after": page[-1][pk]}, p)

    def _id_chunks(self, shard: Any = None) -> Iterator[tuple[list, list]]:
        """(engine pks, user ids) in pk order; reads the pk and `_v2v_id` only."""
        s = self._require()
        fields = [s["pk"]] + (PAYLOAD_FIELDS_FOR_ID if s["pk_str"] and s["dynamic"] else [])
        for part in (self._read_partitions() or [None]):
            for page in self._pages(fields, ITERATOR_MAX_BATCH, None, shard, part):
                keys = [r[s["pk"]] for r in page]
                yield keys, [restore_id(r[s["pk"]], {k: v for k, v in r.items() if k != s["pk"]})[0] for r in page]

    def shards(self, n: int) -> list:
        """Up to n pk ranges of about equal row counts (boundaries from one pass over the pks only); a
        partitioned collection is split by partition."""
        parts = self._read_partitions()
        if parts is not None:
            return [None] if n <= 1 else [{"partition": p} for p in parts]
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
        s = self._require()
        rows: list = []
        for i in range(0, len(keys), 4096):
            part = keys[i:i + 4096]
            expr = conjunction(self._filter, f"{s['pk']} in [{', '.join(map(literal, part))}]")
            rows += self._call("query", lambda c: c.query(self.collection, filter=expr, limit=len(part),
                                                           output_fields=self._output_fields(),
                                                           partition_names=self._partitions_option))
        order = {k: i for i, k in enumerate(keys)}
        return rows_to_batch(sorted(rows, key=lambda r: order[r[s["pk"]]]), s, None)  # servers answer unordered

    def sample(self, n: int, seed: int = 0) -> Batch:
        self._load()
        return sample_by_id_scan(self._id_chunks(), self._get_by_keys, n, seed, f"Milvus collection {self.uri}")

    # -- writing ---------------------------------------------------------------------------------
    def create(self, dim: int, metric: str, id_type: str = "int", exist_ok: bool = True,
               schema: dict | None = None, **kw: Any) -> None:
        metric = check_metric(metric)
        if id_type not in ("int", "str"):
            raise StoreUsageError(f"Unknown id_type {id_type!r}.", "use 'int' or 'str'.")
        client = self._client(create=True)
        if self._call("has_collection", lambda c: c.has_collection(self.collection)):
            self.check_existing(dim, metric, exist_ok=exist_ok, what=f"Milvus collection {self.collection!r}",
                                new="collection name")
            if id_type == "str" and not self._require()["pk_str"]:
                raise IdTypeError(f"Milvus collection {self.collection!r} has an INT64 key; string ids "
                                  "cannot go there.", "write to a new collection created with id_type='str'.")
            return
        description = schema or minimal("milvus", dim, metric)
        try:
            fields, index, create_kw = new_collection_schema(
                client, description, int(dim), metric, id_type, self._index_type,
                "hnsw" if self._server else "flat", self._id_max_length,
                legacy=bool(self._server) and server_before(client, (2, 4)))
            self._call("create_collection", lambda c: c.create_collection(
                self.collection, schema=fields, index_params=index, **create_kw))
            for p in description.get("partitions") or []:
                if p != "_default":
                    self._call("create_partition", lambda c: c.create_partition(self.collection, p))
        except ConnectorError as e:
            raise StoreUsageError(e.message, "check the index_type option, the schema's field types (Milvus "
                                  "servers before 2.4 hold one vector field and no sparse vectors: drop the "
                                  "others with --drop-vector) and the server's permissions.") from None
        self._schema, self._loaded = None, False
        self.select_vector(description.get("vector") or "vector")

    def _engine_id(self, x) -> tuple[Any, bool]:
        return engine_key(self._require(), x, self.collection)

    def upsert(self, batch: Batch) -> None:
        s = self._require()
        vectors = validate_vectors(batch.vectors, s["dim"], where=f"upsert into {self.uri}")
        if len(batch.ids) != len(vectors):
            raise StoreUsageError(f"{len(batch.ids)} ids for {len(vectors)} vectors.", "pass one id per vector.")
        rows = batch_to_rows(batch, vectors, s, self._engine_id, f"Milvus collection {self.collection!r}")
        partition = self._partition_for(batch.extra.get(PARTITION))
        chunk: list = []
        size = 0
        for row in rows.values():
            weight = row_bytes(row, s)
            if chunk and (size + weight > self._max_request_bytes or len(chunk) >= MAX_ROWS_PER_REQUEST):
                self._send(chunk, partition)
                chunk, size = [], 0
            chunk.append(row)
            size += weight
        if chunk:
            self._send(chunk, partition)

    def _partition_for(self, name: str | None) -> str | None:
        """The partition rows go to (created when missing); None: the default, or by partition key."""
        if not name or name == "_default" or self._require()["partition_key"]:
            return None
        if self._known_partitions is None:
            self._known_partitions = set(self._call("list_partitions", lambda c: c.list_partitions(self.collection)))
        if name not in self._known_partitions:
            self._call("create_partition", lambda c: c.create_partition(self.collection, name), StoreUsageError)
            self._known_partitions.add(name)
        return name

    def delete(self, ids: Sequence) -> None:
        if not self.exists():
            return  # nothing to delete from
        self._delete_keys(self._engine_keys(ids))

    def _delete_keys(self, keys: list) -> None:
        pk = self._require()["pk"]
        for i in range(0, len(keys), 4096):
            expr = f"{pk} in [{', '.join(map(literal, keys[i:i + 4096]))}]"
            self._call("delete", lambda c: c.delete(self.collection, filter=expr))

    def _send(self, rows: list, partition: str | None) -> None:
        fix = "check that payload fields match the collection's schema (declared fields need matching types)."
        if self._require()["partition_key"] and self._server and server_before(self._client(), (2, 4)):
            # These servers route upserts by primary key, not by the partition key (see the module doc).
            self._delete_keys([r[self._require()["pk"]] for r in rows])
            self._call("insert", lambda c: c.insert(self.collection, rows), StoreUsageError, fix)
            return
        self._call("upsert", lambda c: c.upsert(self.collection, rows, partition_name=partition or ""),
                   StoreUsageError, fix)

    def flush(self) -> None:
        if self._client_obj is not None and self._call("has_collection", lambda c: c.has_collection(self.collection)):
            self._call("flush", lambda c: c.flush(self.collection))

    def search(self, queries, k: int = 10) -> tuple[list[list], list[list]]:
        """The collection's own ANN search (its index, its metric): (user ids per query, scores per query)."""
        s = self._require()
        self._load()
        q = validate_vectors(np.asarray(queries, dtype=np.float32), s["dim"], where="search queries")
        fields = PAYLOAD_FIELDS_FOR_ID if s["pk_str"] and s["dynamic"] else []
        hits = self._call("search", lambda c: c.search(self.collection, data=q.tolist(), limit=int(k),
                                                       anns_field=s["vector"], output_fields=fields))
        # a hit names its key by the collection's primary-key field (`id` only when the key is called so)
        ids = [[restore_id(h[s["pk"]], dict(h.get("entity") or {}))[0] for h in row] for row in hits]
        return ids, [[float(h["distance"]) for h in row] for row in hits]
