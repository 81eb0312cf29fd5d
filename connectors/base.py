"""The store protocol every connector implements, and the checks they share.

A connector is one module with one `Store` subclass. Reading: `count`, `dim`, `metric`, `id_type`,
`iter_batches`, `sample`, `get`. Writing (when `writable`): `create`, `upsert`, `delete`, `flush`. Heavy clients
(faiss, pymilvus, qdrant_client) are imported inside the connector module, which `open_store` imports
only when its scheme is used.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from connectors.errors import (
    DestinationNotEmptyError, DimensionMismatchError, IdTypeError, InvalidVectorsError, MetricMismatchError,
    StoreUsageError,
)

METRICS = ("cosine", "ip", "l2")
ID_TYPES = ("int", "str")
# Where a connector keeps an id the engine cannot hold (the engine gets a deterministic mapped id).
ORIGINAL_ID_KEY = "_v2v_id"


@dataclass
class Batch:
    """One slice of a store.

    ids: python ints or strs, one per row. vectors: float32, C-contiguous, shape (n, dim).
    payloads: one dict per row, or None when the store has no payloads.
    cursor: JSON-serialisable position *after* this batch; passing it to `iter_batches(cursor=...)`
    resumes with the next row. None when the store cannot resume mid-stream.
    extra: what else the rows carry. "vectors": {name: [one value per row]}, the store's other vectors,
    copied unchanged (dense: a float32 array; sparse: {"indices": [...], "values": [...]}; None: the row has
    none); "partition": the partition every row of the batch belongs to (Milvus).
    """

    ids: list
    vectors: np.ndarray
    payloads: list[dict] | None = None
    cursor: Any = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def with_vectors(self, vectors: np.ndarray) -> "Batch":
        return Batch(self.ids, vectors, self.payloads, self.cursor, dict(self.extra))

    def take(self, rows: Sequence[int]) -> "Batch":
        """The given rows (positions), with their payloads and other vectors."""
        rows = list(rows)
        extra = dict(self.extra)
        if extra.get(EXTRA_VECTORS):
            extra[EXTRA_VECTORS] = {n: [v[i] for i in rows] for n, v in extra[EXTRA_VECTORS].items()}
        return Batch([self.ids[i] for i in rows], self.vectors[rows],
                     [self.payloads[i] for i in rows] if self.payloads is not None else None, self.cursor, extra)


EXTRA_VECTORS = "vectors"   # Batch.extra key: the rows' other vectors, {name: [value per row]}


def other_vectors(batch: Batch, known: dict, where: str) -> dict:
    """The batch's other vectors ({name: [value per row]}), refused when the destination (`known`: its
    other vectors' names) lacks one: a vector is never dropped without being asked to."""
    extras = batch.extra.get(EXTRA_VECTORS) or {}
    unknown = sorted(set(extras) - set(known))
    if unknown:
        raise StoreUsageError(f"{where} has no vector {', '.join(map(repr, unknown))} for the rows' other vectors.",
                              "drop them with --drop-vector NAME, or write to a new destination created from the "
                              "source's schema.")
    return extras


def check_metric(metric: str) -> str:
    m = str(metric).lower()
    aliases = {"cos": "cosine", "inner_product": "ip", "dot": "ip", "euclid": "l2", "euclidean": "l2"}
    m = aliases.get(m, m)
    if m not in METRICS:
        raise StoreUsageError(f"Unknown metric {metric!r}.", f"use one of {', '.join(METRICS)}.")
    return m


