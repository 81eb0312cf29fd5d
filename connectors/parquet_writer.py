"""Idempotent writes to a Parquet dataset folder of ours (see parquet_store for the layout).

Design (simplest robust one that runs in bounded memory): upserts go to an in-memory buffer keyed by id
(the last write of an id wins). When the buffer is full (spill_rows), and at flush(), it is written:
  1. the buffer becomes one new part file (`part-NNNNNN.parquet`, row groups of 8,192 rows), not yet listed;
  2. ids that already lived in older part files (listed, or written since the last flush) are taken out:
     each affected file is rewritten without them (a new part name; the file keeps its place in the stream
     order) or dropped when nothing is left.
flush() then
  3. replaces `_v2v_meta.json` (the list of live files) atomically: the commit point;
  4. deletes the files that the new list no longer names.
A crash before 3 leaves the previous dataset intact (unlisted files are swept at the next open for
writing). Which part holds an id is found in per-part sorted key files (connectors.parquet_keys), so
memory does not grow with the dataset: a buffer of at most spill_rows rows, one part being written
or rewritten, and 16 bytes per part file.
Cost of a flush: writing the buffered rows, plus rewriting the part files that held replaced ids (none in
a fresh migration; a replayed batch touches one or two parts).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from connectors.arrow_payloads import payload_table
from connectors.base import Batch, validate_vectors
from connectors.ids import fits_int64, normalize_id
from connectors.errors import IdTypeError, StoreUsageError
from connectors.parquet_keys import PartKeys

META_NAME = "_v2v_meta.json"
ROW_GROUP_ROWS = 8192
# The buffer is written out as a part file (listed at the next flush) once it holds SPILL_BYTES of vectors
# or SPILL_MAX_ROWS rows, whichever comes first: each buffered row also costs ~0.5-1 KB of Python objects
# (its dict entry, vector view and payload dict), which the row cap bounds at small dimensions. 384-d
# float32: parts of 40,960 rows (245 per 10M rows), few enough files, and one buffer is all a writer holds,
# however far apart the flushes are.
SPILL_BYTES = 64 << 20
SPILL_MAX_ROWS = 65_536


def spill_rows(dim: int) -> int:
    """Rows per spilled part: at most SPILL_BYTES of vectors and SPILL_MAX_ROWS, in whole row groups."""
    rows = min(SPILL_BYTES // (4 * max(int(dim), 1)), SPILL_MAX_ROWS)
    return max(rows // ROW_GROUP_ROWS, 1) * ROW_GROUP_ROWS


def _fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


class ParquetWriter:
    def __init__(self, root: Path, meta: dict, files: list[str], id_col: str = "id", vec_col: str = "vector"):
        self.root, self.meta, self.files = root, meta, list(files)
        self.dim, self.metric, self.id_type = int(meta["dim"]), meta["metric"], meta["id_type"]
        self.id_col, self.vec_col = id_col, vec_col
        self.buffer: dict = {}  # id -> (vector row, payload dict)
        self.deleted: set = set()  # ids to drop from the part files at the next flush
        self.keys: PartKeys | None = None  # which part holds an id (built on first use)
        self.retired: list[str] = []  # listed files replaced since the last commit: deleted after it
        self.spill_rows = spill_rows(self.dim)
        self.dirty = False

    @classmethod
    def new(cls, root: Path, dim: int, metric: str, id_type: str, **cols) -> "ParquetWriter":
        from connectors.faiss_writer import _package_version
        root.mkdir(parents=True, exist_ok=True)
        meta = {"format": "v2v-parquet", "format_version": 1, "dim": int(dim), "metric": metric,
                "id_type": id_type, "files": [], "next_part": 0, "pyarrow_version": pa.__version__,
                "v2v_version": _package_version()}
        w = cls(root, meta, [], **cols)
        w._write_meta()
        return w

    @classmethod
    def reopen(cls, root: Path, meta: dict, files: list[str], **cols) -> "ParquetWriter":
        w = cls(root, dict(meta), files, **cols)
        listed = set(files)
        for p in root.iterdir():  # leftovers of a flush that crashed before its commit
            if (p.name.startswith("part-") and p.suffix == ".parquet" and p.name not in listed) or p.suffix == ".tmp":
                p.unlink()
        PartKeys(root, w.id_type).sweep(listed)
        return w

    def _write_meta(self) -> None:
        self.meta["files"] = list(self.files)
        tmp = self.root / (META_NAME + ".tmp")
        tmp.write_text(json.dumps(self.meta, indent=1))
        _fsync_replace(tmp, self.root / META_NAME)

    def _index(self) -> PartKeys:
        if self.keys is None:
            self.keys = PartKeys(self.root, self.id_type)
            for name in self.files:  # one part's id column at a time, only where its key file is missing
                path = self.root / name
                self.keys.load(name, pq.ParquetFile(str(path)).metadata.num_rows,
                               lambda p=path: pq.read_table(p, columns=[self.id_col]).column(0).to_pylist())
        return self.keys

    def _check_id(self, x):
        x = normalize_id(x)
        if self.id_type == "int":
            if not isinstance(x, int):
                raise IdTypeError(f"String id {x!r} in a Parquet dataset created for int ids.",
                                  "create the destination with id_type='str'.")
            if not fits_int64(x):
                raise IdTypeError(f"Id {x} does not fit in int64.", "create the destination with id_type='str'.")
        elif not isinstance(x, str):
            raise IdTypeError(f"Int id {x!r} in a Parquet dataset created for string ids.",
                              "create the destination with id_type='int', or pass ids as strings.")
        return x

    def upsert(self, batch: Batch) -> None:
        vectors = validate_vectors(batch.vectors, self.dim, where=f"upsert into parquet:{self.root}")
        if len(batch.ids) != len(vectors):
            raise StoreUsageError(f"{len(batch.ids)} ids for {len(vectors)} vectors.", "pass one id per vector.")
        payloads = batch.payloads if batch.payloads is not None else [None] * len(vectors)
        if len(payloads) != len(vectors):
            raise StoreUsageError(f"{len(payloads)} payloads for {len(vectors)} vectors.", "pass one payload per vector.")
        kinds = {type(x) for x in batch.ids}
        if kinds == {int} and self.id_type == "int":  # the common case, checked in one numpy call
            try:
                checked = np.asarray(batch.ids, dtype=np.int64).tolist()
            except OverflowError:
                raise IdTypeError("Some ids do not fit in int64.", "create the destination with id_type='str'.") from None
        elif kinds == {str} and self.id_type == "str":
            checked = list(batch.ids)
        else:
            checked = [self._check_id(x) for x in batch.ids]
        rows = [(x, v, dict(p or {})) for x, v, p in zip(checked, vectors, payloads)]
        for x, v, p in rows:  # checked first: a bad id leaves the buffer untouched
            self.buffer[x] = (v, p)
            self.deleted.discard(x)
        self.dirty = self.dirty or bool(rows)
        if len(self.buffer) >= self.spill_rows:
            self._write_buffer()

    def delete(self, ids) -> None:
        """Drop rows by id at the next flush (ids not held are ignored)."""
        wanted = [normalize_id(x) for x in ids]
        kind = int if self.id_type == "int" else str
        for x in wanted:
            if isinstance(x, kind):  # an id of the other type cannot be in this dataset
                self.buffer.pop(x, None)
                self.deleted.add(x)
        self.dirty = self.dirty or bool(self.deleted)

    def _part_name(self) -> str:
        n = int(self.meta.get("next_part", 0))
        self.meta["next_part"] = n + 1
        return f"part-{n:06d}.parquet"

    def _write_part(self, table: pa.Table) -> str:
        name = self._part_name()
        tmp = self.root / (name + ".tmp")
        # Float vectors do not compress and never repeat: skipping compression, dictionary and statistics
        # for that column makes writing ~3x faster at the same size; payload columns keep the defaults.
        others = [c for c in table.column_names if c != self.vec_col]
        pq.write_table(table, str(tmp), row_group_size=ROW_GROUP_ROWS, use_dictionary=others, write_statistics=others,
                       compression={c: ("none" if c == self.vec_col else "snappy") for c in table.column_names})
        _fsync_replace(tmp, self.root / name)
        return name

    def _retire(self, name: str) -> None:
        """A file leaves the working list: a listed one stays on disk until the commit, an unlisted one
        (written since the last flush) can go now."""
        self.keys.forget(name)
        if name in self.meta["files"]:
            self.retired.append(name)
        else:
            (self.root / name).unlink(missing_ok=True)
            self.keys.unlink(name)

    def _write_buffer(self) -> None:
        """Steps 1-2 of the module doc: the buffer becomes an unlisted part; older copies of its ids and the
        deleted ids leave their part files."""
        keys = self._index()
        ids = list(self.buffer)
        id_type = pa.int64() if self.id_type == "int" else pa.string()
        new_part = None
        if ids:
            vectors = np.stack([self.buffer[x][0] for x in ids]).astype(np.float32, copy=False)
            base = {self.id_col: pa.array(ids, type=id_type),
                    self.vec_col: pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), self.dim)}
            table = payload_table(base, [self.buffer[x][1] for x in ids], len(ids),
                                  reserved=(self.id_col, self.vec_col))
            del vectors, base
            new_part = self._write_part(table)
            del table
        gone = [*ids, *self.deleted]  # rows that leave their part file: replaced by the new part, or deleted
        for name, at in keys.holders(keys.keys_of(gone)).items():
            old = pq.read_table(self.root / name)
            xs = pa.array([gone[i] for i in at.tolist()], type=id_type)
            keep = old.filter(pc.invert(pc.is_in(old.column(self.id_col), value_set=xs)))
            if keep.num_rows == old.num_rows:
                continue  # only a hash collision of string ids: nothing to take out
            self._retire(name)
            if keep.num_rows:
                moved = self._write_part(keep)
                keys.add(moved, keep.column(self.id_col).to_pylist())
                self.files[self.files.index(name)] = moved
            else:
                self.files.remove(name)
        if new_part:
            keys.add(new_part, ids)
            self.files.append(new_part)
        self.buffer.clear()
        self.deleted.clear()

    def flush(self) -> None:
        if not self.dirty:
            return
        self._write_buffer()
        self._write_meta()  # commit
        for name in self.retired:
            (self.root / name).unlink(missing_ok=True)
            self.keys.unlink(name)
        self.retired.clear()
        self.dirty = False
