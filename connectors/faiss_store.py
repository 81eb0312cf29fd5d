"""FAISS index files as a store: `faiss:PATH` (options: allow_lossy, index=flat|hnsw|ivf, hnsw_m,
ef_construction, nlist, nprobe; or the index of a schema description given to `create`).

Reading (source stores are never modified): the file is memory-mapped (see faiss_layout); Flat, IVFFlat,
HNSWFlat, IDMap/IDMap2 and IndexRefineFlat give back their exact float32 vectors and their ids. Indexes with
lossy codes (PQ, IVFPQ, SQ, LSH, OPQ/PCA pre-transforms, ...) raise LossyIndexError unless
`allow_lossy=True` (or the URI suffix `?allow_lossy=1`): then the decoded approximations are streamed.
Payloads come from `PATH.payload.parquet` (`id` + fields), the metric 'cosine' and string ids from
`PATH.meta.json`; both are optional for indexes written by others (then ids are the FAISS int64 ids).

Writing: see faiss_writer. String ids are mapped with connectors.ids.to_int64 (FAISS holds int64 only);
the original id is kept in the payload sidecar under `_v2v_id` and restored by the reader. Cosine stores
hold unit-normalised vectors in an inner-product index (reads give the normalised vectors). Reads on a
store with unflushed writes flush first, so they always see every upserted row.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from connectors import split_uri
from connectors.base import (
    ID_TYPES, ORIGINAL_ID_KEY, Batch, FileBackedStore, check_metric, other_vectors, validate_vectors,
)
from connectors.errors import EmptyStoreError, IdTypeError, InvalidVectorsError, StoreUsageError
from connectors.ids import fits_int64, normalize_id, restore_original, to_int64
from connectors.state import FileStateMixin

_TRUE = ("1", "true", "yes", "on")


def _parse_target(rest: str) -> tuple[str, dict]:
    """'x.index?allow_lossy=1' -> ('x.index', {'allow_lossy': '1'}), unless the literal path exists."""
    path, sep, query = rest.partition("?")
    if not sep or Path(rest).exists():
        return rest, {}
    opts = dict(part.partition("=")[::2] for part in query.split("&") if part)
    return path, opts


def _index_options(schema: dict | None) -> dict:
    """index=, hnsw_m=, ef_construction=, nlist=, nprobe= from a schema description's vector index."""
    index = ((schema or {}).get("vectors", {}).get((schema or {}).get("vector", ""), {}).get("index")) or {}
    kind = {"flat": "flat", "hnsw": "hnsw", "ivf_flat": "ivf"}.get(index.get("type"))
    if kind is None:
        return {}
    names = {"m": "hnsw_m", "ef_construction": "ef_construction", "nlist": "nlist", "nprobe": "nprobe"}
    return {"index": kind, **{names[k]: v for k, v in index.items() if k in names}}


