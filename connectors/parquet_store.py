"""A folder of Parquet files as a store: `parquet:DIR` (options: metric, id_column, vector_column).

Reading works on any plain dataset: every `*.parquet` under DIR (sorted, names starting with `_` or `.`
skipped) with an `id` column (int or string) and a `vector` column (fixed_size_list or list of floats).
Rows are streamed one row group at a time (`ParquetFile.iter_batches`: memory bounded by a row group);
the cursor is {"file": index, "row": offset in that file}. Without our `_v2v_meta.json` the metric is the
`metric` option, else 'cosine'.

Writing (idempotent by id; see ParquetWriter): upserts are buffered and written as one new part file per
flush(); an id written again replaces the old row, whose part file is rewritten without it at that flush.
`_v2v_meta.json` lists the live part files and is replaced atomically last: it is the commit point, so a
crash mid-flush leaves the previous state (readers of our datasets only read the listed files).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors import split_uri
from connectors.arrow_payloads import PayloadDecoder
from connectors.base import ID_TYPES, Batch, FileBackedStore, check_metric, other_vectors, validate_vectors
from connectors.state import FileStateMixin
from connectors.errors import (
    DimensionMismatchError, EmptyStoreError, StoreNotFoundError, StoreUsageError, UnreadableStoreError,
)

META_NAME = "_v2v_meta.json"
META_FORMAT = "v2v-parquet"


def vectors_from_arrow(arr: pa.Array | pa.ChunkedArray, dim: int | None, where: str) -> np.ndarray:
    """float32 (n, dim) from a fixed_size_list or list column (no Python loop; nulls refused)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    t = arr.type
    if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)):
        raise UnreadableStoreError(f"{where}: the vector column has type {t}, not a list of floats.",
                                   "store vectors as fixed_size_list<float32>[dim] (or list<float>).")
    if arr.null_count:
        raise UnreadableStoreError(f"{where}: {arr.null_count} row(s) have no vector (null).",
                                   "drop rows without vectors from the dataset before migrating.")
    flat = arr.flatten()
    if not (pa.types.is_floating(flat.type) or pa.types.is_integer(flat.type)) or flat.null_count:
        raise UnreadableStoreError(f"{where}: vector values are {flat.type} with {flat.null_count} null(s).",
                                   "store vectors as lists of non-null floats.")
    n = len(arr)
    if pa.types.is_fixed_size_list(t):
        width = t.list_size
    else:
        lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
        width = int(lengths[0]) if n else (dim or 0)
        if n and (lengths != width).any():
            raise DimensionMismatchError(f"{where}: vectors have different lengths ({sorted(set(lengths.tolist()))[:5]}).",
                                         "give every row a vector of the same dimension.")
    values = flat.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return validate_vectors(values.reshape(n, width) if n else np.zeros((0, dim or width), np.float32), dim, where)


