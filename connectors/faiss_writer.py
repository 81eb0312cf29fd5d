"""Building a FAISS index by idempotent upserts, made durable by atomic rewrites at flush().

Layout written: IndexIDMap2 over IndexFlat (default) or over IndexHNSWFlat (`index="hnsw"`), or an
IndexIVFFlat (`index="ivf"`, `nlist`, `nprobe`), whose coarse quantizer is trained on the vectors written
(the translated ones), on a seeded sample of up to 256 per list: at the first flush with at least `nlist`
rows, and again whenever the index has doubled since (so the final training saw at least half of the
rows). Until `nlist` rows exist the file is a Flat index.
All vectors live in memory in an IndexIDMap2(IndexFlat) "staging" index, which can remove ids: an upsert of
an existing id with a different vector or payload removes it and adds the new row; an identical row is
skipped (so replaying a batch after a crash is a no-op). HNSW cannot remove, so the HNSW graph is extended
incrementally at flush with the rows added since the last flush, and rebuilt from the staging index only
when some id was replaced since then (memory: vectors are held twice in HNSW and IVF modes). IVF lists get
the new rows the same way, and are refilled from the staging index after a replacement.

Payloads are encoded to Arrow once, per upserted batch (a list of small tables with an `id` column); a
flush concatenates them, drops rows superseded by a later upsert of the same id, and writes the result
(in the index's stream order) as the sidecar.

flush() rewrites the whole file: `PATH.tmp` then os.replace (same for the payload and meta sidecars, in
that order). Its cost is linear in the index size (writing 4*dim bytes per row plus the payload columns:
see benchmarks/bench_faiss_parquet_io.py); it is a no-op when nothing changed, so calling it every few
batches only costs when there is new data. For very large indexes flush less often (e.g. every 100k rows).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import faiss
import numpy as np

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.arrow_payloads import PayloadDecoder, concat_payload_tables, payload_table
from connectors.faiss_layout import read_index
from connectors.faiss_sidecars import META_FORMAT, ROW_GROUP_ROWS, meta_path, payload_path
from connectors.state import atomic_write_bytes
from connectors.errors import StoreUsageError

META_VERSION = 1
INDEX_KINDS = ("flat", "hnsw", "ivf")
TRAIN_PER_LIST = 256  # faiss' own cap on training points per centroid


def _package_version() -> str:
    try:
        from importlib.metadata import version
        return version("v2v-migrate")
    except Exception:  # not installed (running from a checkout)
        return "unknown"


def _metric_type(metric: str) -> int:
    return faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT


class FaissWriter:
    def __init__(self, path: Path, dim: int, metric: str, id_type: str, index_kind: str = "flat",
                 hnsw_m: int = 32, ef_construction: int = 80, nlist: int | None = None, nprobe: int | None = None):
        if index_kind not in INDEX_KINDS:
            raise StoreUsageError(f"Unknown FAISS index kind {index_kind!r}.", "use index=flat, hnsw or ivf.")
        self.path, self.dim, self.metric, self.id_type = path, int(dim), metric, id_type
        self.index_kind, self.hnsw_m, self.ef_construction = index_kind, int(hnsw_m), int(ef_construction)
        self.nlist, self.nprobe = int(nlist or 1024), int(nprobe or 1)
        if index_kind == "ivf" and self.nlist < 1:
            raise StoreUsageError(f"nlist={nlist} is not a number of lists.", "pass nlist= 1 or more.")
        self.ivf = None          # the IndexIVFFlat as last written
        self.trained_on = 0      # rows its quantizer was trained on
        self.staging = faiss.IndexIDMap2(faiss.IndexFlat(self.dim, _metric_type(metric)))
        self.known: set[int] = set()
        self.chunks: list[pa.Table] = []  # encoded payloads per upsert, in upsert order (see module doc)
        self.hnsw = None          # IndexIDMap2(IndexHNSWFlat) as last written, extended at flush
        self.hnsw_stale = False   # an id was replaced: the graph must be rebuilt
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []  # rows added since the last flush
        self.dirty = True

    @property
    def count(self) -> int:
        return int(self.staging.ntotal)

    @classmethod
    def reopen(cls, path: Path, meta: dict, dim: int, metric: str, id_type: str, **kw) -> "FaissWriter":
        """Continue writing an index we (or faiss with IDMap over Flat/HNSWFlat) wrote."""
        top = read_index(path, 0)  # fully in memory: it will be modified
        if type(top) is faiss.IndexIVFFlat:
            return cls._reopen_ivf(path, top, dim, metric, id_type, kw.get("nprobe"))
        inner = faiss.downcast_index(top.index) if isinstance(top, (faiss.IndexIDMap, faiss.IndexIDMap2)) else None
        kind = "hnsw" if isinstance(inner, faiss.IndexHNSWFlat) else "flat"
        if inner is None or not (isinstance(inner, faiss.IndexHNSWFlat) or type(inner) in
                                 (faiss.IndexFlat, faiss.IndexFlatL2, faiss.IndexFlatIP)):
            raise StoreUsageError(
                f"{str(path)!r} is a {type(top).__name__} index; only IndexIDMap/IndexIDMap2 over a Flat or "
                "HNSWFlat index can be written to.",
                "write the migration to a new faiss:PATH (this index stays readable as a source).",
            )
        w = cls(path, dim, metric, id_type, kw.get("index_kind") or meta.get("index", kind),
                kw.get("hnsw_m") or meta.get("hnsw_m", 32), kw.get("ef_construction") or 80,
                kw.get("nlist") or meta.get("nlist"), kw.get("nprobe") or meta.get("nprobe"))
        ids = faiss.vector_to_array(top.id_map).astype(np.int64)
        if len(ids):
            storage = faiss.downcast_index(inner.storage) if kind == "hnsw" else inner
            w.staging.add_with_ids(storage.reconstruct_n(0, len(ids)), ids)
        w.known = set(ids.tolist())
        if kind == "hnsw" and w.index_kind == "hnsw":
            w.hnsw = top if isinstance(top, faiss.IndexIDMap2) else None
        w._reopen_payloads()
        return w

    @classmethod
    def _reopen_ivf(cls, path: Path, ivf, dim: int, metric: str, id_type: str, nprobe) -> "FaissWriter":
        from connectors.faiss_layout import ListLayout

        w = cls(path, dim, metric, id_type, "ivf", nlist=ivf.nlist, nprobe=nprobe or ivf.nprobe)
        layout = ListLayout(ivf, ivf, dim, None, True, None)
        ids, vectors = layout.read_range(0, layout.n)
        if len(ids):
            w.staging.add_with_ids(vectors, ids)
        w.known = set(ids.tolist())
        w.ivf, w.trained_on = ivf, int(ivf.ntotal)
        w._reopen_payloads()
        return w

    def _reopen_payloads(self) -> None:
        side = payload_path(self.path)
        if side.exists():
            table = pq.read_table(str(side))
            self.chunks = [table.set_column(table.column_names.index("id"), "id", table.column("id").cast(pa.int64()))]
        self.dirty = False

    def upsert(self, keys: np.ndarray, vectors: np.ndarray, payloads: list[dict]) -> None:
        """Rows replace rows of the same id; a row without payload ({}) clears the old payload."""
        keys = np.asarray(keys, dtype=np.int64)
        if len(np.unique(keys)) != len(keys):  # the same id twice in one batch: the last one wins
            _, last_rev = np.unique(keys[::-1], return_index=True)
            keep = np.sort(len(keys) - 1 - last_rev)
            keys, vectors = keys[keep], vectors[keep]
            payloads = [payloads[i] for i in keep]
        exists = np.fromiter((k in self.known for k in keys.tolist()), dtype=bool, count=len(keys))
        if exists.any():
            where = np.flatnonzero(exists)
            old = self.staging.reconstruct_batch(keys[where])
            same = (old == vectors[where]).all(axis=1)
            old_payloads = self._current_payloads(keys[where])
            same &= np.array([old == payloads[i] for old, i in zip(old_payloads, where)], dtype=bool)
            unchanged = where[same]
            replaced = keys[where[~same]]
            if len(replaced):
                self.staging.remove_ids(replaced)
                self.hnsw_stale = True
            if len(unchanged):
                keep = np.setdiff1d(np.arange(len(keys)), unchanged)
                keys, vectors = keys[keep], vectors[keep]
                payloads = [payloads[i] for i in keep]
        if not len(keys):
            return
        self.staging.add_with_ids(vectors, keys)
        self.known.update(keys.tolist())
        if self.chunks or self.id_type == "str" or any(payloads):  # id-only stores keep no sidecar
            self.chunks.append(payload_table({"id": pa.array(keys)}, payloads, len(keys), reserved=("id",)))
        if self.index_kind != "flat":
            self.pending.append((keys, vectors))
        self.dirty = True

    def delete(self, keys: np.ndarray) -> None:
        """Remove rows by key (keys not held are ignored); their payloads go at the next flush."""
        gone = np.asarray([k for k in np.unique(keys).tolist() if k in self.known], dtype=np.int64)
        if not len(gone):
            return
        self.staging.remove_ids(gone)
        self.known.difference_update(gone.tolist())
        if self.chunks:
            drop = pa.array(gone)
            self.chunks = [c.filter(pc.invert(pc.is_in(c.column("id"), value_set=drop))) for c in self.chunks]
        self.hnsw_stale = True  # HNSW cannot remove: the graph is rebuilt from the staging index
        self.dirty = True

    def _current_payloads(self, keys: np.ndarray) -> list[dict]:
        """Latest payload of each key ({} when none): only needed when an upsert repeats ids."""
        out: list[dict] = [{} for _ in range(len(keys))]
        if not self.chunks:
            return out
        ids = np.concatenate([c.column("id").to_numpy() for c in self.chunks])
        bounds = np.cumsum([0] + [c.num_rows for c in self.chunks])
        order = np.argsort(ids, kind="stable")  # equal ids keep upsert order: the last one is the latest
        at = np.searchsorted(ids[order], keys, side="right") - 1
        for j, a in enumerate(at):
            if a >= 0 and ids[order[a]] == keys[j]:
                row = int(order[a])
                c = int(np.searchsorted(bounds, row, side="right") - 1)
                chunk = self.chunks[c]
                decoder = PayloadDecoder(chunk.schema, [n for n in chunk.column_names if n != "id"])
                out[j] = decoder.rows(chunk.slice(row - bounds[c], 1))[0]
        return out

    def _live_payload_table(self) -> pa.Table:
        """One table, one row per id (its latest upsert), in upsert order = the index's stream order."""
        table = concat_payload_tables(self.chunks)
        ids = table.column("id").to_numpy()
        _, last_rev = np.unique(ids[::-1], return_index=True)
        live = np.zeros(len(ids), dtype=bool)
        live[len(ids) - 1 - last_rev] = True
        if not live.all():
            table = table.filter(pa.array(live))
        self.chunks = [table]  # compacted: the next flush starts from here
        return table

    def _hnsw_index(self):
        if self.hnsw is None or self.hnsw_stale:
            inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, _metric_type(self.metric))
            inner.hnsw.efConstruction = self.ef_construction
            self.hnsw = faiss.IndexIDMap2(inner)
            if self.count:
                self.hnsw.add_with_ids(*self._all_rows())
        else:
            for keys, vectors in self.pending:
                self.hnsw.add_with_ids(vectors, keys)
        self.pending, self.hnsw_stale = [], False
        return self.hnsw

    def _all_rows(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.count
        xb = faiss.rev_swig_ptr(faiss.downcast_index(self.staging.index).get_xb(), n * self.dim)
        return xb.reshape(n, self.dim), faiss.vector_to_array(self.staging.id_map)

    def _ivf_index(self):
        """The IVF index to write (the staging Flat index until there are nlist rows to train on)."""
        n = self.count
        if n < self.nlist:
            self.pending, self.hnsw_stale = [], False
            return self.staging
        if self.ivf is None or n >= 2 * self.trained_on:
            xb, ids = self._all_rows()
            rng = np.random.default_rng(0)
            take = np.sort(rng.permutation(n)[:TRAIN_PER_LIST * self.nlist])
            quantizer = faiss.IndexFlat(self.dim, _metric_type(self.metric))
            ivf = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, _metric_type(self.metric))
            ivf.cp.seed = 0
            ivf.train(np.ascontiguousarray(xb[take]))
            ivf.add_with_ids(xb, ids)
            self.ivf, self.trained_on = ivf, n
        elif self.hnsw_stale:
            xb, ids = self._all_rows()
            self.ivf.reset()
            self.ivf.add_with_ids(xb, ids)
        else:
            for keys, vectors in self.pending:
                self.ivf.add_with_ids(vectors, keys)
        self.ivf.nprobe = self.nprobe
        self.pending, self.hnsw_stale = [], False
        return self.ivf

    def flush(self) -> None:
        if not self.dirty:
            return
        out = (self._hnsw_index() if self.index_kind == "hnsw" else self._ivf_index() if self.index_kind == "ivf"
               else self.staging)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        faiss.write_index(out, str(tmp))
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        side = payload_path(self.path)
        if self.chunks:
            tmp = side.with_name(side.name + ".tmp")
            pq.write_table(self._live_payload_table(), str(tmp), row_group_size=ROW_GROUP_ROWS)
            os.replace(tmp, side)
        elif side.exists():
            side.unlink()
        meta = {
            "format": META_FORMAT, "format_version": META_VERSION, "dim": self.dim, "metric": self.metric,
            "id_type": self.id_type, "ids_mapped": self.id_type == "str", "index": self.index_kind,
            "hnsw_m": self.hnsw_m, **({"nlist": self.nlist, "nprobe": self.nprobe} if self.index_kind == "ivf" else {}),
            "count": self.count, "faiss_version": faiss.__version__,
            "v2v_version": _package_version(),
        }
        atomic_write_bytes(meta_path(self.path), json.dumps(meta, indent=1).encode())
        self.dirty = False