class FaissStore(FileStateMixin, FileBackedStore):
    scheme = "faiss"
    writable = True

    def __init__(self, uri: str, **options: Any):
        path, uri_opts = _parse_target(split_uri(uri)[1])
        super().__init__(uri, **{**uri_opts, **options})
        self.path = Path(path).expanduser()
        self.allow_lossy = str(self.options.get("allow_lossy", False)).lower() in _TRUE
        self._layout = None
        self._index_metric = None
        self._meta: dict | None = None
        self._sidecar: Any = None  # PayloadSidecar, or False when there is none
        self._id_index = None
        self._writer = None

    def _state_path(self) -> Path:
        return self.path.with_name(self.path.name + ".v2v-state.json")

    # -- reading -----------------------------------------------------------------------------------
    def _lay(self):
        if self._writer is not None and self._writer.dirty:
            self.flush()
        if self._layout is None:
            from connectors.faiss_layout import open_layout
            from connectors.faiss_sidecars import PayloadSidecar, payload_path, read_meta
            self._layout, self._index_metric, _ = open_layout(self.path, self.allow_lossy)
            self._meta = read_meta(self.path)
            side = payload_path(self.path)
            self._sidecar = PayloadSidecar(side) if side.exists() else False
        return self._layout

    def _reset(self) -> None:
        self._layout = self._sidecar = self._meta = self._id_index = None

    def exists(self) -> bool:
        return self.path.is_file()

    def count(self) -> int:
        if self._writer is not None:
            return self._writer.count
        return self._lay().n

    @property
    def dim(self) -> int:
        return self._writer.dim if self._writer is not None else self._lay().dim

    @property
    def metric(self) -> str:
        if self._writer is not None:
            return self._writer.metric
        self._lay()
        # 'cosine' is only known from our sidecar; it must sit on an inner-product index to be true.
        if self._meta.get("metric") == "cosine" and self._index_metric == "ip":
            return "cosine"
        return self._index_metric

    @property
    def id_type(self) -> str:
        if self._writer is not None:
            return self._writer.id_type
        self._lay()
        return "str" if self._meta.get("id_type") == "str" else "int"

    def _mapped(self) -> bool:
        self._lay()
        return bool(self._meta.get("ids_mapped"))

    def describe_schema(self) -> dict:
        from connectors.faiss_layout import describe_index
        from connectors.schema import minimal

        self._lay()
        return minimal("faiss", self.dim, self.metric, describe_index(self._layout._owner))

    def payload_fields(self) -> list[str]:
        self._lay()
        return [f for f in self._sidecar.fields if f != ORIGINAL_ID_KEY] if self._sidecar else []

    def _batch(self, keys: np.ndarray, vectors: np.ndarray, cursor: Any, where: str, at: int | None = None) -> Batch:
        """`at`: the index position of the first row, when the rows are consecutive (a scan)."""
        vectors = validate_vectors(vectors, self._layout.dim, where=where)
        if not self._sidecar:
            return Batch(keys.tolist(), vectors, None, cursor)
        rows = self._sidecar.lookup(keys) if at is None else self._sidecar.rows_at(at, keys)
        ids, payloads = [], []
        for k, p in zip(keys.tolist(), rows):
            user_id, p = restore_original(k, p)
            ids.append(user_id)
            payloads.append(p)
        return Batch(ids, vectors, payloads if self.payload_fields() else None, cursor)

    def iter_batches(self, batch_size: int = 1024, cursor: Any = None, shard: Any = None) -> Iterator[Batch]:
        lay = self._lay()
        start, stop = (0, lay.n) if shard is None else (int(shard["start"]), int(shard["stop"]))
        pos = start
        if cursor is not None:
            pos = int(cursor["pos"]) if isinstance(cursor, dict) and "pos" in cursor else -1
            if not start <= pos <= stop:
                raise StoreUsageError(f"Cursor {cursor!r} does not belong to this FAISS store or shard.",
                                 "resume with the cursor of a batch read from the same store and shard.")
        batch_size = max(1, int(batch_size))
        while pos < stop:
            end = min(pos + batch_size, stop)
            keys, vectors = lay.read_range(pos, end)
            yield self._batch(keys, vectors, {"pos": end}, f"{self.uri} rows {pos}..{end - 1}", at=pos)
            pos = end

    def shards(self, n: int) -> list:
        lay = self._lay()
        if n <= 1 or lay.n == 0:
            return [None]
        if lay.kind == "lists":  # whole inverted lists per shard, balanced by row count
            cuts = [int(np.searchsorted(lay.starts, k * lay.n / n)) for k in range(1, n)]
            bounds = sorted(set([0] + [min(c, lay.nlist) for c in cuts] + [lay.nlist]))
            return [{"start": int(lay.starts[a]), "stop": int(lay.starts[b]), "lists": [a, b]}
                    for a, b in zip(bounds, bounds[1:]) if lay.starts[b] > lay.starts[a]]
        bounds = sorted(set(np.linspace(0, lay.n, n + 1).round().astype(int).tolist()))
        return [{"start": a, "stop": b} for a, b in zip(bounds, bounds[1:])]

    def _keys(self, ids: Sequence) -> tuple[list, np.ndarray]:
        """(ids that can be in this store, their FAISS int64 ids)."""
        kept, keys = [], []
        mapped = self._mapped()
        for x in ids:
            x = normalize_id(x)
            if mapped:
                kept.append(x)
                keys.append(to_int64(x))
            elif isinstance(x, int) and fits_int64(x):
                kept.append(x)
                keys.append(x)
        return kept, np.array(keys, dtype=np.int64)

    def get(self, ids: Sequence) -> Batch:
        lay = self._lay()
        _, keys = self._keys(ids)
        if self._id_index is None:  # built once: sorted ids and their positions (16 bytes per row)
            all_ids = lay.all_ids()
            order = np.argsort(all_ids, kind="stable")
            self._id_index = (all_ids[order], order)
        sorted_ids, order = self._id_index
        if not len(sorted_ids) or not len(keys):
            return Batch([], np.zeros((0, lay.dim), np.float32), None)
        at = np.minimum(np.searchsorted(sorted_ids, keys), len(sorted_ids) - 1)
        hit = sorted_ids[at] == keys
        found_keys, vectors = lay.gather(order[at[hit]])
        return self._batch(found_keys, vectors, None, f"{self.uri} get")

    def sample(self, n: int, seed: int = 0) -> Batch:
        lay = self._lay()
        if lay.n == 0:
            raise EmptyStoreError(f"FAISS index {str(self.path)!r} holds no vectors to sample.",
                                  "point at the populated index, or add vectors first.")
        rng = np.random.default_rng(seed)
        k = min(int(n), lay.n)
        # A permutation prefix: uniform over all rows, and sample(n) is a prefix of sample(m > n).
        pos = rng.permutation(lay.n)[:k] if lay.n <= 50_000_000 else rng.choice(lay.n, k, replace=False)
        keys, vectors = lay.gather(pos)
        return self._batch(keys, vectors, None, f"{self.uri} sample")

    # -- writing -----------------------------------------------------------------------------------
    def create(self, dim: int, metric: str, id_type: str = "int", exist_ok: bool = True,
               schema: dict | None = None, **kw: Any) -> None:
        from connectors.faiss_writer import FaissWriter
        metric, dim = check_metric(metric), int(dim)
        if id_type not in ID_TYPES:
            raise StoreUsageError(f"Unknown id type {id_type!r}.", f"use one of {', '.join(ID_TYPES)}.")
        opts = {**_index_options(schema), **self.options, **kw}  # explicit options win over the schema
        kind, m = opts.get("index"), opts.get("hnsw_m")
        sizes = {k: opts.get(k) for k in ("ef_construction", "nlist", "nprobe")}
        if self._writer is None and self.exists():
            self.check_existing(dim, metric, id_type, exist_ok, self.where, new="path")
            self._writer = FaissWriter.reopen(self.path, self._meta, dim, metric, id_type, index_kind=kind,
                                              hnsw_m=m, **sizes)
        elif self._writer is None:
            self._writer = FaissWriter(self.path, dim, metric, id_type, kind or "flat", m or 32,
                                       sizes["ef_construction"] or 80, sizes["nlist"], sizes["nprobe"])
            self.flush()  # the empty index exists on disk from now on
        else:
            self.check_existing(dim, metric, id_type, True, self.where, new="path")

    @property
    def where(self) -> str:
        return f"FAISS index {str(self.path)!r}"

    def upsert(self, batch: Batch) -> None:
        other_vectors(batch, {}, self.where)  # an index holds one vector: refuse others rather than drop them
        w = self._open_writer()
        vectors = validate_vectors(batch.vectors, w.dim, where=f"upsert into {self.uri}")
        if len(batch.ids) != len(vectors):
            raise StoreUsageError(f"{len(batch.ids)} ids for {len(vectors)} vectors.", "pass one id per vector.")
        if w.metric == "cosine":
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            if (norms == 0).any():
                raise InvalidVectorsError(f"{int((norms == 0).sum())} zero vector(s) cannot be normalised for cosine.",
                                          "drop zero vectors, or use metric 'ip' or 'l2'.")
            vectors = np.ascontiguousarray(vectors / norms, dtype=np.float32)
        payloads = list(batch.payloads) if batch.payloads is not None else [None] * len(vectors)
        if len(payloads) != len(vectors):
            raise StoreUsageError(f"{len(payloads)} payloads for {len(vectors)} vectors.", "pass one payload per vector.")
        if w.id_type == "str":
            originals = [normalize_id(x) for x in batch.ids]
            keys = np.fromiter((to_int64(x) for x in originals), dtype=np.int64, count=len(originals))
            rows = [{**(p or {}), ORIGINAL_ID_KEY: x} for x, p in zip(originals, payloads)]
        else:
            keys = self._int_keys(batch.ids)
            rows = [p or {} for p in payloads]
        w.upsert(keys, vectors, rows)

    def delete(self, ids: Sequence) -> None:
        if self._open_writer(must_exist=False) is None:
            return  # nothing to delete from
        if self._writer.id_type == "str":
            keys = [to_int64(normalize_id(x)) for x in ids]
        else:  # an id this store cannot hold is not in it
            keys = [x for x in map(normalize_id, ids) if isinstance(x, int) and fits_int64(x)]
        self._writer.delete(np.asarray(keys, dtype=np.int64))

    def _int_keys(self, ids: Sequence) -> np.ndarray:
        if {type(x) for x in ids} <= {int, np.int64, np.int32, np.uint32}:
            try:  # the common case, checked in one numpy call
                return np.asarray(ids, dtype=np.int64)
            except OverflowError:
                pass
        for x in ids:  # find the culprit for a precise message
            x = normalize_id(x)
            if isinstance(x, str):
                raise IdTypeError(f"String id {x!r} in FAISS index {str(self.path)!r} created for int ids.",
                                  "create the destination with id_type='str' (ids are then mapped to int64).")
            if not fits_int64(x):
                raise IdTypeError(f"Id {x} does not fit in int64, which is all FAISS can hold.",
                                  "create the destination with id_type='str' (ids are then mapped to int64).")
        return np.asarray([int(x) for x in ids], dtype=np.int64)

    def search(self, queries, k: int = 10) -> tuple[list[list], np.ndarray]:
        """The index's own k-NN search (HNSW/IVF approximate, Flat exact): (user ids per query, scores)."""
        lay = self._lay()
        q = validate_vectors(np.array(queries, dtype=np.float32), lay.dim, where="search queries")
        if self.metric == "cosine":  # a cosine store is an inner-product index over unit vectors
            q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        scores, keys = lay.search(np.ascontiguousarray(q), int(k))
        ids = []
        for row in keys:
            row = row[row >= 0]
            if self._sidecar and self._mapped():  # string ids: restored from the payload sidecar
                ids.append([restore_original(x, p)[0] for x, p in zip(row.tolist(), self._sidecar.lookup(row))])
            else:
                ids.append(row.tolist())
        return ids, scores