class ParquetStore(FileStateMixin, FileBackedStore):
    scheme = "parquet"
    writable = True

    def __init__(self, uri: str, **options: Any):
        super().__init__(uri, **options)
        self.root = Path(split_uri(uri)[1]).expanduser()
        self.id_col = options.get("id_column", "id")
        self.vec_col = options.get("vector_column", "vector")
        self._files: list[Path] | None = None
        self._meta: dict | None = None
        self._pfs: dict[int, pq.ParquetFile] = {}
        self._writer = None
        self._dim: int | None = None

    def _state_path(self) -> Path:
        return self.root / "_v2v_state.json"  # '_': never read as data

    # -- dataset layout ----------------------------------------------------------------------------
    def _load(self) -> list[Path]:
        if self._writer is not None and self._writer.dirty:
            self.flush()
        if self._files is None:
            if not self.root.is_dir():
                raise StoreNotFoundError(f"Parquet dataset folder {str(self.root)!r} does not exist.",
                                         "check the path (parquet:DIR points at a folder of .parquet files).")
            meta_file = self.root / META_NAME
            if meta_file.exists():
                try:
                    self._meta = json.loads(meta_file.read_text())
                    files = [self.root / f for f in self._meta["files"]]
                except (ValueError, KeyError, TypeError) as e:
                    raise UnreadableStoreError(f"{str(meta_file)!r} is unreadable ({e}).",
                                               "restore it, or delete it to read the folder as a plain dataset.") from None
            else:
                self._meta = {}
                files = sorted(p for p in self.root.rglob("*.parquet") if p.is_file() and not any(
                    part.startswith(("_", ".")) for part in p.relative_to(self.root).parts))
            self._files = files
            self._pfs = {}
            rows = [self._pf(i).metadata.num_rows for i in range(len(files))]
            self._starts = np.concatenate([[0], np.cumsum(rows)]).astype(np.int64)
        return self._files

    def _pf(self, i: int) -> pq.ParquetFile:
        if i not in self._pfs:
            try:
                self._pfs[i] = pq.ParquetFile(str(self._files[i]), memory_map=True)
            except (pa.ArrowException, OSError) as e:
                raise UnreadableStoreError(f"Parquet file {str(self._files[i])!r} is unreadable ({e}).",
                                           "restore or remove that file from the dataset folder.") from None
            names = self._pfs[i].schema_arrow.names
            if self.id_col not in names or self.vec_col not in names:
                raise UnreadableStoreError(
                    f"Parquet file {str(self._files[i])!r} lacks an {self.id_col!r} or {self.vec_col!r} column "
                    f"(columns: {names[:8]}).", "name the columns id and vector, or pass id_column=/vector_column=.")
        return self._pfs[i]

    def _reset(self) -> None:
        self._files, self._meta, self._pfs, self._dim = None, None, {}, None

    def exists(self) -> bool:
        return self.root.is_dir() and ((self.root / META_NAME).exists() or any(self.root.rglob("*.parquet")))

    def count(self) -> int:
        self._load()
        return int(self._starts[-1])

    @property
    def dim(self) -> int:
        files = self._load()
        if self._meta.get("dim"):
            return int(self._meta["dim"])
        if self._dim is None:
            self._dim = self._dim_from_files(files)
        return self._dim

    def _dim_from_files(self, files: list[Path]) -> int:
        for i in range(len(files)):
            t = self._pf(i).schema_arrow.field(self.vec_col).type
            if pa.types.is_fixed_size_list(t):
                return t.list_size
            if self._pf(i).metadata.num_rows:
                first = self._pf(i).read_row_group(0, columns=[self.vec_col]).column(0).slice(0, 1)
                return vectors_from_arrow(first, None, str(files[i])).shape[1]
        raise EmptyStoreError(f"Parquet dataset {str(self.root)!r} has no vectors, so no dimension.",
                              "point at a dataset with rows (or one written by v2v-migrate).")

    @property
    def metric(self) -> str:
        self._load()
        return check_metric(self._meta.get("metric") or self.options.get("metric") or "cosine")

    @property
    def id_type(self) -> str:
        files = self._load()
        if self._meta.get("id_type"):
            return self._meta["id_type"]
        for i in range(len(files)):
            t = self._pf(i).schema_arrow.field(self.id_col).type
            return "int" if pa.types.is_integer(t) else "str"
        return "int"

    def payload_fields(self) -> list[str]:
        files = self._load()
        out: dict[str, None] = {}
        for i in range(len(files)):
            for f in self._decoder(i).fields:
                out.setdefault(f, None)
        return list(out)

    def _decoder(self, i: int) -> PayloadDecoder:
        schema = self._pf(i).schema_arrow
        return PayloadDecoder(schema, [c for c in schema.names if c not in (self.id_col, self.vec_col)])

    # -- reading -----------------------------------------------------------------------------------
    def _rows_of(self, table: pa.Table | pa.RecordBatch, decoder: PayloadDecoder, where: str):
        ids = table.column(self.id_col).to_pylist()
        if any(x is None for x in ids):
            raise UnreadableStoreError(f"{where}: some rows have a null id.", "give every row an id.")
        vectors = vectors_from_arrow(table.column(self.vec_col), self.dim, where)
        return ids, vectors, decoder.rows(table) if decoder.columns else None

    def _pieces(self, start: tuple[int, int], stop: tuple[int, int], batch_size: int):
        """(file, first row, ids, vectors, payloads) pieces covering [start, stop) in (file, row) order."""
        files = self._load()
        f, r = start
        while (f, r) < tuple(stop) and f < len(files):
            pf, end = self._pf(f), (self._pf(f).metadata.num_rows if f < stop[0] else stop[1])
            groups = np.concatenate([[0], np.cumsum([pf.metadata.row_group(g).num_rows
                                                     for g in range(pf.metadata.num_row_groups)])])
            first_g = int(np.searchsorted(groups, r, side="right") - 1)
            last_g = int(np.searchsorted(groups, end, side="left"))
            wanted = list(range(max(first_g, 0), min(last_g, pf.metadata.num_row_groups)))
            pos, decoder = int(groups[max(first_g, 0)]) if wanted else end, self._decoder(f)
            for rb in (pf.iter_batches(batch_size, row_groups=wanted) if wanted else []):
                lo, hi = max(r, pos), min(end, pos + rb.num_rows)
                if hi > lo:
                    ids, vecs, pays = self._rows_of(rb.slice(lo - pos, hi - lo), decoder, f"{files[f]} rows {lo}..{hi - 1}")
                    yield f, lo, ids, vecs, pays
                pos += rb.num_rows
                if pos >= end:
                    break
            f, r = f + 1, 0

    def iter_batches(self, batch_size: int = 1024, cursor: Any = None, shard: Any = None) -> Iterator[Batch]:
        files = self._load()
        start, stop = (0, 0), (len(files), 0)
        if shard is not None:
            start, stop = tuple(shard["start"]), tuple(shard["stop"])
        if cursor is not None:
            try:
                pos = (int(cursor["file"]), int(cursor["row"]))
            except (TypeError, KeyError, ValueError):
                pos = (-1, -1)
            if not start <= pos <= stop:
                raise StoreUsageError(f"Cursor {cursor!r} does not belong to this Parquet dataset or shard.",
                                 "resume with the cursor of a batch read from the same dataset and shard.")
            start = pos
        batch_size = max(1, int(batch_size))
        ids: list = []
        vecs: list = []
        pays: list = []
        has_payloads = False
        end = {"file": start[0], "row": start[1]}
        for f, lo, i, v, p in self._pieces(start, stop, batch_size):
            end = {"file": f, "row": lo + len(i)}
            at = 0
            while at < len(i):
                take = min(batch_size - len(ids), len(i) - at)
                ids += i[at:at + take]
                vecs.append(v[at:at + take])
                pays += p[at:at + take] if p is not None else [{}] * take
                has_payloads |= p is not None
                at += take
                if len(ids) == batch_size:
                    yield Batch(ids, np.concatenate(vecs), pays if has_payloads else None, {"file": f, "row": lo + at})
                    ids, vecs, pays, has_payloads = [], [], [], False
        if ids:
            yield Batch(ids, np.concatenate(vecs), pays if has_payloads else None, end)

    def shards(self, n: int) -> list:
        """Up to n groups of consecutive (file, row group) pieces with about equal row counts."""
        files = self._load()
        bounds = []  # (file, first row) of every row group
        for f in range(len(files)):
            md = self._pf(f).metadata
            bounds += [(f, int(sum(md.row_group(g).num_rows for g in range(k)))) for k in range(md.num_row_groups)]
        total = self.count()
        if n <= 1 or total == 0:
            return [None]
        starts = [int(self._starts[f]) + r for f, r in bounds]
        cuts = sorted(set(int(np.searchsorted(starts, k * total / n)) for k in range(1, n)) - {0, len(bounds)})
        edges = [(0, 0)] + [bounds[c] for c in cuts] + [(len(files), 0)]
        return [{"start": list(a), "stop": list(b)} for a, b in zip(edges, edges[1:])]

    def _gather(self, positions: np.ndarray) -> Batch:
        """Rows at global positions, in the given order (reads only the row groups they fall in)."""
        files = self._load()
        n = len(positions)
        ids: list = [None] * n
        vecs = np.zeros((n, self.dim), dtype=np.float32)
        pays: list = [{}] * n
        has_payloads = False
        file_of = np.searchsorted(self._starts, positions, side="right") - 1
        for f in np.unique(file_of):
            pf, sel = self._pf(int(f)), np.flatnonzero(file_of == f)
            offs = positions[sel] - self._starts[f]
            groups = np.concatenate([[0], np.cumsum([pf.metadata.row_group(g).num_rows
                                                     for g in range(pf.metadata.num_row_groups)])])
            g_of = np.searchsorted(groups, offs, side="right") - 1
            decoder = self._decoder(int(f))
            for g in np.unique(g_of):
                here = np.flatnonzero(g_of == g)
                table = pf.read_row_group(int(g)).take(pa.array(offs[here] - groups[g]))
                i, v, p = self._rows_of(table, decoder, str(files[f]))
                for j, k in enumerate(sel[here]):
                    ids[k] = i[j]
                    pays[k] = p[j] if p is not None else {}
                vecs[sel[here]] = v
                has_payloads |= p is not None
        return Batch(ids, vecs, pays if has_payloads else None)

    def get(self, ids: Sequence) -> Batch:
        files = self._load()
        wanted = list(dict.fromkeys(ids))
        found: dict = {}
        for f in range(len(files)):
            col = self._pf(f).read(columns=[self.id_col]).column(0)
            is_int = pa.types.is_integer(col.type)
            same_type = [x for x in wanted if isinstance(x, (int, np.integer)) == is_int and not isinstance(x, bool)]
            try:
                value_set = pa.array(same_type, type=col.type)
            except (pa.ArrowInvalid, OverflowError):
                value_set = pa.array([x for x in same_type if not is_int or -2**63 <= x < 2**63], type=col.type)
            hits = np.flatnonzero(pc.is_in(col, value_set=value_set).to_numpy(zero_copy_only=False))
            for h in hits:
                found[col[int(h)].as_py()] = int(self._starts[f] + h)  # a later file wins (= upsert order)
        keep = [x for x in wanted if x in found]
        b = self._gather(np.array([found[x] for x in keep], dtype=np.int64))
        return b

    def sample(self, n: int, seed: int = 0) -> Batch:
        total = self.count()
        if total == 0:
            raise EmptyStoreError(f"Parquet dataset {str(self.root)!r} holds no vectors to sample.",
                                  "point at a populated dataset.")
        rng = np.random.default_rng(seed)
        k = min(int(n), total)
        pos = rng.permutation(total)[:k] if total <= 50_000_000 else rng.choice(total, k, replace=False)
        return self._gather(pos.astype(np.int64))

    # -- writing -----------------------------------------------------------------------------------
    def create(self, dim: int, metric: str, id_type: str = "int", exist_ok: bool = True, **kw: Any) -> None:
        from connectors.parquet_writer import ParquetWriter
        metric, dim = check_metric(metric), int(dim)
        if id_type not in ID_TYPES:
            raise StoreUsageError(f"Unknown id type {id_type!r}.", f"use one of {', '.join(ID_TYPES)}.")
        if self._writer is not None or self.exists():
            if exist_ok:
                self._load()
                if not self._meta:
                    raise StoreUsageError(f"{str(self.root)!r} is a Parquet dataset not written by v2v-migrate.",
                                          "write the migration to a new folder (this dataset stays readable as "
                                          "a source).")
            self.check_existing(dim, metric, id_type, exist_ok, f"Parquet dataset {str(self.root)!r}", new="folder")
            if self._writer is None:
                self._writer = ParquetWriter.reopen(self.root, self._meta, [p.name for p in self._files],
                                                    id_col=self.id_col, vec_col=self.vec_col)
            return
        self._writer = ParquetWriter.new(self.root, dim, metric, id_type, id_col=self.id_col, vec_col=self.vec_col)
        self._reset()

    def upsert(self, batch: Batch) -> None:
        other_vectors(batch, {}, f"Parquet dataset {str(self.root)!r}")  # one vector column: refuse others
        self._open_writer().upsert(batch)

    def delete(self, ids: Sequence) -> None:
        writer = self._open_writer(must_exist=False)
        if writer is not None:  # else there is nothing to delete from
            writer.delete(ids)