def validate_vectors(vectors: Any, dim: int | None = None, where: str = "vectors") -> np.ndarray:
    """Return `vectors` as float32 C-contiguous (n, d); refuse NaN/inf, wrong rank or wrong dimension."""
    arr = np.asarray(vectors)
    if arr.ndim != 2:
        raise InvalidVectorsError(
            f"{where}: expected a 2-D array (n, dim), got shape {arr.shape}.",
            "pass one vector per row.",
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise InvalidVectorsError(f"{where}: expected floating-point vectors, got {arr.dtype}.",
                                  "store float32 vectors.")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if dim is not None and arr.shape[1] != dim:
        raise DimensionMismatchError(
            f"{where}: vectors have dimension {arr.shape[1]} but {dim} is expected.",
            "check that the source, translator and destination belong together "
            "(a destination created for another model needs a new collection name).",
        )
    if arr.size and not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        raise InvalidVectorsError(
            f"{where}: {len(bad)} vector(s) contain NaN or inf (first rows: {bad[:5].tolist()}).",
            "repair or drop those rows in the source before migrating.",
        )
    return arr


def id_hash_key(ids: Sequence, seed: int) -> np.ndarray:
    """A seeded pseudo-random uint64 key per id, independent of the row's position in the store.

    Sampling by smallest key gives the same sample whatever order a store streams in, and is spread
    uniformly over the store (not biased to its start).
    """
    salt = int(seed).to_bytes(8, "little", signed=True)
    out = np.empty(len(ids), dtype=np.uint64)
    for i, x in enumerate(ids):
        tag = b"i" if isinstance(x, (int, np.integer)) else b"s"
        h = hashlib.blake2b(tag + str(x).encode(), digest_size=8, key=salt)
        out[i] = int.from_bytes(h.digest(), "little")
    return out


class Store:
    """Base class; connectors override what they support. All methods are synchronous."""

    scheme: str = ""
    writable: bool = False

    def __init__(self, uri: str, **options: Any):
        self.uri = uri  # never contains credentials: they come from env vars or a file
        self.options = options

    # -- reading ---------------------------------------------------------------------------------
    def exists(self) -> bool:
        raise NotImplementedError

    def count(self) -> int:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        raise NotImplementedError

    @property
    def metric(self) -> str:
        raise NotImplementedError

    @property
    def id_type(self) -> str:
        """'int' or 'str': the type of the ids as the user sees them (after restoring mapped ids)."""
        raise NotImplementedError

    def payload_fields(self) -> list[str]:
        """Names of payload fields known from the schema (may be empty for schemaless stores)."""
        return []

    @property
    def flavor(self) -> str:
        """The engine as connectors.schema.CAPS knows it (a scheme can have flavours that keep less)."""
        return self.scheme

    def select_vector(self, name: str | None) -> None:
        """Prefer the vector called `name` where a store holds several and the connector's option
        (vector_field= / vector_name=) chose none; a store with one vector keeps using it. Single-vector
        engines accept only ''/None."""
        if name:
            raise StoreUsageError(f"{self.scheme} stores hold one unnamed vector, not {name!r}.",
                                  "drop the vector name.")

    def describe_schema(self) -> dict:
        """The store's schema description (see connectors.schema): vectors, index, fields, partitions..."""
        from connectors.schema import minimal

        return minimal(self.scheme, self.dim, self.metric)

    def iter_batches(self, batch_size: int = 1024, cursor: Any = None, shard: Any = None) -> Iterator[Batch]:
        """Stream every row once, in a stable order, in bounded memory.

        `cursor` (from a previous Batch.cursor) resumes after that batch. `shard` (one of `shards()`)
        restricts the stream to that shard.
        """
        raise NotImplementedError

    def shards(self, n: int) -> list:
        """Up to n descriptors of disjoint parts that can be read independently; [None] = one part."""
        return [None]

    def get(self, ids: Sequence) -> Batch:
        """Fetch rows by id (ids not present are left out). Default: one scan of the store."""
        wanted = {x: i for i, x in enumerate(ids)}
        found_ids, vecs, pays = [], [], []
        has_payloads = False
        for b in self.iter_batches(4096):
            for j, x in enumerate(b.ids):
                if x in wanted:
                    found_ids.append(x)
                    vecs.append(b.vectors[j])
                    pays.append(b.payloads[j] if b.payloads is not None else None)
                    has_payloads |= b.payloads is not None
        vectors = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, self.dim), np.float32)
        return Batch(found_ids, vectors, pays if has_payloads else None)

    def sample(self, n: int, seed: int = 0) -> Batch:
        """Up to n rows chosen uniformly at random, reproducible by seed, independent of stream order.

        Default: one streaming pass keeping the n rows with the smallest seeded hash of their id
        (bounded memory: O(n + batch)). Connectors with random access may override.
        """
        keep_keys = np.zeros(0, dtype=np.uint64)
        keep_ids: list = []
        keep_vecs = np.zeros((0, self.dim), dtype=np.float32)
        keep_pays: list = []
        has_payloads = False
        for b in self.iter_batches(4096):
            keys = np.concatenate([keep_keys, id_hash_key(b.ids, seed)])
            ids = keep_ids + list(b.ids)
            vecs = np.concatenate([keep_vecs, b.vectors])
            has_payloads |= b.payloads is not None
            pays = keep_pays + (list(b.payloads) if b.payloads is not None else [None] * len(b))
            order = np.argsort(keys, kind="stable")[:n]
            keep_keys, keep_vecs = keys[order], vecs[order]
            keep_ids = [ids[i] for i in order]
            keep_pays = [pays[i] for i in order]
        # Return in key order: stable for a seed, and a prefix of a larger sample with the same seed.
        return Batch(keep_ids, keep_vecs, keep_pays if has_payloads else None)

    # -- writing ---------------------------------------------------------------------------------
    def check_existing(self, dim: int, metric: str, id_type: str | None = None, exist_ok: bool = True,
                       what: str | None = None, new: str = "destination") -> None:
        """For `create()` on a store that exists: refuse it unless exist_ok, and refuse another dimension,
        metric or (when given) id type. `what` names the store in messages, `new` what to create instead."""
        what = what or f"{self.scheme} store {self.uri}"
        if not exist_ok:
            raise DestinationNotEmptyError(f"{what} already exists.", f"choose a new {new}, or delete the old one.")
        if self.dim != int(dim):
            raise DimensionMismatchError(f"{what} holds {self.dim}-d vectors, not {int(dim)}-d.",
                                         f"write to a new {new} for the new model (a store holds one dimension).")
        if check_metric(self.metric) != check_metric(metric):
            raise MetricMismatchError(f"{what} uses metric {self.metric}, not {metric}.",
                                      f"write to a new {new}, or ask for the store's metric.")
        if id_type is not None and id_type != self.id_type:
            raise IdTypeError(f"{what} holds {self.id_type} ids, not {id_type}.",
                              f"write to a new {new}, or create it with the store's id type.")

    def create(self, dim: int, metric: str, id_type: str = "int", exist_ok: bool = True,
               schema: dict | None = None, **kw: Any) -> None:
        """Create the store (or check an existing one). `schema`: a description (connectors.schema) to build
        from, e.g. `carry(source.describe_schema(), ...)["schema"]`; its migrated vector takes dim/metric."""
        raise StoreUsageError(f"{self.scheme} stores are read-only here.", "choose a writable destination.")

    def upsert(self, batch: Batch) -> None:
        """Insert or replace rows by id. Idempotent: writing the same batch twice leaves one copy."""
        raise StoreUsageError(f"{self.scheme} stores are read-only here.", "choose a writable destination.")

    def delete(self, ids: Sequence) -> None:
        """Remove rows by id; ids the store does not hold are ignored, so deleting twice is harmless.
        Like upserts, deletions are durable after `flush()`."""
        raise StoreUsageError(f"{self.scheme} stores are read-only here.", "choose a writable destination.")

    def flush(self) -> None:
        """Make everything upserted or deleted so far durable (FAISS writes its file here)."""

    # -- state kept with the store (connectors.state) ----------------------------------------------
    # A few small records a program keeps where the store lives, so that any folder or machine reaching
    # the store finds them: v2v-migrate's `apply` keeps its owner mark and progress under "apply" and its
    # lease under "lease"; another command keeps its own under another key (e.g. "reembed").
    # key: a short lower-case name; value: a JSON-serialisable dict (at most ~60 KB), None deletes it.
    # write_state is atomic (a reader or a crash sees the old or the new record) and durable when it
    # returns. Engines that keep it in the collection (Milvus, Qdrant) need the collection to exist.
    keeps_state: bool = False

    def read_state(self, key: str) -> dict | None:
        """The record stored under `key`, or None (none stored, or the store does not exist yet)."""
        return None

    def write_state(self, key: str, value: dict | None) -> None:
        """Store (replace) the record under `key`; None removes it."""
        raise StoreUsageError(f"{self.scheme} stores keep no state.", "use the local --state-dir.")

    def close(self) -> None:
        pass

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


class FileBackedStore(Store):
    """A store whose writes go through an in-process writer object (FAISS files, Parquet folders): made by
    `create()`, reopened on the first write to an existing store, made durable by `flush()`."""

    _writer: Any = None

    def _reset(self) -> None:
        """Forget cached read state (the files changed)."""

    def _open_writer(self, must_exist: bool = True):
        """The writer, reopening an existing store; None when the store does not exist and not must_exist."""
        if self._writer is None:
            if not self.exists():
                if not must_exist:
                    return None
                raise StoreUsageError(f"{self.scheme} store {self.uri} does not exist yet.",
                                      "call create(dim, metric) before upsert.")
            self.create(self.dim, self.metric, self.id_type)
        return self._writer

    def flush(self) -> None:
        if self._writer is not None and self._writer.dirty:
            self._writer.flush()
            self._reset()

    def close(self) -> None:
        self.flush()
        self._writer = None
        self._reset()
